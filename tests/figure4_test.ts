import { assert, assertEquals, assertSnapshot, assertThrows } from "./assert.ts";
import {
  chooseDatasets,
  loadMnist,
  MODEL_PAIR,
  parseArgsFor,
  parseExperimentArgs,
  presetConfig,
  redrawAll,
  runExperiment,
  specFor,
  tf,
  type TrainConfig,
  UserError,
  writeResults,
} from "../mod.ts";
import {
  aroundDrops,
  blockMeans,
  experiment,
  figure,
  lrDrops,
  movingAverage,
  type Results,
  table,
} from "../experiments/figure4.ts";
import * as figure1 from "../experiments/figure1.ts";
import { findExperiment } from "../experiments/figures.ts";
import { configHash } from "../lib/core/hash.ts";
import { cifarFixture, onFastBackend } from "./fixtures/cifar_data.ts";
import { assertSameModels, trainConfigOf } from "./fixtures/same_models.ts";

await tf.setBackend("cpu");

const DEFAULTS = presetConfig(experiment, "mnist", "quick");
const SMOKE = presetConfig(experiment, "mnist", "smoke");
const CIFAR_SMOKE = presetConfig(experiment, "cifar10", "smoke");
const SPEC = specFor(experiment, "mnist");

/** A results object with a fixed, decreasing loss history of `steps` steps per model. */
function fixture(steps = { natural: 40, adversarial: 60 }, maxPoints = DEFAULTS.maxPoints): Results {
  const history = (n: number, top: number, floor: number) =>
    Array.from({ length: n }, (_, i) => floor + top * Math.exp(-i / (n / 4)) + ((i * 7919) % 13) / 200);
  const train = {
    dataset: "mnist",
    model: { conv1: 2, conv2: 4, fc: 8 },
    eps: 0.3,
    attackSteps: 2,
    attackStepSize: 0.1,
    randomStart: true,
    optimizer: "adam",
    lr: 0.001,
    batch: 50,
    trainExamples: 400,
    seed: 0,
  } as const;
  const model = (n: number, method: "natural" | "pgd", top: number, floor: number) => ({
    train: { ...train, method, steps: n },
    hash: method,
    fromCache: true,
    trainSeconds: 1,
    steps: n,
    every: 1,
    loss: history(n, top, floor),
    accuracy: history(n, 0, 0.5),
  });
  return {
    experiment: "figure4",
    dataset: "mnist",
    preset: "smoke",
    config: { ...SMOKE, smooth: 5, maxPoints },
    seed: 0,
    backend: { name: "cpu", detail: "" },
    versions: {},
    wall_seconds: 1,
    models: {
      natural: model(steps.natural, "natural", 2, 0.02),
      adversarial: model(steps.adversarial, "pgd", 2, 0.3),
    },
  };
}

/**
 * The CIFAR-10 counterpart: momentum SGD with the learning rate /10 at 50% and
 * /100 at 75% of the steps, the adversarial model on FGSM from a random start,
 * and a loss that falls at each decrease.
 */
function cifarFixtureResults(steps = { natural: 40, adversarial: 24 }): Results {
  const r = fixture(steps);
  const train = (n: number, method: "natural" | "fgsm"): TrainConfig => ({
    dataset: "cifar10",
    model: { filters: [16, 16, 32, 64], units: 5 },
    method,
    eps: 8,
    attackSteps: 1,
    attackStepSize: 10,
    randomStart: true,
    optimizer: "sgd",
    lr: 0.1,
    lrBoundaries: [Math.round(n / 2), Math.round(n * 3 / 4)],
    lrValues: [0.01, 0.001],
    weightDecay: 0.0002,
    augment: true,
    batch: 128,
    steps: n,
    trainExamples: 50000,
    seed: 0,
  });
  const history = (n: number, top: number) =>
    Array.from({ length: n }, (_, i) => top - 0.2 * (i >= n / 2 ? 1 : 0) - 0.1 * (i >= n * 3 / 4 ? 1 : 0) - i / n / 10);
  return {
    ...r,
    dataset: "cifar10",
    config: { ...CIFAR_SMOKE, smooth: 3, maxPoints: DEFAULTS.maxPoints },
    models: {
      natural: { ...r.models.natural, train: train(steps.natural, "natural"), loss: history(steps.natural, 1.6) },
      adversarial: {
        ...r.models.adversarial,
        train: train(steps.adversarial, "fgsm"),
        loss: history(steps.adversarial, 2.3),
      },
    },
  };
}

Deno.test("figure 4 spec snapshot", async () => {
  await assertSnapshot("figure4_spec.json", figure(fixture()));
});

Deno.test("figure 4 CIFAR-10 spec snapshot: FGSM examples named, learning-rate decreases drawn", async () => {
  const spec = figure(cifarFixtureResults());
  await assertSnapshot("figure4_cifar10_spec.json", spec);
  const rules = (spec as unknown as { layer: { data: { values: { step: number }[] } }[] }).layer[2].data.values;
  assertEquals(rules.map((r) => r.step), [20, 30, 12, 18]);
});

