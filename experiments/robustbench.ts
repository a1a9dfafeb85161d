/**
 * A RobustBench-style entry for one model: clean accuracy and robust accuracy
 * under the standard run of today (APGD-CE, APGD-T with 9 targets, Square
 * with 5,000 queries; AutoAttack less FAB-T), L∞, with the checks AutoAttack
 * runs itself. The model is one of the zoo's (A, A_nat, A_prime, A_fgsm, B)
 * or any TF.js layers model (`--model path/to/model.json`) taking the
 * dataset's images in its pixel range and returning logits.
 *
 *   deno task robustbench                          # zoo model A (quick recipe), first 200 MNIST test images
 *   deno task robustbench --model A_nat            # the naturally trained one
 *   deno task robustbench --model dir/model.json   # a model of your own
 *   deno task robustbench --preset paper           # all 10,000 test images
 *   deno task robustbench --shard 0/4              # one of 4 shards (batches of --attack-batch examples); then --merge
 *
 * @module
 */
import {
  autoAttack,
  AUTOATTACK_ATTACKS,
  AUTOATTACK_NAME,
  autoAttackChecks,
  type BaseConfig,
  type Check,
  check,
  configHash,
  currentBackend,
  type DatasetName,
  DATASETS,
  defineExperiment,
  experimentMain,
  fmtPct,
  gather,
  loadModel,
  markdownTable,
  mergeSanity,
  MODEL_NAMES,
  type ModelName,
  netText,
  recipeOf,
  type Results as ResultsOf,
  type RunContext,
  runMain,
  type SanityCounts,
  tf,
  type tfl,
  type Unit,
  UserError,
  type VegaLiteSpec,
  versions,
  zooConfig,
} from "../mod.ts";

/** Every hyperparameter: the zoo's recipe (for zoo models), the model, the threat model and the attacks' budgets. */
export interface Config extends BaseConfig {
  model: string; // a zoo name (A, A_nat, A_prime, A_fgsm, B) or the path of a TF.js layers model.json (or its folder)
  eps: number; // ε, L∞ radius in pixel units
  examples: number; // the first test images evaluated
  attackBatch: number; // examples per unit of work (and per attack batch); `batch` is the recipe's training batch
  steps: number; // APGD iterations (AutoAttack: 100)
  targets: number; // APGD-T target classes (AutoAttack: 9)
  squareQueries: number; // Square's query budget (AutoAttack: 5,000)
}

/** The entry, with RobustBench's field names where it has one; accuracies in percent with two decimals. */
export interface Entry {
  name: string;
  /** "sha256:<hex>" of model.json and its weights files, or "config:<hash>" of a zoo model's training config. */
  model_hash: string;
  dataset: DatasetName;
  threat_model: "Linf";
  eps: string;
  architecture: string;
  clean_acc: string;
  autoattack_acc: string;
  n_examples: number;
  attacks: string;
  seed: number;
  backend: string;
  versions: Record<string, string>;
}

/** What one unit (a batch of test images) returns. */
export interface Part {
  index: number[];
  /** The seed of the batch's run (logged). */
  seed: number;
  clean: boolean[];
  /** Per attack in order, the flags after it. */
  stages: { name: string; robust: boolean[]; ran: number; seconds: number }[];
  robust: boolean[];
  squareQueries: number[];
  sanity: SanityCounts;
  backend: string;
}

/** What `run` computes; the harness adds the header (config, seed, backend, versions, time, command line). */
export interface Body {
  entry: Entry;
  /** Accuracy after each attack (each run on what the earlier ones left), clean first. */
  stages: { name: string; accuracy: number; robust: number; ran: number; seconds: number }[];
  checks: Check[];
  /** How each batch's seed comes from the run's. */
  seedRule: string;
  /** Square's queries per example it ran on: mean and median (0 when it ran on none). */
  squareQueries: { mean: number; median: number };
  /** Per example: its test index, and whether it was robust after each stage (clean first). */
  outcomes: { index: number[]; flags: Record<string, boolean[]> };
}
/** The results file, `robustbench_<dataset>.results.json`. */
export type Results = ResultsOf<Config, Body>;

