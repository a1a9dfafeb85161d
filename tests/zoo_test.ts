/**
 * The model zoo: the quick presets' models keep the configs (so the hashes and
 * cache entries) of the committed runs; each named model is what its name says;
 * the training flags reach the config (the MNIST training adversary is no
 * longer fixed to PGD with a random start); model B has Tramèr et al.'s shapes.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  capacityConfig,
  logits,
  MODEL_NAMES,
  MODEL_PAIR,
  modelB,
  type ModelName,
  parseArgsFor,
  presetConfig,
  recipeOf,
  RECIPES,
  tf,
  UserError,
  zooConfig,
} from "../mod.ts";
import { configHash } from "../lib/core/hash.ts";
import { experiment as figure1 } from "../experiments/figure1.ts";

await tf.setBackend("cpu");

Deno.test("the quick presets' A_nat and A hash as the committed Figure 1 models (nothing committed is retrained)", async () => {
  for (const dataset of ["mnist", "cifar10"] as const) {
    const committed = JSON.parse(await Deno.readTextFile(`figures/figure1_${dataset}.results.json`));
    for (const [kind, name] of Object.entries(MODEL_PAIR) as [keyof typeof MODEL_PAIR, ModelName][]) {
      const t = zooConfig(name, dataset, RECIPES[dataset].quick);
      assertEquals(t, committed.models[kind].train, `${dataset} ${name}`);
      assertEquals(await configHash(t), committed.models[kind].hash, `${dataset} ${name}`);
    }
  }
});

Deno.test("the MNIST quick recipe ramps the training ε over 100 steps; the paper's and CIFAR-10's do not", () => {
  assertEquals(zooConfig("A", "mnist", RECIPES.mnist.quick).epsRamp, 100);
  assertEquals(zooConfig("A_prime", "mnist", RECIPES.mnist.quick).epsRamp, 100);
  assertEquals(zooConfig("A_nat", "mnist", RECIPES.mnist.quick).epsRamp, undefined);
  assertEquals(zooConfig("A", "mnist", RECIPES.mnist.paper).epsRamp, undefined);
  assertEquals(zooConfig("A", "cifar10", RECIPES.cifar10.quick).epsRamp, undefined);
  assertThrows(() => parseArgsFor(figure1, ["--train-eps-ramp=1.5"]), UserError, "--train-eps-ramp must be");
});

Deno.test("zoo names: A′ is A from another seed, A_fgsm the paper's FGSM, B naturally trained on MNIST only", () => {
  for (const dataset of ["mnist", "cifar10"] as const) {
    const r = RECIPES[dataset].quick;
    const a = zooConfig("A", dataset, r), prime = zooConfig("A_prime", dataset, r);
    assertEquals({ ...prime, seed: a.seed }, a);
    assert(prime.seed !== a.seed);
    const f = zooConfig("A_fgsm", dataset, r);
    assertEquals([f.method, f.attackSteps, f.attackStepSize, f.randomStart], ["fgsm", 1, r.trainEps, false]);
    assertEquals(zooConfig("A_nat", dataset, r).method, "natural");
  }
  const b = zooConfig("B", "mnist", RECIPES.mnist.paper);
  assertEquals([b.method, b.optimizer, b.lr, b.batch, b.steps], ["natural", "adam", 1e-3, 64, 5625]);
  assertThrows(() => zooConfig("B", "cifar10", RECIPES.cifar10.quick), RangeError, "MNIST model");
  assertEquals(MODEL_NAMES.length, new Set(MODEL_NAMES).size);
});

Deno.test("--train-method fgsm and --train-random-start false reach the MNIST training config", () => {
  const parse = (args: string[]) => {
    const r = parseArgsFor(figure1, args);
    assert("config" in r);
    return zooConfig("A", r.config.dataset, recipeOf(r.config));
  };
  assertEquals(parse([]).method, "pgd");
  const fgsm = parse(["--train-method", "fgsm", "--train-attack-step-size", "0.3", "--train-random-start", "false"]);
  assertEquals([fgsm.method, fgsm.attackSteps, fgsm.attackStepSize, fgsm.randomStart], ["fgsm", 1, 0.3, false]);
  assertThrows(() => parseArgsFor(figure1, ["--train-method", "cw"]), UserError, "--train-method must be pgd or fgsm");
});

Deno.test("batch norm in the training adversary: train mode in the CIFAR-10 paper preset only", () => {
  const paper = zooConfig("A", "cifar10", recipeOf(presetConfig(figure1, "cifar10", "paper")));
  assertEquals(paper.attackBn, "train");
  assertEquals(zooConfig("A", "cifar10", RECIPES.cifar10.quick).attackBn, undefined);
  assertEquals(zooConfig("A_nat", "cifar10", RECIPES.cifar10.paper).attackBn, undefined);
  const asked = parseArgsFor(figure1, ["--dataset", "cifar10", "--attack-bn", "train"]);
  assert("config" in asked);
  assertEquals(zooConfig("A", "cifar10", recipeOf(asked.config)).attackBn, "train");
  assertThrows(
    () => parseArgsFor(figure1, ["--attack-bn", "eval"]),
    UserError,
    "--attack-bn must be inference or train",
  );
});

Deno.test("capacity family: MNIST scales double every layer, CIFAR-10 widths scale the ResNet", () => {
  const m = capacityConfig("mnist", RECIPES.mnist.quick, 4, "pgd");
  assertEquals(m.model, { conv1: 8, conv2: 16, fc: 32 });
  assertEquals(capacityConfig("mnist", RECIPES.mnist.quick, 16, "natural", 64).model, {
    conv1: 32,
    conv2: 64,
    fc: 1024,
  });
  const f = capacityConfig("mnist", RECIPES.mnist.quick, 1, "fgsm");
  assertEquals([f.method, f.attackStepSize, f.randomStart], ["fgsm", 0.3, false]);
  const c = capacityConfig("cifar10", RECIPES.cifar10.quick, 10, "pgd");
  assertEquals("filters" in c.model && c.model.filters, [16, 160, 320, 640]);
});

Deno.test("model B: Tramèr et al.'s layer shapes, dropout only in training", () => {
  const model = modelB(3);
  const shapes = model.layers.map((l) => l.outputShape);
  assertEquals(shapes, [
    [null, 28, 28, 1],
    [null, 14, 14, 64],
    [null, 5, 5, 128],
    [null, 1, 1, 128],
    [null, 1, 1, 128],
    [null, 128],
    [null, 10],
  ]);
  const x = tf.randomUniform([4, 28, 28, 1], 0, 1, "float32", 1);
  const a = logits(model, x).arraySync(), b = logits(model, x).arraySync();
  assertEquals(a, b);
  const t1 = (model.apply(x, { training: true }) as tf.Tensor).arraySync();
  const t2 = (model.apply(x, { training: true }) as tf.Tensor).arraySync();
  assert(JSON.stringify(t1) !== JSON.stringify(a), "dropout is off in training");
  assert(JSON.stringify(t1) !== JSON.stringify(t2), "dropout draws the same mask at every call");
  // The same seed gives the same weights and the same masks.
  const again = modelB(3);
  assertEquals((again.apply(x, { training: true }) as tf.Tensor).arraySync(), t1);
  tf.dispose([x]);
  model.dispose();
  again.dispose();
});