Deno.test("figure 4 CIFAR-10 table: the drops at the learning-rate decreases, CIFAR-10 wording", () => {
  const md = table(cifarFixtureResults());
  for (
    const s of [
      "# Figure 4 (CIFAR-10)",
      "figure4_cifar10.png",
      "decreases consistently",
      "correspond to decreases in the step size",
      "step 12 (lr 0.1 → 0.01): ",
      "FGSM step 10 from a random start (ε 8), momentum SGD, lr 0.1 → 0.01 → 0.001 at steps 12, 18",
      "FGSM examples",
      "pad-4 crop and flip",
    ]
  ) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
  for (const s of ["MNIST", "PGD examples", "ε 0.3"]) assert(!md.includes(s), `table has "${s}"`);
});

Deno.test("learning-rate decreases and the mean loss on either side of each", () => {
  const r = cifarFixtureResults();
  assertEquals(lrDrops(r.models.natural.train), [{ step: 20, from: 0.1, to: 0.01 }, {
    step: 30,
    from: 0.01,
    to: 0.001,
  }]);
  const d = aroundDrops(r.models.natural, 4);
  assertEquals(d.length, 2);
  assert(Math.abs(d[0].before - d[0].after - 0.2) < 0.02, JSON.stringify(d[0]));
  assertEquals(lrDrops({ ...r.models.natural.train, lrBoundaries: undefined }), []);
});

Deno.test("figure 4 table states the paper's claim beside the numbers", () => {
  const md = table(fixture());
  for (
    const s of ["decreases consistently", "saddle point problem", "decreasing in every quarter", "figure4_mnist.png"]
  ) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
});

Deno.test("figure 4 draws at most maxPoints raw points per model from a long history", () => {
  const spec = figure(fixture({ natural: 5000, adversarial: 9000 }, 100)) as unknown as {
    layer: { data: { values: { model: string; step: number }[] } }[];
  };
  const raw = spec.layer[0].data.values;
  assert(raw.length <= 200, `${raw.length} raw points`);
  assertEquals(Math.max(...raw.map((p) => p.step)), 9000);
  assert(spec.layer[1].data.values.length <= 1200);
});

Deno.test("block means and moving average", () => {
  assertEquals(blockMeans([1, 3, 5, 7, 9], 2), [2, 6, 9]);
  assertEquals(blockMeans([1, 2], 1), [1, 2]);
  assertEquals(movingAverage([2, 4, 6, 8], 3), [3, 4, 6, 7]);
  assertEquals(movingAverage([2, 4, 6, 8], 1), [2, 4, 6, 8]);
});

Deno.test("figure 4 reads Figure 1's models for every preset and dataset; --dataset cifar10 takes its presets", async () => {
  await assertSameModels(experiment, figure1.experiment, [MODEL_PAIR.adversarial, MODEL_PAIR.natural]);
  const cifar = (args: string[]) => parseArgsFor(experiment, ["--dataset", "cifar10", ...args]);
  const q = cifar([]);
  assert("config" in q && q.config.dataset === "cifar10" && q.config.trainEps === 8);
  assertEquals(q.config, presetConfig(experiment, "cifar10", "quick"));
  assertEquals(q.config.advSteps, presetConfig(figure1.experiment, "cifar10", "quick").advSteps);
  const viaSpec = parseExperimentArgs(["--dataset", "cifar10"], specFor(experiment, "cifar10"));
  assert("config" in viaSpec);
  assertEquals(viaSpec.config, q.config);
  // The training ε is the recipe's --train-eps, on CIFAR-10's [0, 255] scale; figure 4 has no attack of its own.
  assertThrows(() => cifar(["--train-eps", "0.03"]), UserError, "[0,1]-scale");
  assertThrows(() => cifar(["--eps", "8"]), UserError, "'--eps'");
  assertThrows(() => parseExperimentArgs(["--eps", "0.3"], SPEC), UserError, "'--eps'");
  assertThrows(() => parseExperimentArgs(["--dataset", "svhn"], SPEC), UserError, 'got "svhn"');
  assertThrows(() => parseArgsFor(experiment, ["--dataset", "svhn"]), UserError, 'got "svhn"');
  assertThrows(() => parseExperimentArgs(["--smooth", "0"], SPEC), UserError, "--smooth");
});

Deno.test("figure 4 CIFAR-10 quick preset reads the histories of Figure 1's committed CIFAR-10 models", async () => {
  const f1 = JSON.parse(await Deno.readTextFile(new URL("../figures/figure1_cifar10.results.json", import.meta.url)));
  assertEquals(f1.preset, "quick");
  for (const kind of ["natural", "adversarial"] as const) {
    const quick = presetConfig(experiment, "cifar10", "quick");
    assertEquals(await configHash(trainConfigOf(quick, kind)), f1.models[kind].hash, kind);
  }
});

