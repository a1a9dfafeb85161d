/**
 * Work split into units, and units split into shards, so that an experiment
 * leaves one machine (SPEC, "Beyond one machine"): a Slurm job array or a
 * Kubernetes Indexed Job runs the same command in every task, each task runs
 * the units k with k mod n = i of a deterministically ordered list, every unit
 * writes its own result file atomically (and is skipped when that file exists,
 * so a preempted task is rerun safely), and a separate merge step combines the
 * unit results that exist and says which are missing.
 *
 * The shard comes from `--shard i/n`; else from Slurm's `SLURM_ARRAY_TASK_ID`,
 * ranked within `SLURM_ARRAY_TASK_MIN`, `_STEP` and `_COUNT` (arrays may start
 * at 1 or step); else from Kubernetes' 0-based `JOB_COMPLETION_INDEX` with the
 * count from `--shards n` (Kubernetes does not export it); else 0/1, the whole.
 *
 * @module
 */
import { check, UserError } from "../core/errors.ts";
import { writeJsonAtomic } from "../report/vega.ts";

/** This process's part of the work: the units k with k mod `count` = `index`. */
export interface Shard {
  index: number;
  count: number;
  /** Where it came from, for the log: "--shard", "SLURM_ARRAY_TASK_ID=3 (min 1, step 1, count 4)", ... */
  from: string;
}

/** One independent piece of a run's work: a stable key (a file name) and how to compute its result. */
export interface Unit<T> {
  /** Names the unit's result file: letters, digits, `_`, `.`, `-`. */
  key: string;
  run(): Promise<T>;
}

/** A unit's result file. */
export interface UnitRecord<T> {
  key: string;
  result: T;
  /** Seconds the unit took. */
  seconds: number;
  /** The backend it ran on. */
  backend: string;
  /** The shard that ran it, e.g. "1/4". */
  shard: string;
}

/** `"i/n"` as a shard: integers with 0 ≤ i < n. */
export function parseShard(text: string, flag = "--shard"): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  check(m, `${flag} expects i/n (shard i of n, counting from 0), got "${text}"`);
  const index = Number(m[1]), count = Number(m[2]);
  check(count >= 1, `${flag} ${text}: the number of shards must be at least 1`);
  check(index < count, `${flag} ${text}: shards count from 0, so i must be below ${count}`);
  return { index, count };
}

/**
 * The shard of this process: `flag` (`--shard i/n`) wins; else Slurm's array
 * variables; else `JOB_COMPLETION_INDEX` with `shards` (`--shards n`); else
 * 0/1. `env` reads a variable (the process's environment by default).
 */
