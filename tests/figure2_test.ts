import { assert, assertEquals, assertSnapshot, assertThrows } from "./assert.ts";
import {
  chooseDatasets,
  gather,
  loadMnist,
  MODEL_PAIR,
  modelDir,
  parseArgsFor,
  parseExperimentArgs,
  pgd,
  presetConfig,
  redrawAll,
  runExperiment,
  specFor,
  tf,
  type TrainConfig,
  trainModel,
  UserError,
  writeResults,
} from "../mod.ts";
import { experiment, figure, iterationsToFraction, type Results, table } from "../experiments/figure2.ts";
import * as figure1 from "../experiments/figure1.ts";
import { findExperiment } from "../experiments/figures.ts";
import { configHash } from "../lib/core/hash.ts";
import { cifarFixture, onFastBackend } from "./fixtures/cifar_data.ts";
import { assertSameModels, trainConfigOf } from "./fixtures/same_models.ts";

await tf.setBackend("cpu");

const SMOKE = presetConfig(experiment, "mnist", "smoke");
const CIFAR_SMOKE = presetConfig(experiment, "cifar10", "smoke");
const SPEC = specFor(experiment, "mnist");

/** A small results object with fixed numbers, for the spec and table snapshots. */
function fixture(): Results {
  const curve = (top: number, r: number) => Array.from({ length: 6 }, (_, t) => top * (1 - Math.exp(-t)) + 0.01 * r);
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
    steps: 4,
    trainExamples: 400,
    seed: 0,
  } as const;
  const model = (top: number, method: "natural" | "pgd", correct: number) => ({
    train: { ...train, method },
    hash: method,
    fromCache: true,
    trainSeconds: 1,
    cleanPrediction: 7,
    cleanLoss: 0.01,
    correctRestarts: correct,
    curves: [0, 1, 2].map((r) => curve(top, r)),
  });
  return {
    experiment: "figure2",
    dataset: "mnist",
    preset: "smoke",
    config: { ...SMOKE, steps: 5, restarts: 3 },
    seed: 0,
    attackSeed: 2,
    backend: { name: "cpu", detail: "" },
    versions: {},
    wall_seconds: 1,
    example: { index: 1234, label: 7 },
    models: { natural: model(20, "natural", 0), adversarial: model(0.2, "pgd", 3) },
  };
}

/** The CIFAR-10 counterpart: Figure 1's FGSM-trained ResNet, ε 8, 20 steps of 2 (pixels in [0, 255]). */
function cifarFixtureResults(): Results {
  const r = fixture();
  const train: Omit<TrainConfig, "method"> = {
    dataset: "cifar10",
    model: { filters: [16, 16, 32, 64], units: 1 },
    eps: 8,
    attackSteps: 1,
    attackStepSize: 10,
    randomStart: true,
    optimizer: "sgd",
    lr: 0.1,
    lrBoundaries: [1, 2],
    lrValues: [0.01, 0.001],
    weightDecay: 0.0002,
    augment: true,
    batch: 8,
    steps: 2,
    trainExamples: 64,
    seed: 0,
  };
  return {
    ...r,
    dataset: "cifar10",
    config: { ...CIFAR_SMOKE, steps: 5, restarts: 3 },
    example: { index: 42, label: 3 },
    models: {
      natural: { ...r.models.natural, train: { ...train, method: "natural" }, cleanPrediction: 3 },
      adversarial: { ...r.models.adversarial, train: { ...train, method: "fgsm" }, cleanPrediction: 3 },
    },
  };
}

Deno.test("figure 2 spec snapshot", async () => {
  await assertSnapshot("figure2_spec.json", figure(fixture()));
});

Deno.test("figure 2 CIFAR-10 spec snapshot", async () => {
  await assertSnapshot("figure2_cifar10_spec.json", figure(cifarFixtureResults()));
});

