/**
 * A robustness evaluation as the field expects it today (Carlini et al. 2019,
 * "On Evaluating Adversarial Robustness"): an attack suite run with per-example
 * outcomes, the exact worst case over groups of attacks, and the checks that
 * guard against fooling ourselves (accuracy falls with ε and reaches 0; more
 * steps or restarts never help the model; iterative beats one-step; white-box
 * beats transfer; a natural model falls; gradients are not zero; logits are
 * deterministic and independent of the batch; saved examples are valid and
 * reproduce the numbers). A failed check is reported, never hidden.
 *
 * @module
 */
import { tf, type tfl } from "../core/tf.ts";
import { type Dataset, gather, imageSize } from "../data/dataset.ts";
import { crossEntropy, isCorrect } from "../nn/losses.ts";
import { logits } from "../nn/mnist_net.ts";
import { accuracy, type Attack, type AttackOutcome, runSuite, validateAdversarial, worstCase } from "./suite.ts";
import { writeFileAtomic } from "../core/fs.ts";
import { AUTOATTACK_NAME } from "./autoattack.ts";
import { pgd } from "./pgd.ts";

/** A row of a robustness table: an attack, its group, and the paper's accuracy where it reports one. */
export interface SuiteRow extends Attack {
  /**
   * "white-box" (source = target) or "transfer" (the paper's rows), or
   * "beyond the paper" (the field's attacks since: APGD-CE, APGD-T, Square).
   */
  group: "white-box" | "transfer" | "beyond the paper";
  /** The paper's accuracy, a fraction (absent for rows the paper does not have). */
  paper?: number;
}

/** One check: what it tests, whether it passed, and its numbers. */
export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

/** What the robustness pieces need ({@link attackSlice}, {@link modelChecks}). */
export interface RobustnessInput {
  /** Every model by name: the target, each row's source, and `natural`. */
  models: Record<string, tfl.LayersModel>;
  /** The model evaluated. */
  target: string;
  /** The naturally trained model (it must fall under white-box PGD). */
  natural: string;
  data: Dataset;
  /** Test indices evaluated. */
  indices: number[];
  rows: SuiteRow[];
  /** The threat model's ε (the checks' curve goes from 0 to 2ε). */
  eps: number;
  seed: number;
  /** Examples per batch. */
  batch: number;
  /** Examples of the checks that need their own attacks (the ε curve, the natural model, gradients). */
  checkExamples: number;
  /** Folder for the adversarial examples (float32), validated and re-scored by the checks. */
  saveDir: string;
  log: (message: string) => void;
}

/** The outcomes of every row, accuracy against ε, and the checks. */
export interface RobustnessResult {
  outcomes: AttackOutcome[];
  /** Accuracy under PGD (40 steps of 2.5ε/40) against ε, on the checks' examples; the last point is unbounded. */
  epsCurve: { eps: number; accuracy: number }[];
  checks: Check[];
}

/** The pointwise worst case over the rows of each group, and over all rows. */
export function worstRows(rows: SuiteRow[], outcomes: AttackOutcome[]): { name: string; accuracy: number }[] {
  const pick = (keep: (r: SuiteRow) => boolean) =>
    worstCase(outcomes.filter((_, k) => keep(rows[k]) && rows[k].method !== "natural"));
  return [
    { name: "worst case, all white-box", accuracy: pick((r) => r.group === "white-box").accuracy },
    { name: "worst case, all transfer", accuracy: pick((r) => r.group === "transfer").accuracy },
    {
      name: `worst case, ${AUTOATTACK_NAME}`,
      accuracy: pick((r) => ["apgd-ce", "apgd-t", "square"].includes(r.method)).accuracy,
    },
    { name: "worst case, every attack", accuracy: pick(() => true).accuracy },
  ].filter((w) => Number.isFinite(w.accuracy));
}

/** The folder of an attack's saved examples, under the save folder. */
export function advName(attack: Attack): string {
  return attack.name.replaceAll("+", "plus").replaceAll("×", "x").replace(/[^\w.-]+/g, "_");
}

/**
 * The file of an attack's saved examples from test index `first` on, in its
 * folder: `<advName>/<first, 5 digits>.f32`, so that the files of a folder in
 * name order are the examples in test order (`cat <folder>/*.f32` is the whole).
 */
export function advFile(attack: Attack, first: number): string {
  return `${advName(attack)}/${String(first).padStart(5, "0")}.f32`;
}

/** One slice of examples attacked by every row: the outcomes, and the check of the saved examples. */
export interface SlicePart {
  outcomes: AttackOutcome[];
  /** What the validator found wrong with the saved examples (empty when valid). */
  problems: string[];
  /** Examples whose re-scored outcome differs from the reported one. */
  mismatched: number;
}