const OWN = { model: "A", attackBatch: 100, steps: 100, targets: 9, squareQueries: 5000 };
const SMOKE = { examples: 4, attackBatch: 2, steps: 3, targets: 2, squareQueries: 8 }; // the tests' preset
const SEED_RULE = "each batch runs with seed = the run's seed × 1000003 + the test index of its first example";

/** The experiment: MNIST at ε 0.3 and CIFAR-10 at ε 8/255 (pixels in [0, 255]), as RobustBench's L∞ tracks. */
export const experiment = defineExperiment<Config, Body>({
  name: "robustbench",
  summary:
    `a RobustBench-style entry: clean and robust accuracy under ${AUTOATTACK_NAME}, L∞, with AutoAttack's checks`,
  models: (c) => isZoo(c.model) ? [c.model] : [],
  run,
  figure,
  table,
  datasets: {
    mnist: {
      defaults: { ...OWN, eps: 0.3, examples: 200 },
      presets: { paper: { examples: 10000 }, smoke: SMOKE },
    },
    cifar10: {
      defaults: { ...OWN, eps: 8, examples: 100 },
      presets: { paper: { examples: 10000 }, smoke: SMOKE },
    },
  },
  help: {
    model: `zoo model (${MODEL_NAMES.join(", ")}) or path of a TF.js layers model.json`,
    eps: "L∞ radius ε in pixel units (MNIST [0,1], CIFAR-10 [0,255])",
    examples: "first test images evaluated",
    attackBatch: "examples per unit (and attack batch)",
    steps: "APGD iterations",
    targets: "APGD-T target classes",
    squareQueries: "Square's queries per example",
  },
  counts: ["examples", "attackBatch", "steps", "targets", "squareQueries"],
  units: "one per batch of --attack-batch test examples (the whole standard run on it)",
  validate: (c) => {
    check(c.targets <= 9, `--targets must be at most 9 (the classes besides the true one), got ${c.targets}`);
    check(c.model.trim(), `--model must be ${MODEL_NAMES.join(", ")} or the path of a model.json (or its folder)`);
  },
});

function isZoo(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** The folder of a model given by path: the path itself, or the folder of its model.json. */
function modelFolder(path: string): string {
  return path.endsWith(".json") ? path.slice(0, Math.max(path.lastIndexOf("/"), 0)) || "." : path;
}

/** What the entry says of the model: its name, architecture, and a hash that changes when it does. */
interface About {
  name: string;
  architecture: string;
  hash: string;
}

/**
 * A model file described from its files alone: layer types and parameters
 * from model.json, and the SHA-256 of model.json and its weights files (so
 * that cached units of another model at the same path are never reused).
 */
async function describeFile(path: string): Promise<About> {
  const folder = modelFolder(path);
  const file = path.endsWith(".json") ? path : `${path}/model.json`;
  const read = async (f: string) => {
    try {
      return await Deno.readFile(f);
    } catch (err) {
      throw new UserError(`--model ${path}: cannot read ${f} (${(err as Error).message})`);
    }
  };
  const text = await read(file);
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(text));
  } catch (err) {
    throw new UserError(`--model ${path}: ${file} is not JSON (${(err as Error).message})`);
  }
  const config = json?.modelTopology?.model_config?.config ?? json?.modelTopology?.config;
  const layers: { class_name: string }[] = Array.isArray(config) ? config : config?.layers ?? [];
  const kinds = layers.map((l) => l.class_name).filter((k) => !["InputLayer", "Flatten", "Activation"].includes(k));
  const groups: { paths: string[]; weights: { shape: number[] }[] }[] = json?.weightsManifest ?? [];
  const params = groups.flatMap((g) => g.weights).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
  const parts = [text, ...await Promise.all(groups.flatMap((g) => g.paths).map((p) => read(`${folder}/${p}`)))];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return {
    name: path,
    architecture: `${kinds.join(", ") || "TF.js layers model"} (${params.toLocaleString("en")} parameters)`,
    hash: `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`,
  };
}

/** The model's name, architecture and hash in the entry (a zoo model's hash is that of its training config). */
async function describe(config: Config, preset: string): Promise<About> {
  if (!isZoo(config.model)) return await describeFile(config.model);
  const train = zooConfig(config.model, config.dataset, recipeOf(config));
  const how = train.method === "natural" ? "naturally trained" : `${train.method.toUpperCase()}-trained`;
  return {
    name: `zoo ${config.model} (${preset} recipe, seed ${config.seed})`,
    architecture: `${netText(train)}, ${how} at ε ${train.eps}`,
    hash: `config:${await configHash(train)}`,
  };
}