export function resolveShard(
  flag: string | undefined,
  shards: number | undefined,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Shard {
  if (shards !== undefined) {
    check(Number.isInteger(shards) && shards >= 1, `--shards must be an integer ≥ 1, got ${shards}`);
  }
  if (flag !== undefined) {
    const s = parseShard(flag);
    check(
      shards === undefined || shards === s.count,
      `--shard ${flag} and --shards ${shards} disagree; give one of them`,
    );
    return { ...s, from: "--shard" };
  }
  const int = (name: string, fallback?: number): number => {
    const raw = env(name);
    if (raw === undefined || raw === "") {
      check(fallback !== undefined, `${name} is not set, but SLURM_ARRAY_TASK_ID is: not a Slurm job array?`);
      return fallback;
    }
    check(/^\d+$/.test(raw.trim()), `${name} must be a whole number, got "${raw}"`);
    return Number(raw);
  };
  if (env("SLURM_ARRAY_TASK_ID")) {
    const id = int("SLURM_ARRAY_TASK_ID"), min = int("SLURM_ARRAY_TASK_MIN");
    const step = int("SLURM_ARRAY_TASK_STEP", 1), count = int("SLURM_ARRAY_TASK_COUNT");
    const from = `SLURM_ARRAY_TASK_ID=${id} (min ${min}, step ${step}, count ${count})`;
    check(step >= 1 && count >= 1, `${from}: expected a step and a count of at least 1`);
    check(
      id >= min && (id - min) % step === 0 && (id - min) / step < count,
      `${from}: the task is not on the array's grid min + k·step, k < count; ` +
        "submit a regular array (--array=0-N or 1-N:S), or give --shard i/n",
    );
    check(
      shards === undefined || shards === count,
      `--shards ${shards} disagrees with the Slurm array's ${count} tasks; leave --shards out`,
    );
    return { index: (id - min) / step, count, from };
  }
  const k8s = env("JOB_COMPLETION_INDEX");
  if (k8s !== undefined && k8s !== "") {
    check(/^\d+$/.test(k8s.trim()), `JOB_COMPLETION_INDEX must be a whole number, got "${k8s}"`);
    check(
      shards !== undefined,
      `JOB_COMPLETION_INDEX=${k8s} is set but not the number of shards: give --shards n (the Job's completions)`,
    );
    const index = Number(k8s);
    check(index < shards, `JOB_COMPLETION_INDEX=${k8s} is not below --shards ${shards}`);
    return { index, count: shards, from: `JOB_COMPLETION_INDEX=${index} of --shards ${shards}` };
  }
  return { index: 0, count: shards ?? 1, from: shards === undefined ? "no shard given" : `--shards ${shards}` };
}

/** The units of `list` that `shard` runs: those at positions k with k mod count = index. */
export function unitsOf<T>(list: T[], shard: { index: number; count: number }): T[] {
  return list.filter((_, k) => k % shard.count === shard.index);
}

/** What {@link runUnits} did. */
export interface UnitsReport<T> {
  /** Every present result by key (this run's and earlier ones'), in the list's order. */
  results: Map<string, UnitRecord<T>>;
  /** Keys without a result (only after a merge or a shard's run). */
  missing: string[];
  /** Keys this process computed. */
  ran: string[];
  /** Keys of this shard already done, not redone. */
  skipped: string[];
  /** How many units this shard owns. */
  mine: number;
}

/** Where unit results live: one JSON file per key in `dir`. */
export function unitPath(dir: string, key: string): string {
  return `${dir}/${key}.json`;
}

/**
 * Runs this shard's units of `list` whose result is not in `dir` yet (all of
 * them with `redo`), writing each result atomically as soon as it is done;
 * with `merge`, runs none. Then reads every unit's result that exists.
 */
export async function runUnits<T>(
  list: Unit<T>[],
  dir: string,
  options: {
    shard: Shard;
    merge?: boolean;
    redo?: boolean;
    backend: string;
    log?: (message: string) => void;
  },
): Promise<UnitsReport<T>> {
  const keys = list.map((u) => u.key);
  for (const k of keys) {
    if (!/^[\w.-]+$/.test(k)) throw new RangeError(`unit key "${k}" is not a file name of letters, digits, _ . -`);
  }
  const twice = keys.find((k, i) => keys.indexOf(k) !== i);
  if (twice) throw new RangeError(`two units share the key "${twice}"`);
  await Deno.mkdir(dir, { recursive: true });
  const { shard } = options;
  const mine = options.merge ? [] : unitsOf(list, shard);
  const ran: string[] = [], skipped: string[] = [];
  for (const [i, unit] of mine.entries()) {
    const path = unitPath(dir, unit.key);
    if (!options.redo && await readUnit<T>(path)) {
      skipped.push(unit.key);
      continue;
    }
    options.log?.(`unit ${unit.key} (${i + 1} of this shard's ${mine.length}, shard ${shard.index}/${shard.count})`);
    const start = performance.now();
    const result = await unit.run();
    const record: UnitRecord<T> = {
      key: unit.key,
      result,
      seconds: (performance.now() - start) / 1000,
      backend: options.backend,
      shard: `${shard.index}/${shard.count}`,
    };
    await writeJsonAtomic(path, record);
    ran.push(unit.key);
  }
  const results = new Map<string, UnitRecord<T>>();
  const missing: string[] = [];
  for (const key of keys) {
    const r = await readUnit<T>(unitPath(dir, key));
    if (r) results.set(key, r);
    else missing.push(key);
  }
  return { results, missing, ran, skipped, mine: mine.length };
}

/** A unit's result file, or undefined when absent or unreadable (a unit is then run again). */
async function readUnit<T>(path: string): Promise<UnitRecord<T> | undefined> {
  let text;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new UserError(`cannot read the unit result ${path}: ${(err as Error).message}`);
  }
  try {
    const r = JSON.parse(text);
    return r && typeof r === "object" && "result" in r ? r : undefined;
  } catch {
    return undefined;
  }
}
