import { assert, assertEquals, assertSnapshot, assertThrows } from "./assert.ts";
import { loadMnist, parseExperimentArgs, tf, UserError } from "../mod.ts";
import {
  blockMeans,
  DEFAULTS,
  figure,
  movingAverage,
  PRESETS,
  type Results,
  run,
  SPEC,
  table,
  trainConfigOf,
  write,
} from "../experiments/figure4.ts";
import * as figure1 from "../experiments/figure1.ts";
import { redrawAll } from "../experiments/figures.ts";

await tf.setBackend("cpu");

const SMOKE = { ...DEFAULTS, ...PRESETS.smoke };

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

Deno.test("figure 4 spec snapshot", async () => {
  await assertSnapshot("figure4_spec.json", figure(fixture()));
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

Deno.test("figure 4 reads Figure 1's models for every preset; cifar10 is refused as not built yet", () => {
  for (const preset of ["quick", "paper", "smoke"]) {
    const c4 = { ...DEFAULTS, ...(preset === "quick" ? {} : PRESETS[preset]) };
    const c1 = { ...figure1.DEFAULTS, ...(preset === "quick" ? {} : figure1.PRESETS[preset]) };
    for (const kind of ["natural", "adversarial"] as const) {
      assertEquals(trainConfigOf(c4, kind), figure1.trainConfig(c1, kind), `${preset} ${kind}`);
    }
  }
  assertThrows(() => parseExperimentArgs(["--dataset", "cifar10"], SPEC), UserError, "not available yet");
  assertThrows(() => parseExperimentArgs(["--smooth", "0"], SPEC), UserError, "--smooth");
});

Deno.test("figure4 smoke run after figure1's smoke run trains nothing; files and redraw", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const test = await loadMnist("test", { limit: 100 });
  const f1 = await figure1.run({ ...figure1.DEFAULTS, ...figure1.PRESETS.smoke }, {
    preset: "smoke",
    cacheDir,
    quiet: true,
    train,
    test,
  });
  const results = await run(SMOKE, { preset: "smoke", cacheDir, quiet: true, train });
  for (const kind of ["natural", "adversarial"] as const) {
    const m = results.models[kind];
    assert(m.fromCache, `${kind} was trained again`);
    assertEquals(m.hash, f1.models[kind].hash);
    assertEquals(m.steps, kind === "natural" ? SMOKE.naturalSteps : SMOKE.advSteps);
    assertEquals(m.every, 1);
    assertEquals(m.loss.length, m.steps);
    assert(m.loss.every((v) => Number.isFinite(v) && v > 0));
  }
  const written = await write(results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "figure4_mnist.results.json",
    "figure4_mnist.vl.json",
    "figure4_mnist.svg",
    "figure4_mnist.png",
    "figure4_mnist.md",
  ]);
  const saved = JSON.parse(await Deno.readTextFile(`${out}/figure4_mnist.results.json`));
  for (const key of ["config", "seed", "backend", "versions", "wall_seconds", "models"]) assert(key in saved, key);
  assert((await Deno.readTextFile(`${out}/figure4_mnist.md`)).includes("from the cache"));
  const svg = await Deno.readTextFile(`${out}/figure4_mnist.svg`);
  await Deno.remove(`${out}/figure4_mnist.svg`);
  await redrawAll(out);
  assertEquals(await Deno.readTextFile(`${out}/figure4_mnist.svg`), svg);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("figure4 with an empty cache trains as Figure 1 would, then reads the same history back", async () => {
  const cacheDir = await Deno.makeTempDir();
  const train = await loadMnist("train", { limit: SMOKE.trainExamples });
  const first = await run(SMOKE, { preset: "smoke", cacheDir, quiet: true, train });
  assert(!first.models.natural.fromCache && !first.models.adversarial.fromCache);
  const again = await run(SMOKE, { preset: "smoke", cacheDir, quiet: true, train });
  assert(again.models.natural.fromCache && again.models.adversarial.fromCache);
  assertEquals(again.models.adversarial.loss, first.models.adversarial.loss);
  assertEquals(again.models.natural.loss, first.models.natural.loss);
  await Deno.remove(cacheDir, { recursive: true });
});