/** Loads the model: from the zoo (cached, else trained) or from its files, checking its input shape. */
async function loadTarget(config: Config, ctx: RunContext): Promise<tfl.LayersModel> {
  if (isZoo(config.model)) return (await ctx.model(config.model)).model;
  const model = await loadModel(modelFolder(config.model));
  const want = [null, ...(await ctx.test()).shape];
  const got = model.inputs[0].shape;
  check(
    got.length === want.length && got.every((d, i) => i === 0 || d === want[i]),
    `--model ${config.model} takes inputs of shape [${got.join(", ")}]; ${config.dataset} images are ` +
      `[batch, ${want.slice(1).join(", ")}]`,
  );
  return model;
}

/** The experiment's computation: the standard run on each batch of the first test images, one unit each. */
async function run(config: Config, ctx: RunContext): Promise<Body> {
  const n = Math.min(config.examples, ctx.testCount());
  const range = DATASETS[config.dataset].range;
  const batches: number[][] = [];
  for (let s = 0; s < n; s += config.attackBatch) {
    batches.push(Array.from({ length: Math.min(config.attackBatch, n - s) }, (_, i) => s + i));
  }
  let model: tfl.LayersModel | undefined;
  const about = await describe(config, ctx.preset);
  // A model file's units carry its hash: those of another model once at the same path are not reused.
  const stamp = isZoo(config.model) ? "" : `-${about.hash.slice(7, 19)}`;
  const key = (ix: number[]) => `examples-${pad(ix[0])}-${pad(ix[ix.length - 1])}${stamp}`;
  const units: Unit<Part>[] = batches.map((ix) => ({
    key: key(ix),
    run: async () => {
      model ??= await loadTarget(config, ctx);
      const { x, y } = gather(await ctx.test(), ix);
      const seed = config.seed * 1000003 + ix[0];
      const r = await autoAttack(model, x, y, {
        eps: config.eps,
        range,
        seed,
        steps: config.steps,
        targets: config.targets,
        squareQueries: config.squareQueries,
        log: (m) => ctx.log(`examples ${ix[0]}–${ix[ix.length - 1]}: ${m}`),
      });
      tf.dispose([x, y, r.adv]);
      return {
        index: ix,
        seed,
        clean: r.clean,
        stages: r.stages,
        robust: r.robust,
        squareQueries: r.squareQueries,
        sanity: r.sanity,
        backend: currentBackend()?.name ?? tf.getBackend(),
      };
    },
  }));
  const done = await ctx.units(units);
  model?.dispose();
  const parts = batches.flatMap((ix) => done.has(key(ix)) ? [done.get(key(ix))!] : []);
  const all = <T>(f: (p: Part) => T[]) => parts.flatMap(f);
  const clean = all((p) => p.clean), robust = all((p) => p.robust);
  const flags: Record<string, boolean[]> = { clean };
  for (const [k, name] of AUTOATTACK_ATTACKS.entries()) flags[name] = all((p) => p.stages[k].robust);
  const count = (f: boolean[]) => f.filter(Boolean).length;
  const acc = (f: boolean[]) => f.length ? count(f) / f.length : NaN;
  const stages: Body["stages"] = [
    { name: "clean", accuracy: acc(clean), robust: count(clean), ran: clean.length, seconds: 0 },
    ...AUTOATTACK_ATTACKS.map((name, k) => ({
      name,
      accuracy: acc(flags[name]),
      robust: count(flags[name]),
      ran: parts.reduce((s, p) => s + p.stages[k].ran, 0),
      seconds: parts.reduce((s, p) => s + p.stages[k].seconds, 0),
    })),
  ];
  const spent = all((p) => p.squareQueries.filter((q) => q > 0));
  const backends = [...new Set(parts.map((p) => p.backend))].sort();
  const pct2 = (v: number) => Number.isFinite(v) ? (100 * v).toFixed(2) : String(v);
  return {
    entry: {
      name: about.name,
      model_hash: about.hash,
      dataset: config.dataset,
      threat_model: "Linf",
      eps: config.dataset === "cifar10" ? `${config.eps}/255` : String(config.eps),
      architecture: about.architecture,
      clean_acc: pct2(acc(clean)),
      autoattack_acc: pct2(acc(robust)),
      n_examples: robust.length,
      attacks: AUTOATTACK_NAME,
      seed: config.seed,
      backend: backends.join(", ") || (currentBackend()?.name ?? tf.getBackend()),
      versions: versions(),
    },
    stages,
    checks: parts.length
      ? autoAttackChecks(mergeSanity(parts.map((p) => p.sanity)), flags["APGD-T"], robust)
      : [{ name: "the checks of the standard run", pass: false, detail: "not run: no unit has a result yet" }],
    seedRule: SEED_RULE,
    squareQueries: {
      mean: spent.length ? spent.reduce((s, q) => s + q, 0) / spent.length : 0,
      median: spent.length ? spent.sort((a, b) => a - b)[Math.floor((spent.length - 1) / 2)] : 0,
    },
    outcomes: { index: all((p) => p.index), flags },
  };
}