Deno.test("figure 2 CIFAR-10 table: CIFAR-10 numbers and names beside the paper's observations", () => {
  const md = table(cifarFixtureResults());
  for (
    const s of [
      "# Figure 2 (CIFAR-10)",
      "figure2_cifar10.png",
      "ε = 8, PGD 5 steps of 2",
      "(label 3, cat)",
      "| 3 (cat), loss 0.010",
      "plateaus",
      "fairly concentrated",
      "significantly smaller",
      "FGSM step 10 from a random start",
      "momentum SGD",
      "a few iterations",
    ]
  ) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
  for (const s of ["MNIST", "ε = 0.3", "tens of iterations"]) assert(!md.includes(s), `table has "${s}"`);
});

Deno.test("figure 2 table states the paper's observations beside the numbers", () => {
  const md = table(fixture());
  for (const s of ["plateaus", "fairly concentrated", "significantly smaller", "figure2_mnist.png", "× lower"]) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
  assert(md.includes("loaded from its cache, not retrained"));
});

Deno.test("iterations to 90% of the rise: first iterate past the mark, 0 when the loss fell", () => {
  assertEquals(iterationsToFraction([0, 5, 8, 9.5, 10]), 3);
  assertEquals(iterationsToFraction([0, 9, 10]), 1);
  assertEquals(iterationsToFraction([3, 2, 1]), 0);
});

Deno.test("figure 2 trains nothing of its own: its models are Figure 1's for every preset and dataset", async () => {
  await assertSameModels(experiment, figure1.experiment, [MODEL_PAIR.adversarial, MODEL_PAIR.natural]);
});

Deno.test("figure 2 CIFAR-10 quick preset reads the models of Figure 1's committed CIFAR-10 run", async () => {
  const f1 = JSON.parse(await Deno.readTextFile(new URL("../figures/figure1_cifar10.results.json", import.meta.url)));
  assertEquals(f1.preset, "quick");
  for (const kind of ["natural", "adversarial"] as const) {
    const quick = presetConfig(experiment, "cifar10", "quick");
    assertEquals(await configHash(trainConfigOf(quick, kind)), f1.models[kind].hash, kind);
  }
});

Deno.test("figure 2 command line: --dataset cifar10 takes CIFAR-10's defaults and presets; bad values are named", () => {
  const cifar = (args: string[]) => parseArgsFor(experiment, ["--dataset", "cifar10", ...args]);
  const q = cifar([]);
  assert("config" in q);
  assertEquals([q.config.dataset, q.config.eps, q.config.steps, q.config.stepSize, q.config.restarts], [
    "cifar10",
    8,
    20,
    2,
    20,
  ]);
  assertEquals(q.config, presetConfig(experiment, "cifar10", "quick"));
  const smoke = cifar(["--preset", "smoke"]);
  assert("config" in smoke && smoke.config.units === 1 && smoke.config.steps === 2);
  assertThrows(() => cifar(["--eps", "0.03"]), UserError, "[0,1]-scale");
  assertThrows(() => cifar(["--resnet", "huge"]), UserError, "--resnet");
  // The same through the CIFAR-10 spec itself, and --dataset=cifar10 picks CIFAR-10's defaults.
  const viaSpec = parseExperimentArgs(["--dataset", "cifar10"], specFor(experiment, "cifar10"));
  assert("config" in viaSpec);
  assertEquals(viaSpec.config, q.config);
  assertEquals(specFor(experiment, "cifar10").defaults, presetConfig(experiment, "cifar10", "quick"));
  const eq = parseArgsFor(experiment, ["--dataset=cifar10"]);
  assert("config" in eq);
  assertEquals(eq.config, presetConfig(experiment, "cifar10", "quick"));
  assertThrows(() => parseArgsFor(experiment, ["--dataset", "svhn"]), UserError, 'got "svhn"');
  assertThrows(() => parseExperimentArgs(["--dataset", "svhn"], SPEC), UserError, 'got "svhn"');
  assertThrows(() => parseExperimentArgs(["--eps", "8"], SPEC), UserError, "MNIST pixels");
  assertThrows(() => parseExperimentArgs(["--example", "10000"], SPEC), UserError, "--example");
  const ok = parseExperimentArgs(["--dataset", "mnist", "--preset", "smoke"], SPEC);
  assert("config" in ok && ok.config.dataset === "mnist" && ok.config.steps === SMOKE.steps);
});