/**
 * Runs every row on one slice of the examples (`indices`), saves each row's
 * adversarial examples as float32 ({@link advFile}), then reads them back,
 * validates them against the originals and re-scores them on the target.
 */
export async function attackSlice(
  o: Omit<RobustnessInput, "checkExamples" | "natural" | "eps">,
): Promise<SlicePart> {
  const { models, target, data, indices } = o;
  const names = o.rows.map(advName);
  const twice = names.find((f, i) => names.indexOf(f) !== i);
  if (twice) throw new RangeError(`two rows would save their examples to the same folder ${twice}`);
  const size = imageSize(data);
  const saved = new Map<string, Float32Array>();
  const outcomes = await runSuite(models, target, data, o.rows, {
    indices,
    batch: o.batch,
    seed: o.seed,
    onAdversarial: (attack, batch, adv) => {
      let all = saved.get(attack.name);
      if (!all) saved.set(attack.name, all = new Float32Array(indices.length * size));
      all.set(adv, indices.indexOf(batch[0]) * size);
    },
  });
  for (const row of o.rows) {
    await Deno.mkdir(`${o.saveDir}/${advName(row)}`, { recursive: true });
    await writeFileAtomic(`${o.saveDir}/${advFile(row, indices[0])}`, bytesOf(saved.get(row.name)!));
  }
  saved.clear();
  const all = gather(data, indices);
  const original = await all.x.data() as Float32Array;
  tf.dispose([all.x, all.y]);
  const problems: string[] = [];
  let mismatched = 0;
  for (const [k, row] of o.rows.entries()) {
    const adv = new Float32Array((await Deno.readFile(`${o.saveDir}/${advFile(row, indices[0])}`)).slice().buffer);
    const eps = row.method === "natural" ? 0 : row.eps;
    for (const p of validateAdversarial(adv, original, eps, data.range)) problems.push(`${row.name}: ${p}`);
    const flags = await rescore(models[target], adv, data, indices, o.batch);
    mismatched += flags.filter((f, i) => f !== outcomes[k].correct[i]).length;
  }
  return { outcomes, problems, mismatched };
}

