import { assert, assertEquals, assertSnapshot } from "./assert.ts";
import { presetConfig, redrawAll, runExperiment, tf, writeResults } from "../mod.ts";
import { experiment, figure, pairwiseGeometry, type Results, table } from "../experiments/figure1.ts";
import { findExperiment } from "../experiments/figures.ts";
import { cifarFixture, onFastBackend } from "./fixtures/cifar_data.ts";

await tf.setBackend("cpu");

/** A small results object with fixed numbers, for the spec and table snapshots. */
function fixture(): Results {
  const losses = (a: number, k: number) => Array.from({ length: 6 }, (_, i) => a + k * i);
  const geometry = {
    distance: { mean: 4, std: 0.1, min: 3.8, max: 4.2 },
    angle: { mean: 80, std: 2, min: 77, max: 83 },
  };
  return {
    experiment: "figure1",
    dataset: "mnist",
    preset: "smoke",
    config: presetConfig(experiment, "mnist", "smoke"),
    seed: 0,
    backend: { name: "cpu", detail: "" },
    versions: {},
    wall_seconds: 1,
    models: {
      natural: {
        train: {
          dataset: "mnist",
          model: { conv1: 2, conv2: 4, fc: 8 },
          method: "natural",
          eps: 0.3,
          attackSteps: 2,
          attackStepSize: 0.1,
          randomStart: true,
          optimizer: "adam",
          lr: 0.001,
          batch: 50,
          steps: 4,
          seed: 0,
        },
        hash: "h1",
        fromCache: false,
        trainSeconds: 1,
        accuracy: { n: 40, natural: 0.9, pgd: 0 },
      },
      adversarial: {
        train: {
          dataset: "mnist",
          model: { conv1: 2, conv2: 4, fc: 8 },
          method: "pgd",
          eps: 0.3,
          attackSteps: 2,
          attackStepSize: 0.1,
          randomStart: true,
          optimizer: "adam",
          lr: 0.001,
          batch: 50,
          steps: 4,
          seed: 0,
        },
        hash: "h2",
        fromCache: false,
        trainSeconds: 1,
        accuracy: { n: 40, natural: 0.8, pgd: 0.5 },
      },
    },
    randomBallDistance: 6.86,
    examples: [0, 1].map((i) => ({
      index: 10 + i,
      label: i,
      losses: { natural: losses(20, 1), adversarial: losses(0.05, 0.001) },
      randomGeometry: geometry,
      natural: { geometry, robustRestarts: 0 },
      adversarial: { geometry, robustRestarts: 6 },
    })),
  };
}

Deno.test("figure 1 spec snapshot", async () => {
  await assertSnapshot("figure1_spec.json", figure(fixture()));
});

Deno.test("figure 1 table states the paper's claims beside the numbers", () => {
  const md = table(fixture());
  for (
    const s of ["far lower", "well concentrated", "random points in the ℓ∞ ball", "close to 90°", "figure1_mnist.png"]
  ) {
    assert(md.includes(s), `table lacks "${s}"`);
  }
  assert(md.includes("| 90.0% |") || md.includes("90.0%"));
  // The paper's natural MNIST accuracy is 99.2% (Sec. 5); 98.8% is model A's natural accuracy after adversarial training.
  const natural = md.split("\n").find((l) => l.startsWith("| naturally trained"))!;
  assert(natural.includes("99.2% natural") && !natural.includes("98.8%"), natural);
});

Deno.test("pairwise geometry: orthogonal vectors meet at 90°, distances exact", () => {
  const g = pairwiseGeometry(new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]), 3, 3);
  assertEquals(g.angle.mean, 90);
  assert(Math.abs(g.distance.mean - Math.SQRT2) < 1e-12);
});

Deno.test("figure1 smoke preset end to end: results, figure files, redraw", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const config = presetConfig(experiment, "mnist", "smoke");
  const results = await runExperiment(experiment, config, { preset: "smoke", cacheDir, quiet: true });
  assertEquals(results.examples.length, config.examples);
  for (const e of results.examples) {
    assertEquals(e.losses.natural.length, config.restarts);
    assertEquals(e.losses.adversarial.length, config.restarts);
    assert(e.losses.natural.every(Number.isFinite));
  }
  for (const k of ["natural", "adversarial"] as const) {
    const a = results.models[k].accuracy;
    assert(a.natural >= 0 && a.natural <= 1 && a.pgd <= 1 && a.n === config.evalExamples);
  }
  assertEquals(results.backend.name, "cpu");
  assert(results.versions["tfjs-core"] === "4.22.0");
  const written = await writeResults(experiment, results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "figure1_mnist.results.json",
    "figure1_mnist.vl.json",
    "figure1_mnist.svg",
    "figure1_mnist.png",
    "figure1_mnist.md",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/figure1_mnist.results.json`));
  for (const key of ["config", "seed", "backend", "versions", "wall_seconds", "command", "examples"]) {
    assert(key in saved, key);
  }
  assertEquals(saved.experiment, "figure1");
  // A second run reuses both cached models.
  const again = await runExperiment(experiment, config, { preset: "smoke", cacheDir, quiet: true });
  assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
  assertEquals(again.models.adversarial.accuracy, results.models.adversarial.accuracy);
  // The figures task redraws from the results alone.
  const svg = await Deno.readTextFile(`${out}/figure1_mnist.svg`);
  await Deno.remove(`${out}/figure1_mnist.svg`);
  await redrawAll(out, findExperiment);
  assertEquals(await Deno.readTextFile(`${out}/figure1_mnist.svg`), svg);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("figure1 --dataset cifar10 smoke preset end to end on fixture data; cached, it reads no training data", () =>
  onFastBackend(async () => {
    const cacheDir = await Deno.makeTempDir();
    const out = await Deno.makeTempDir();
    const config = presetConfig(experiment, "cifar10", "smoke");
    const train = cifarFixture(64, 1), test = cifarFixture(16, 2);
    const results = await runExperiment(experiment, config, {
      preset: "smoke",
      cacheDir,
      quiet: true,
      data: { train, test },
    });
    assertEquals(results.dataset, "cifar10");
    assertEquals(results.models.adversarial.train.method, "fgsm");
    assertEquals(results.models.natural.train.augment, true);
    for (const e of results.examples) assert(e.losses.adversarial.every(Number.isFinite));
    // The random starts of the geometry baseline live in [0, 255] pixels: distances scale with ε = 8.
    assert(results.examples[0].randomGeometry.distance.mean > 100);
    const written = await writeResults(experiment, results, out);
    assert(written.some((p) => p.endsWith("figure1_cifar10.png")));
    assert((await Deno.readTextFile(`${out}/figure1_cifar10.md`)).includes("CIFAR-10"));
    // Both models cached: a second run must not touch the training split.
    const untouchable = new Proxy(train, {
      get: () => {
        throw new Error("the training data was read although both models are cached");
      },
    });
    const again = await runExperiment(experiment, config, {
      preset: "smoke",
      cacheDir,
      quiet: true,
      data: { train: untouchable, test },
    });
    assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
    await Deno.remove(cacheDir, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }));
