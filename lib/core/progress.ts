/**
 * One progress line per interval for long work, with rate and ETA:
 * `train pgd  step 300/2000  nat 97.1%  adv 88.4%  loss 0.31  412 ex/s  eta 3m10s`.
 *
 * @module
 */

/** Formats seconds as `1h02m`, `3m10s` or `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** Prints progress of `total` units of work to stderr at most once per `intervalSeconds`. */
export class Progress {
  #start = performance.now();
  #last = -Infinity;
  #startDone: number;

  /**
   * @param label what is running, printed first
   * @param total units of work in all (steps, examples)
   * @param examplesPerUnit examples per unit, for the ex/s rate
   * @param done units already done (a resumed run), excluded from the rate
   */
  constructor(
    readonly label: string,
    readonly total: number,
    readonly examplesPerUnit = 1,
    done = 0,
    readonly intervalSeconds = 10,
    readonly quiet = false,
  ) {
    this.#startDone = done;
  }

  /** Seconds since the start. */
  get elapsed(): number {
    return (performance.now() - this.#start) / 1000;
  }

  /** Reports `done` units finished, with extra `name value` fields; prints when due or when finished. */
  update(done: number, fields: Record<string, string> = {}): void {
    const now = performance.now();
    const finished = done >= this.total;
    if (this.quiet || (!finished && now - this.#last < this.intervalSeconds * 1000)) return;
    this.#last = now;
    const t = this.elapsed;
    const rate = (done - this.#startDone) / Math.max(t, 1e-9);
    const eta = (this.total - done) / rate;
    const extra = Object.entries(fields).map(([k, v]) => `${k} ${v}`).join("  ");
    const width = String(this.total).length;
    console.error(
      `${this.label}  ${String(done).padStart(width)}/${this.total}  ${extra}${extra ? "  " : ""}` +
        `${(rate * this.examplesPerUnit).toFixed(0)} ex/s  ${
          finished ? `done in ${formatDuration(t)}` : `eta ${formatDuration(eta)}`
        }`,
    );
  }
}