Deno.test("figure 2 without --dataset: MNIST only, and why, when Figure 1's CIFAR-10 models are not cached", async () => {
  const cacheDir = await Deno.makeTempDir();
  const empty = await chooseDatasets(experiment, ["--preset", "smoke", "--cache-dir", cacheDir]);
  assertEquals(empty.datasets, ["mnist"]);
  assert(empty.why.includes("not trained in the cache") && empty.why.includes("deno task figure1 --dataset cifar10"));
  for (const kind of ["natural", "adversarial"] as const) {
    assert(empty.why.includes(await modelDir(trainConfigOf(CIFAR_SMOKE, kind), cacheDir)), empty.why);
  }
  assertEquals((await chooseDatasets(experiment, ["--dataset", "cifar10"])).datasets, ["cifar10"]);
  assertEquals((await chooseDatasets(experiment, ["--dataset=mnist"])).datasets, ["mnist"]);
  const badEps = await chooseDatasets(experiment, ["--eps", "0.1", "--cache-dir", cacheDir]);
  assertEquals(badEps.datasets, ["mnist"]);
  assert(badEps.why.includes("do not fit cifar10"), badEps.why);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("figure2 smoke preset end to end: curves, figure files, cache reuse, redraw, equal to plain PGD", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const test = await loadMnist("test");
  const results = await runExperiment(experiment, SMOKE, {
    preset: "smoke",
    cacheDir,
    quiet: true,
    data: { train, test },
  });
  for (const kind of ["natural", "adversarial"] as const) {
    const m = results.models[kind];
    assertEquals(m.curves.length, SMOKE.restarts);
    for (const c of m.curves) {
      assertEquals(c.length, SMOKE.steps + 1);
      assert(c.every((v) => Number.isFinite(v) && v >= 0));
    }
    // Restarts start at different random points.
    assert(new Set(m.curves.map((c) => c[0])).size > 1, `${kind}: all restarts start with the same loss`);
  }
  assertEquals(results.backend.name, "cpu");
  assertEquals(results.example.label, test.labels[results.example.index]);
  const written = await writeResults(experiment, results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "figure2_mnist.results.json",
    "figure2_mnist.vl.json",
    "figure2_mnist.svg",
    "figure2_mnist.png",
    "figure2_mnist.md",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/figure2_mnist.results.json`));
  for (
    const key of [
      "experiment",
      "dataset",
      "preset",
      "config",
      "seed",
      "backend",
      "versions",
      "wall_seconds",
      "models",
      "example",
    ]
  ) {
    assert(key in saved);
  }

  // A second run reuses both cached models, holds no tensors afterwards and gives the same curves.
  const before = tf.memory().numTensors;
  const again = await runExperiment(experiment, SMOKE, {
    preset: "smoke",
    cacheDir,
    quiet: true,
    data: { train, test },
  });
  assertEquals(tf.memory().numTensors, before);
  assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
  assertEquals(again.models.adversarial.curves, results.models.adversarial.curves);

  // The last recorded loss of each restart is the final loss of a plain PGD run with the same seed.
  for (const kind of ["natural", "adversarial"] as const) {
    const t = await trainModel(trainConfigOf(SMOKE, kind), { data: train, cacheDir, quiet: true });
    assert(t.fromCache);
    const { x, y } = gather(test, Array(SMOKE.restarts).fill(results.example.index));
    const plain = await pgd(t.model, x, y, {
      eps: SMOKE.eps,
      steps: SMOKE.steps,
      stepSize: SMOKE.stepSize,
      range: [0, 1],
      restarts: 1,
      seed: results.attackSeed,
    });
    assertEquals(results.models[kind].curves.map((c) => c[SMOKE.steps]), Array.from(plain.finalLosses[0]), kind);
    tf.dispose([plain.adv, x, y]);
    t.model.dispose();
  }

  // The figures task redraws from the results alone.
  const svg = await Deno.readTextFile(`${out}/figure2_mnist.svg`);
  await Deno.remove(`${out}/figure2_mnist.svg`);
  await redrawAll(out, findExperiment);
  assertEquals(await Deno.readTextFile(`${out}/figure2_mnist.svg`), svg);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("figure2 --dataset cifar10 smoke preset end to end on fixture data: curves, files, cache, plain PGD", () =>
  onFastBackend(async () => {
    const cacheDir = await Deno.makeTempDir();
    const out = await Deno.makeTempDir();
    const train = cifarFixture(64, 1), test = cifarFixture(16, 2);
    const results = await runExperiment(experiment, CIFAR_SMOKE, {
      preset: "smoke",
      cacheDir,
      quiet: true,
      data: { train, test },
    });
    assertEquals(results.dataset, "cifar10");
    assertEquals(results.models.adversarial.train.method, "fgsm");
    assertEquals(results.models.adversarial.train.eps, 8);
    for (const kind of ["natural", "adversarial"] as const) {
      const m = results.models[kind];
      assertEquals(m.curves.length, CIFAR_SMOKE.restarts);
      for (const c of m.curves) {
        assertEquals(c.length, CIFAR_SMOKE.steps + 1);
        assert(c.every((v) => Number.isFinite(v) && v >= 0));
      }
      assert(new Set(m.curves.map((c) => c[0])).size > 1, `${kind}: all restarts start with the same loss`);
    }
    assertEquals(results.example.label, test.labels[results.example.index]);
    const written = await writeResults(experiment, results, out);
    assertEquals(written.map((p) => p.split("/").pop()), [
      "figure2_cifar10.results.json",
      "figure2_cifar10.vl.json",
      "figure2_cifar10.svg",
      "figure2_cifar10.png",
      "figure2_cifar10.md",
    ]);
    const md = await Deno.readTextFile(`${out}/figure2_cifar10.md`);
    assert(md.includes("Figure 2 (CIFAR-10)") && md.includes("ε = 8"), md);

    // With the models cached, a run without --dataset would take CIFAR-10 too, and says so.
    const both = await chooseDatasets(experiment, ["--preset", "smoke", "--cache-dir", cacheDir]);
    assertEquals(both.datasets, ["mnist", "cifar10"]);
    assert(both.why.includes("are cached"), both.why);
    const retrain = await chooseDatasets(experiment, ["--preset", "smoke", "--cache-dir", cacheDir, "--retrain"]);
    assertEquals(retrain.datasets, ["mnist"]);

    // A second run reuses both cached models (no training data at all), holds no tensors and gives the same curves.
    const before = tf.memory().numTensors;
    const again = await runExperiment(experiment, CIFAR_SMOKE, {
      preset: "smoke",
      cacheDir,
      quiet: true,
      data: { test },
    });
    assertEquals(tf.memory().numTensors, before);
    assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
    assertEquals(again.models.adversarial.curves, results.models.adversarial.curves);

    // The last recorded loss of each restart is the final loss of a plain PGD run with the same seed, in [0, 255].
    for (const kind of ["natural", "adversarial"] as const) {
      const t = await trainModel(trainConfigOf(CIFAR_SMOKE, kind), { data: train, cacheDir, quiet: true });
      assert(t.fromCache);
      const { x, y } = gather(test, Array(CIFAR_SMOKE.restarts).fill(results.example.index));
      const plain = await pgd(t.model, x, y, {
        eps: CIFAR_SMOKE.eps,
        steps: CIFAR_SMOKE.steps,
        stepSize: CIFAR_SMOKE.stepSize,
        range: [0, 255],
        restarts: 1,
        seed: results.attackSeed,
      });
      assertEquals(
        results.models[kind].curves.map((c) => c[CIFAR_SMOKE.steps]),
        Array.from(plain.finalLosses[0]),
        kind,
      );
      tf.dispose([plain.adv, x, y]);
      t.model.dispose();
    }

    // The figures task redraws from the results alone.
    const svg = await Deno.readTextFile(`${out}/figure2_cifar10.svg`);
    await Deno.remove(`${out}/figure2_cifar10.svg`);
    await redrawAll(out, findExperiment);
    assertEquals(await Deno.readTextFile(`${out}/figure2_cifar10.svg`), svg);
    await Deno.remove(cacheDir, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }));
