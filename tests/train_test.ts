import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  Adam,
  capacityShape,
  isTrained,
  loadCheckpoint,
  loadMnist,
  loadModel,
  mnistNet,
  saveModel,
  slice,
  tf,
  tfl,
  type TrainConfig,
  trainModel,
  trainStep,
  UserError,
} from "../mod.ts";
import { writeFileAtomic } from "../lib/train/checkpoint.ts";
import { KILL_CONFIG } from "./fixtures/kill_config.ts";
import { learningRate, trainableVariables, validateTrainConfig } from "../lib/train/train.ts";
import { Rng } from "../lib/core/rng.ts";

await tf.setBackend("cpu");
const data = await loadMnist("train", { limit: 300 });

/** The kill -9 test's config, shorter and with another seed. */
const CONFIG: TrainConfig = { ...KILL_CONFIG, steps: 6, seed: 4 };

async function weights(m: tfl.LayersModel): Promise<Float32Array[]> {
  return await Promise.all(m.getWeights().map((w) => w.data() as Promise<Float32Array>));
}

Deno.test("checkpoint round trip in the TF.js layers format", async () => {
  const dir = await Deno.makeTempDir();
  const m = mnistNet(capacityShape(1), 9);
  await saveModel(m, dir);
  const json = JSON.parse(await Deno.readTextFile(`${dir}/model.json`));
  assertEquals(json.format, "layers-model");
  assertEquals(json.weightsManifest[0].paths, ["weights.bin"]);
  const back = await loadModel(dir);
  assertEquals(await weights(back), await weights(m));
  // tf.loadLayersModel reads it too (the standard format).
  const handler = tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: (await Deno.readFile(`${dir}/weights.bin`)).buffer,
  });
  const std = await tfl.loadLayersModel(handler);
  assertEquals(await weights(std), await weights(m));
  tf.dispose([m, back, std] as unknown as tf.Tensor[]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("atomic write leaves the old file whole and no temporary behind", async () => {
  const dir = await Deno.makeTempDir();
  await writeFileAtomic(`${dir}/f`, "old");
  await writeFileAtomic(`${dir}/f`, "new");
  assertEquals(await Deno.readTextFile(`${dir}/f`), "new");
  assertEquals(Array.from(Deno.readDirSync(dir), (e) => e.name), ["f"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a truncated checkpoint is a clear error, left in place", async () => {
  const dir = await Deno.makeTempDir();
  const m = mnistNet(capacityShape(1));
  await saveModel(m, dir);
  const w = await Deno.readFile(`${dir}/weights.bin`);
  await Deno.writeFile(`${dir}/weights.bin`, w.subarray(0, 100));
  await assertRejects(() => loadModel(dir), UserError, "weights.bin has 100 bytes");
  assert((await Deno.stat(`${dir}/weights.bin`)).size === 100);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a training step leaks no tensors and lowers the loss on its batch", () => {
  const m = mnistNet(capacityShape(2), 1);
  const opt = new Adam(trainableVariables(m), 1e-3);
  const { x, y } = slice(data, 0, 20);
  const rng = new Rng(0);
  trainStep(m, opt, CONFIG, x, y, rng); // creates the optimiser's slots
  const before = tf.memory().numTensors;
  for (const method of ["natural", "fgsm", "pgd"] as const) trainStep(m, opt, { ...CONFIG, method }, x, y, rng);
  assertEquals(tf.memory().numTensors, before);
  const first = trainStep(m, opt, { ...CONFIG, method: "natural" }, x, y, rng).loss;
  for (let i = 0; i < 5; i++) trainStep(m, opt, { ...CONFIG, method: "natural" }, x, y, rng);
  assert(trainStep(m, opt, { ...CONFIG, method: "natural" }, x, y, rng).loss < first);
  tf.dispose([x, y]);
  opt.dispose();
  m.dispose();
});

Deno.test("resume after an interruption gives the same model as an uninterrupted run", async () => {
  const cacheDir = await Deno.makeTempDir();
  const opts = { data, quiet: true, checkpointEvery: 3 };
  const whole = await trainModel(CONFIG, { ...opts, cacheDir: `${cacheDir}/a` });
  assertEquals(whole.step, 6);
  const part = await trainModel(CONFIG, { ...opts, cacheDir: `${cacheDir}/b`, stopAfter: 3 });
  assertEquals(part.step, 3);
  const resumed = await trainModel(CONFIG, { ...opts, cacheDir: `${cacheDir}/b` });
  assertEquals(resumed.fromCache, false);
  assertEquals(resumed.history.loss, whole.history.loss);
  assertEquals(await weights(resumed.model), await weights(whole.model));
  // A third call reuses the finished model without training.
  const cached = await trainModel(CONFIG, { ...opts, cacheDir: `${cacheDir}/b` });
  assertEquals(cached.fromCache, true);
  assertEquals(await weights(cached.model), await weights(whole.model));
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("isTrained: true only for a finished model of that config; a cached model needs no data", async () => {
  const cacheDir = await Deno.makeTempDir();
  const opts = { data, quiet: true, cacheDir };
  assertEquals(await isTrained(CONFIG, cacheDir), false);
  await trainModel(CONFIG, { ...opts, stopAfter: 2 });
  assertEquals(await isTrained(CONFIG, cacheDir), false, "a partial run is not trained");
  await trainModel(CONFIG, opts);
  assertEquals(await isTrained(CONFIG, cacheDir), true);
  assertEquals(await isTrained({ ...CONFIG, seed: CONFIG.seed + 1 }, cacheDir), false);
  let loads = 0;
  const cached = await trainModel(CONFIG, { ...opts, data: () => (loads++, Promise.resolve(data)) });
  assert(cached.fromCache);
  assertEquals(loads, 0);
  cached.model.dispose();
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("a corrupt or mismatched checkpoint says how to retrain and is not deleted", async () => {
  const cacheDir = await Deno.makeTempDir();
  const t = await trainModel({ ...CONFIG, steps: 2 }, { data, quiet: true, cacheDir });
  const latest = (await Deno.readTextFile(`${t.dir}/latest`)).trim();
  await assertRejects(() => loadCheckpoint(t.dir, "other"), UserError, "--retrain");
  await Deno.writeTextFile(`${t.dir}/${latest}/state.json`, "{not json");
  await assertRejects(
    () => trainModel({ ...CONFIG, steps: 2 }, { data, quiet: true, cacheDir }),
    UserError,
    "--retrain",
  );
  assertEquals(await Deno.readTextFile(`${t.dir}/${latest}/state.json`), "{not json");
  // --retrain trains again.
  const again = await trainModel({ ...CONFIG, steps: 2 }, { data, quiet: true, cacheDir, retrain: true });
  assertEquals(again.fromCache, false);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("kill -9 during training, then resume: same model as an uninterrupted run", async () => {
  const cacheDir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      `--allow-write=${cacheDir}`,
      "tests/fixtures/train_child.ts",
      cacheDir,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Wait until a few checkpoints exist, then kill the trainer without warning.
  const started = performance.now();
  let step = 0;
  while (step < 3 && performance.now() - started < 120_000) {
    await new Promise((r) => setTimeout(r, 50));
    for (const e of Deno.readDirSync(cacheDir).flatMap((m) => m.isDirectory ? [m] : [])) {
      for (const d of Deno.readDirSync(`${cacheDir}/${e.name}`)) {
        const dir = `${cacheDir}/${e.name}/${d.name}`;
        try {
          step = Number((await Deno.readTextFile(`${dir}/latest`)).trim().slice(5));
        } catch { /* not yet */ }
      }
    }
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert(step >= 3, "the child wrote checkpoints");
  assert(!status.success, "the child was killed before finishing");
  const resumed = await trainModel(KILL_CONFIG, { data, cacheDir, quiet: true });
  assertEquals(resumed.fromCache, false);
  assertEquals(resumed.step, KILL_CONFIG.steps);
  const whole = await trainModel(KILL_CONFIG, { data, cacheDir: `${cacheDir}/whole`, quiet: true });
  assertEquals(resumed.history.loss, whole.history.loss);
  assertEquals(await weights(resumed.model), await weights(whole.model));
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("learning-rate schedules: steps drop at their boundaries, points interpolate linearly", () => {
  const steps: TrainConfig = { ...CONFIG, lr: 0.1, lrBoundaries: [10, 15], lrValues: [0.01, 0.001], steps: 20 };
  assertEquals([0, 9, 10, 14, 15, 19].map((s) => learningRate(steps, s)), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]);
  const cycle: TrainConfig = { ...CONFIG, lr: 0.2, lrPoints: [[0, 0], [40, 0.2], [100, 0]], steps: 100 };
  const at = (s: number) => learningRate(cycle, s);
  for (const [s, want] of [[0, 0], [10, 0.05], [40, 0.2], [70, 0.1], [100, 0], [120, 0]]) {
    assert(Math.abs(at(s) - want) < 1e-12, `step ${s}: ${at(s)}, expected ${want}`);
  }
  for (const bad of [[[0, 0], [0, 0.1]], [[5, 0.1], [2, 0]], [[0, -1]], []] as [number, number][][]) {
    assertThrows(() => validateTrainConfig({ ...cycle, lrPoints: bad }), UserError, "lrPoints");
  }
  validateTrainConfig(cycle);
});