/** The check of the saved examples over every slice. */
export function savedCheck(parts: SlicePart[], saveDir: string, range: [number, number]): Check {
  const problems = parts.flatMap((p) => p.problems);
  const mismatched = parts.reduce((n, p) => n + p.mismatched, 0);
  return {
    name: "the saved examples pass the validator and reproduce the numbers",
    pass: !problems.length && mismatched === 0,
    detail: (problems.length ? problems.join("; ") + "; " : "") +
      `re-scored from ${saveDir}: ${mismatched} per-example outcome${mismatched === 1 ? "" : "s"} differ; ` +
      `‖δ‖∞ ≤ ε + 1e-4, pixels in [${range[0]}, ${range[1]}], no NaN${problems.length ? "" : ": all hold"}`,
  };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/**
 * The checks that run models of their own, on the first `checkExamples` of the
 * indices: accuracy against ε (never rising, 0% when unbounded), the natural
 * model falling under white-box PGD, no all-zero input gradients, logits
 * identical across passes and independent of the batch size.
 */
export async function modelChecks(
  o: Omit<RobustnessInput, "saveDir" | "batch">,
): Promise<Pick<RobustnessResult, "epsCurve" | "checks">> {
  const { models, target, data } = o;
  const range = data.range;
  const checks: Check[] = [];
  const sub = o.indices.slice(0, o.checkExamples);
  const { x, y } = gather(data, sub);

  // Accuracy against ε: never rising, 0% when unbounded.
  const epsCurve: RobustnessResult["epsCurve"] = [];
  const points = [0, 0.25, 0.5, 0.75, 1, 1.5, 2].map((f) => f * o.eps);
  points.push(range[1] - range[0]);
  for (const eps of points) {
    let a: number;
    if (eps === 0) {
      a = await cleanAccuracy(models[target], x, y);
    } else {
      const r = await pgd(models[target], x, y, { eps, steps: 40, stepSize: 2.5 * eps / 40, range, seed: o.seed });
      r.adv.dispose();
      a = accuracy(r.robust);
    }
    epsCurve.push({ eps, accuracy: a });
  }
  const rises = epsCurve.filter((p, i) => i > 0 && p.accuracy > epsCurve[i - 1].accuracy);
  checks.push({
    name: "accuracy never rises as ε grows",
    pass: rises.length === 0,
    detail: epsCurve.map((p) => `${+p.eps.toPrecision(3)}: ${pct(p.accuracy)}`).join(", ") +
      ` (PGD 40 steps of 2.5ε/40, first ${sub.length} examples)`,
  });
  const unbounded = epsCurve[epsCurve.length - 1];
  checks.push({
    name: "an unbounded attack (ε = the whole pixel range) brings accuracy to 0%",
    pass: unbounded.accuracy === 0,
    detail: `${pct(unbounded.accuracy)} at ε = ${unbounded.eps}`,
  });

  // The naturally trained model falls under white-box PGD.
  const strongest = o.rows.find((r) => r.method === "pgd" && r.group === "white-box");
  if (strongest && models[o.natural]) {
    const r = await pgd(models[o.natural], x, y, {
      eps: o.eps,
      steps: strongest.steps,
      stepSize: strongest.stepSize,
      range,
      seed: o.seed,
    });
    r.adv.dispose();
    const a = accuracy(r.robust);
    checks.push({
      name: `the naturally trained model (${o.natural}) falls to near 0% under white-box PGD`,
      pass: a <= 0.02,
      detail: `${pct(a)} under PGD ${strongest.steps} steps of ${strongest.stepSize} (at most 2% passes)`,
    });
  }

  // No all-zero input gradients; deterministic logits, independent of the batch size.
  const zero = tf.tidy(() => {
    const g = tf.grad((v: tf.Tensor) => crossEntropy(logits(models[target], v), y).sum())(x);
    return g.abs().max([1, 2, 3]).equal(0).sum();
  });
  const zeros = (await zero.data())[0];
  zero.dispose();
  checks.push({
    name: "no example has an all-zero input gradient",
    pass: zeros === 0,
    detail: `${zeros} of ${sub.length} examples with ∇x loss = 0`,
  });
  const passes: Float32Array[] = [];
  for (let p = 0; p < 5; p++) passes.push(await logitsOf(models[target], x));
  const varies = passes.slice(1).some((z) => z.some((v, i) => v !== passes[0][i]));
  checks.push({
    name: "logits are identical across 5 passes",
    pass: !varies,
    detail: varies ? "they differ between passes" : `5 passes over ${sub.length} examples, bit-identical`,
  });
  let diff = 0, scale = 0;
  const whole = passes[0];
  for (let i = 0; i < sub.length; i++) {
    const one = await logitsOf(models[target], x.slice([i], [1]));
    for (let c = 0; c < one.length; c++) {
      diff = Math.max(diff, Math.abs(one[c] - whole[i * one.length + c]));
      scale = Math.max(scale, Math.abs(whole[i * one.length + c]));
    }
  }
  checks.push({
    name: "logits do not depend on the batch size",
    pass: diff <= 1e-4 * Math.max(1, scale),
    detail: `largest difference between batches of 1 and of ${sub.length}: ${diff.toExponential(2)} ` +
      `(logits up to ${scale.toFixed(2)}; at most 1e-4 of that passes)`,
  });
  tf.dispose([x, y]);
  return { epsCurve, checks };
}

/**
 * The checks computed from the rows' per-example outcomes alone: more steps or
 * restarts never raise accuracy, white-box PGD is never weaker than FGSM,
 * white-box is never weaker than transfer (with the examples that only a
 * transfer attack breaks).
 */
export function outcomeChecks(rows: SuiteRow[], outcomes: AttackOutcome[]): Check[] {
  const checks: Check[] = [];
  const acc = (k: number) => accuracy(outcomes[k].correct);

  // More steps or restarts never raise accuracy (same method and source).
  const pairs: string[] = [];
  let monotone = true;
  rows.forEach((a, i) =>
    rows.forEach((b, j) => {
      if (i === j || a.method !== b.method || a.source !== b.source || a.method === "natural") return;
      if (b.steps >= a.steps && b.restarts >= a.restarts && (b.steps > a.steps || b.restarts > a.restarts)) {
        const ok = acc(j) <= acc(i);
        monotone &&= ok;
        pairs.push(`${b.name} ${pct(acc(j))} ${ok ? "≤" : ">"} ${a.name} ${pct(acc(i))}`);
      }
    })
  );
  if (pairs.length) {
    checks.push({ name: "more steps or restarts never raise accuracy", pass: monotone, detail: pairs.join("; ") });
  }

  // White-box PGD is never weaker than white-box FGSM. (Between transfer rows it may be: one-step examples often
  // transfer better, as in the paper's own Table 1 from B; those comparisons are reported, not checked.)
  const fgsmVsPgd: string[] = [];
  let pgdStronger = true;
  rows.forEach((f, i) => {
    if (f.method !== "fgsm") return;
    const pgds = rows.flatMap((p, j) => p.method === "pgd" && p.source === f.source ? [j] : []);
    if (!pgds.length) return;
    const best = Math.min(...pgds.map(acc));
    if (f.group === "white-box") pgdStronger &&= best <= acc(i);
    fgsmVsPgd.push(
      `${f.source}${f.group === "white-box" ? "" : " (transfer, not checked)"}: PGD ${pct(best)} vs FGSM ${
        pct(acc(i))
      }`,
    );
  });
  if (fgsmVsPgd.length) {
    checks.push({
      name: "white-box PGD is never weaker than FGSM on the same examples",
      pass: pgdStronger,
      detail: fgsmVsPgd.join("; "),
    });
  }

  // White-box is never weaker than transfer; the examples only a transfer attack breaks.
  const white = outcomes.filter((_, k) => rows[k].group === "white-box" && rows[k].method !== "natural");
  const transfer = outcomes.filter((_, k) => rows[k].group === "transfer");
  if (white.length && transfer.length) {
    const w = worstCase(white), t = worstCase(transfer);
    const onlyTransfer = w.correct.filter((c, i) => c && !t.correct[i]).length;
    const bestTransfer = Math.min(...transfer.map((t) => accuracy(t.correct)));
    checks.push({
      name: "white-box is never weaker than transfer",
      pass: w.accuracy <= bestTransfer,
      detail: `worst case of the white-box rows ${pct(w.accuracy)}, strongest transfer row ${pct(bestTransfer)}; ` +
        `${onlyTransfer} example${onlyTransfer === 1 ? "" : "s"} broken only by a transfer attack` +
        (onlyTransfer ? " (the white-box attacks miss them: a sign of masked gradients if many)" : ""),
    });
  }

  // APGD-CE is never weaker than PGD with as many iterations and one restart (Croce and Hein's claim, here).
  rows.forEach((a, i) => {
    if (a.method !== "apgd-ce") return;
    const j = rows.findIndex((p) =>
      p.method === "pgd" && p.source === a.source && p.steps === a.steps && p.restarts === 1
    );
    if (j < 0) return;
    const only = outcomes[i].correct.filter((c, e) => !c && outcomes[j].correct[e]).length;
    const onlyPgd = outcomes[j].correct.filter((c, e) => !c && outcomes[i].correct[e]).length;
    checks.push({
      name: `APGD-CE is never weaker than PGD ${a.steps}×1`,
      pass: acc(i) <= acc(j),
      detail: `APGD-CE ${a.steps} ${pct(acc(i))} vs PGD ${a.steps}×1 ${pct(acc(j))}; examples broken only by APGD-CE ` +
        `${only}, only by PGD ${onlyPgd}`,
    });
  });

  // A black-box attack (Square) beating every white-box gradient attack by more than 0.2 points: masked gradients.
  const sq = rows.findIndex((r) => r.method === "square");
  const gradient = outcomes.filter((_, k) =>
    rows[k].source === rows[sq]?.source && rows[k].method !== "natural" && rows[k].method !== "square"
  );
  if (sq >= 0 && gradient.length) {
    const w = worstCase(gradient).accuracy;
    checks.push({
      name: "Square (forward passes only) is not stronger than the white-box gradient attacks",
      pass: acc(sq) >= w - 0.002,
      detail: `Square ${pct(acc(sq))} vs the worst case of the gradient attacks on ${rows[sq].source} ${pct(w)} ` +
        "(more than 0.2 points lower would point to masked gradients)",
    });
  }
  return checks;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Whether `model` classifies each of `x` correctly, as the suite scores (argmax of the logits, first on ties). */
async function correctOf(model: tfl.LayersModel, x: tf.Tensor, y: tf.Tensor1D): Promise<boolean[]> {
  const ok = tf.tidy(() => isCorrect(logits(model, x), y));
  const flags = Array.from(await ok.data(), (v) => v === 1);
  ok.dispose();
  return flags;
}

async function cleanAccuracy(model: tfl.LayersModel, x: tf.Tensor, y: tf.Tensor1D): Promise<number> {
  return accuracy(await correctOf(model, x, y));
}

async function logitsOf(model: tfl.LayersModel, x: tf.Tensor): Promise<Float32Array> {
  const z = logits(model, x);
  const out = await z.data() as Float32Array;
  z.dispose();
  return out;
}

/** Whether the model classifies each saved example correctly, in the suite's batches. */
async function rescore(
  model: tfl.LayersModel,
  adv: Float32Array,
  data: Dataset,
  indices: number[],
  batch: number,
): Promise<boolean[]> {
  const size = imageSize(data);
  const flags: boolean[] = [];
  for (let s = 0; s < indices.length; s += batch) {
    const n = Math.min(batch, indices.length - s);
    const x = tf.tensor4d(adv.subarray(s * size, (s + n) * size), [n, ...data.shape]);
    const y = tf.tensor1d(indices.slice(s, s + n).map((i) => data.labels[i]), "int32");
    flags.push(...await correctOf(model, x, y));
    tf.dispose([x, y]);
  }
  return flags;
}