Deno.test("figure4 smoke run after figure1's smoke run trains nothing; files and redraw", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const test = await loadMnist("test", { limit: 100 });
  const f1 = await runExperiment(figure1.experiment, presetConfig(figure1.experiment, "mnist", "smoke"), {
    preset: "smoke",
    cacheDir,
    quiet: true,
    data: { train, test },
  });
  const results = await runExperiment(experiment, SMOKE, { preset: "smoke", cacheDir, quiet: true, data: { train } });
  for (const kind of ["natural", "adversarial"] as const) {
    const m = results.models[kind];
    assert(m.fromCache, `${kind} was trained again`);
    assertEquals(m.hash, f1.models[kind].hash);
    assertEquals(m.steps, kind === "natural" ? SMOKE.naturalSteps : SMOKE.advSteps);
    assertEquals(m.every, 1);
    assertEquals(m.loss.length, m.steps);
    assert(m.loss.every((v) => Number.isFinite(v) && v > 0));
  }
  const written = await writeResults(experiment, results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "figure4_mnist.results.json",
    "figure4_mnist.vl.json",
    "figure4_mnist.svg",
    "figure4_mnist.png",
    "figure4_mnist.md",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/figure4_mnist.results.json`));
  for (
    const key of ["experiment", "dataset", "preset", "config", "seed", "backend", "versions", "wall_seconds", "models"]
  ) {
    assert(key in saved, key);
  }
  assert((await Deno.readTextFile(`${out}/figure4_mnist.md`)).includes("from the cache"));
  const svg = await Deno.readTextFile(`${out}/figure4_mnist.svg`);
  await Deno.remove(`${out}/figure4_mnist.svg`);
  await redrawAll(out, findExperiment);
  assertEquals(await Deno.readTextFile(`${out}/figure4_mnist.svg`), svg);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("figure4 with an empty cache trains as Figure 1 would, then reads the same history back", async () => {
  const cacheDir = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const first = await runExperiment(experiment, SMOKE, { preset: "smoke", cacheDir, quiet: true, data: { train } });
  assert(!first.models.natural.fromCache && !first.models.adversarial.fromCache);
  const again = await runExperiment(experiment, SMOKE, { preset: "smoke", cacheDir, quiet: true, data: { train } });
  assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
  assertEquals(again.models.adversarial.loss, first.models.adversarial.loss);
  assertEquals(again.models.natural.loss, first.models.natural.loss);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("figure4 --dataset cifar10 smoke after figure1's: histories from the cache, no data read, files", () =>
  onFastBackend(async () => {
    const cacheDir = await Deno.makeTempDir();
    const out = await Deno.makeTempDir();
    const f1 = await runExperiment(figure1.experiment, presetConfig(figure1.experiment, "cifar10", "smoke"), {
      preset: "smoke",
      cacheDir,
      quiet: true,
      data: { train: cifarFixture(64, 1), test: cifarFixture(16, 2) },
    });
    const before = await chooseDatasets(experiment, ["--preset", "smoke", "--cache-dir", cacheDir]);
    assertEquals(before.datasets, ["mnist", "cifar10"]);
    // No training data is given and the data folder does not exist: cached models need none.
    const results = await runExperiment(experiment, CIFAR_SMOKE, {
      preset: "smoke",
      cacheDir,
      quiet: true,
      dataDir: `${cacheDir}/no-such-folder`,
    });
    assertEquals(results.dataset, "cifar10");
    for (const kind of ["natural", "adversarial"] as const) {
      const m = results.models[kind];
      assert(m.fromCache, `${kind} was trained again`);
      assertEquals(m.hash, f1.models[kind].hash);
      assertEquals(m.steps, kind === "natural" ? CIFAR_SMOKE.naturalSteps : CIFAR_SMOKE.advSteps);
      assertEquals(m.loss.length, m.steps);
      assert(m.loss.every((v) => Number.isFinite(v) && v > 0));
    }
    assertEquals(results.models.adversarial.train.method, "fgsm");
    const written = await writeResults(experiment, results, out);
    assertEquals(written.map((p) => p.split("/").pop()), [
      "figure4_cifar10.results.json",
      "figure4_cifar10.vl.json",
      "figure4_cifar10.svg",
      "figure4_cifar10.png",
      "figure4_cifar10.md",
    ]);
    const md = await Deno.readTextFile(`${out}/figure4_cifar10.md`);
    assert(md.includes("Figure 4 (CIFAR-10)") && md.includes("from the cache"), md);
    const svg = await Deno.readTextFile(`${out}/figure4_cifar10.svg`);
    await Deno.remove(`${out}/figure4_cifar10.svg`);
    await redrawAll(out, findExperiment);
    assertEquals(await Deno.readTextFile(`${out}/figure4_cifar10.svg`), svg);
    await Deno.remove(cacheDir, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }));