/** Accuracy after each attack of the standard run, as bars, clean first. */
export function figure(r: Results): VegaLiteSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `${r.entry.name}, ${DATASETS[r.dataset].title}, L∞ ε ${r.entry.eps}: accuracy after each attack`,
    data: { values: r.stages.map((s) => ({ ...s, label: fmtPct(s.accuracy, 2) })) },
    width: 360,
    height: 160,
    encoding: {
      y: { field: "name", type: "nominal", sort: r.stages.map((s) => s.name), title: null },
      x: {
        field: "accuracy",
        type: "quantitative",
        axis: { format: "%", tickCount: 5 },
        scale: { domain: [0, 1] },
        title: null,
      },
    },
    layer: [
      { mark: { type: "bar", color: "#4c78a8" } },
      { mark: { type: "text", align: "left", dx: 4 }, encoding: { text: { field: "label" } } },
    ],
    config: { font: "DejaVu Sans" },
  } as VegaLiteSpec;
}

/** The entry as a markdown line of a leaderboard, the accuracy after each attack, and the checks. */
export function table(r: Results): string {
  const e = r.entry;
  const failed = r.checks.filter((c) => !c.pass).length;
  return [
    `# ${e.name}: ${e.attacks}, ${DATASETS[r.dataset].title}, L∞ ε ${e.eps}`,
    `![accuracy after each attack](robustbench_${r.dataset}.png)`,
    markdownTable(
      ["model", "architecture", "clean", `robust (${e.attacks})`, "examples", "ε", "seed", "backend"],
      [[e.name, e.architecture, `${e.clean_acc}%`, `${e.autoattack_acc}%`, e.n_examples, e.eps, e.seed, e.backend]],
      ["l", "l", "r", "r", "r", "r", "r", "l"],
    ),
    `Each attack runs only on the examples still robust after the earlier ones (${r.seedRule}); an example counts ` +
    `as robust only if none broke it. APGD: ${r.config.steps} iterations, APGD-T ${r.config.targets} targets, ` +
    `Square ${r.config.squareQueries} queries (${Math.round(r.squareQueries.mean)} spent on average, median ` +
    `${r.squareQueries.median}). No FAB-T: this is AutoAttack's standard run without it.`,
    markdownTable(
      ["after", "accuracy", "robust", "run on", "seconds"],
      r.stages.map((s) => [s.name, fmtPct(s.accuracy, 2), s.robust, s.ran, s.seconds.toFixed(1)]),
      ["l", "r", "r", "r", "r"],
    ),
    `## Checks of the standard run (${failed ? `${failed} FAILED` : "all pass"})`,
    markdownTable(
      ["check", "", "measured"],
      r.checks.map((c) => [c.name, c.pass ? "pass" : "**FAIL**", c.detail]),
      ["l", "l", "l"],
    ),
    "The entry:",
    "```json\n" + JSON.stringify(e, null, 2) + "\n```",
  ].join("\n\n") + "\n";
}

/** A test index with 5 digits, so that unit keys sort in test order. */
function pad(i: number): string {
  return String(i).padStart(5, "0");
}

if (import.meta.main) await runMain(() => experimentMain(experiment, Deno.args));
