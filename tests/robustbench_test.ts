/**
 * The robustbench experiment end to end on its smoke preset: a model given by
 * its model.json and a zoo model, the RobustBench-style entry, the files and
 * their redraw; shards that merge into exactly the whole run; and a model
 * path that cannot be read is named in the error.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { presetConfig, redrawAll, runExperiment, runShard, saveModel, tf, UserError, writeResults } from "../mod.ts";
import { type Config, experiment } from "../experiments/robustbench.ts";
import { findExperiment } from "../experiments/figures.ts";
import { tinyTrainedNet } from "./fixtures/tiny_mnist.ts";

await tf.setBackend("cpu");
const dir = await Deno.makeTempDir();
const net = await tinyTrainedNet();
await saveModel(net, `${dir}/net`);
/** The smoke preset on the saved net, at an ε where it is partly robust, so that every attack runs. */
const config: Config = { ...presetConfig(experiment, "mnist", "smoke"), model: `${dir}/net/model.json`, eps: 0.05 };

Deno.test("robustbench smoke preset on a model.json: the entry, every stage, the checks, files, redraw", async () => {
  const cacheDir = `${dir}/cache-whole`;
  const r = await runExperiment(experiment, config, { preset: "smoke", cacheDir, quiet: true });
  const e = r.entry;
  assertEquals([e.dataset, e.threat_model, e.eps, e.n_examples, e.attacks], [
    "mnist",
    "Linf",
    "0.05",
    4,
    "APGD-CE + APGD-T + Square",
  ]);
  assert(e.architecture.includes("Dense") && e.architecture.includes("25,450 parameters"), e.architecture);
  assert(/^sha256:[0-9a-f]{64}$/.test(e.model_hash), e.model_hash);
  assertEquals(r.stages.map((s) => s.name), ["clean", "APGD-CE", "APGD-T", "Square"]);
  assert(r.stages.every((s, k) => k === 0 || s.robust <= r.stages[k - 1].robust), "accuracy only falls");
  assertEquals(e.clean_acc, (100 * r.stages[0].accuracy).toFixed(2));
  assertEquals(e.autoattack_acc, (100 * r.stages[3].accuracy).toFixed(2));
  console.log(`smoke: ${r.stages.map((s) => `${s.name} ${s.robust}/${e.n_examples} (ran on ${s.ran})`).join(", ")}`);
  assertEquals(r.checks.length, 5);
  assert(r.checks.find((c) => c.name.startsWith("the adversarial examples"))!.pass);
  assertEquals(r.outcomes.index, [0, 1, 2, 3]);
  assertEquals(r.units?.total, 2);
  const out = `${dir}/out`;
  const written = await writeResults(experiment, r, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "robustbench_mnist.results.json",
    "robustbench_mnist.vl.json",
    "robustbench_mnist.svg",
    "robustbench_mnist.png",
    "robustbench_mnist.md",
  ]);
  const md = await Deno.readTextFile(`${out}/robustbench_mnist.md`);
  assert(md.includes(`| ${e.clean_acc}% |`) && md.includes('"autoattack_acc"') && md.includes("## Checks"), md);
  const { failed } = await redrawAll(out, findExperiment);
  assertEquals(failed, []);
});

Deno.test("robustbench shards (one unit per batch of examples) merge into exactly the whole run", async () => {
  const whole = await runExperiment(experiment, config, { preset: "smoke", cacheDir: `${dir}/cache-a`, quiet: true });
  const cacheDir = `${dir}/cache-b`;
  for (const index of [1, 0]) {
    const s = await runShard(experiment, config, { index, count: 2, from: "test" }, { cacheDir, quiet: true });
    assertEquals(s.ran.length, 1);
  }
  const merged = await runExperiment(experiment, config, { preset: "smoke", cacheDir, quiet: true, merge: true });
  assertEquals(merged.outcomes, whole.outcomes);
  assertEquals(merged.entry.autoattack_acc, whole.entry.autoattack_acc);
  assertEquals(merged.units?.missing, []);
});

Deno.test("robustbench smoke preset on a zoo model (trained in seconds by the smoke recipe)", async () => {
  const zoo: Config = { ...presetConfig(experiment, "mnist", "smoke"), examples: 2 };
  const r = await runExperiment(experiment, zoo, { preset: "smoke", cacheDir: `${dir}/cache-zoo`, quiet: true });
  assertEquals(r.entry.name, "zoo A (smoke recipe, seed 0)");
  assert(r.entry.architecture.startsWith("conv 2, conv 4, FC 8"), r.entry.architecture);
  assertEquals(r.entry.n_examples, 2);
  assert(r.entry.model_hash.startsWith("config:"), r.entry.model_hash);
});

Deno.test("a model path that cannot be read is named in the error", async () => {
  const bad: Config = { ...config, model: `${dir}/nothing/model.json` };
  await assertRejects(
    () => runExperiment(experiment, bad, { cacheDir: `${dir}/cache-bad`, quiet: true }),
    UserError,
    "nothing",
  );
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
