/**
 * The fused updates on WebGPU (lib/backends/webgpu/_updates.ts) against the plain ops on the reference `cpu`
 * backend, through their callers: Adam and momentum SGD (lib/train/optim.ts) on variables of odd sizes, with
 * and without weight decay and with the learning rate changing between steps; the L∞ PGD update (signStep
 * and the attack, lib/attacks/pgd.ts) with zero gradients and iterates on the box's edges. Skipped where no
 * WebGPU adapter exists.
 *
 * @module
 */
import assert from "node:assert/strict";
import { adapter, gpuTest, outputsOn, webgpuErrors } from "./fixtures/webgpu.ts";
import { tf, tfl } from "../lib/core/tf.ts";
import { WEBGPU_KERNELS } from "../lib/backends/webgpu/mod.ts";
import { ADAM_UPDATE, MOMENTUM_UPDATE, PGD_UPDATE } from "../lib/backends/kernel_names.ts";
import { Adam, Momentum, type Optimizer } from "../lib/train/optim.ts";
import { perturb, signStep } from "../lib/attacks/pgd.ts";

const UPDATES = [ADAM_UPDATE, MOMENTUM_UPDATE, PGD_UPDATE];
/** Shapes of the optimised variables: sizes 7, 65 (13×5) and 3 (not multiples of 4), 24 and 8 (4-wide). */
const SHAPES = [[7], [13, 5], [4, 6], [3], [8]];
/** Relative error allowed for Adam (sqrt and division are not correctly rounded on every GPU). */
const TOL = 1e-5;
/** Relative error allowed for momentum (the same operations, though a GPU may fuse a multiply-add). */
const MOMENTUM_TOL = 1e-6;

const seeded = (shape: number[], seed: number, scale = 1) => tf.randomNormal(shape, 0, scale, "float32", seed);

/**
 * Runs `steps` updates of the optimiser `make` builds over fresh variables of {@link SHAPES}, each step from
 * its own gradients (some of them exact zeros) and with its own learning rate; returns the variables, then
 * the optimiser's state.
 */
function train(make: (vars: tf.Variable[]) => Optimizer & { lr: number }, steps: number): tf.Tensor[] {
  const vars = SHAPES.map((s, i) => tf.variable(seeded(s, 10 + i, 3)));
  const opt = make(vars);
  for (let t = 0; t < steps; t++) {
    opt.lr = 0.05 / (1 + t); // a new learning rate (and Adam step size) every step
    const grads = tf.tidy(() =>
      vars.map((v, i) => {
        const g = v.sub(seeded(v.shape, 1000 + 100 * t + i)).mul(2);
        return i === 3 ? g.mul(tf.tensor1d([0, 1, 0])) : g; // zero gradients for a few entries
      })
    );
    opt.apply(grads);
    tf.dispose(grads);
  }
  const out = [...vars, ...opt.state()].map((v) => v.clone());
  opt.dispose();
  tf.dispose(vars);
  return out;
}

/** Asserts every error is within `tol`, naming the output; returns the worst. */
function within(errors: number[], tol: number, what: string): number {
  errors.forEach((e, i) => assert.ok(e <= tol, `${what}, output ${i}: relative error ${e} above ${tol}`));
  return Math.max(...errors);
}

Deno.test("webgpu: the update kernels are registered on webgpu, or the tests are skipped", () => {
  if (!adapter.available) return;
  for (const name of UPDATES) {
    assert.ok(tf.getKernel(name, "webgpu"), `no ${name} kernel on webgpu`);
    assert.ok(WEBGPU_KERNELS.includes(name), `${name} not listed in WEBGPU_KERNELS`);
  }
});

gpuTest("webgpu Adam (fused update) matches the plain ops on cpu, lr changing every step", async () => {
  const errors = await webgpuErrors(() => train((vars) => new Adam(vars, 0.05), 6));
  console.log(`Adam: worst relative error ${within(errors, TOL, "Adam")}`);
});

gpuTest("webgpu momentum SGD (fused update) matches the plain ops on cpu, with and without weight decay", async () => {
  const decay = [true, false, true, true, false];
  const withDecay = await webgpuErrors(() => train((vars) => new Momentum(vars, 0.05, 0.9, 5e-3, decay), 6));
  const noDecay = await webgpuErrors(() => train((vars) => new Momentum(vars, 0.05, 0.9), 6));
  const worst = Math.max(
    within(withDecay, MOMENTUM_TOL, "momentum with decay"),
    within(noDecay, MOMENTUM_TOL, "momentum"),
  );
  console.log(`momentum: worst relative error ${worst}`);
});

gpuTest("webgpu: a changing learning rate or Adam step compiles no new pipeline", async () => {
  await tf.setBackend("webgpu");
  const cache = (tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache;
  const ours = () => Object.keys(cache).filter((k) => k.startsWith("adv_adam") || k.startsWith("adv_momentum"));
  const run = async (steps: number) => {
    const outs = tf.tidy(() => [
      ...train((vars) => new Adam(vars, 0.01), steps),
      ...train((vars) => new Momentum(vars, 0.01, 0.9, 1e-3, [true, false, true, false, true]), steps),
    ]);
    const data = await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    return data;
  };
  await run(1);
  const before = ours().length;
  assert.ok(before > 0, "no Adam or momentum pipeline was compiled: did the fused kernels run?");
  const data = await run(5);
  assert.equal(ours().length, before, `pipelines after 5 more steps: ${ours().join(", ")}`);
  for (const d of data) assert.ok(d.every(Number.isFinite), "a non-finite value after changing the step size");
});

/** `n` numbers uniform in [a, b), from a fixed sequence (as float32). */
function uniform(n: number, a: number, b: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return a + (b - a) * (s / 2 ** 32);
  });
}

/**
 * A PGD update's inputs: x in [lo, hi] (some exactly on the edges, a few outside), an iterate inside, on and outside the
 * ε-ball (some beyond the pixel range, some on its edge), gradients with exact zeros of both signs.
 */
function pgdCase(n: number, [lo, hi]: [number, number], eps: number) {
  const [u, d, g] = [uniform(n, lo, hi, 1), uniform(n, -1.5 * eps, 1.5 * eps, 2), uniform(n, -1, 1, 3)];
  // A few x beyond the box by 2ε (the ball misses the box there: projecting, then clipping lands on the edge).
  const x = u.map((v, i) => (i % 5 === 0 ? lo : i % 5 === 1 ? hi : i % 10 === 4 ? hi + 2 * eps : v));
  const xAdv = x.map((v, i) => (i % 6 === 0 ? v + eps : i % 6 === 1 ? v - eps : i % 6 === 2 ? lo : v + d[i]));
  const grad = g.map((v, i) => (i % 7 === 0 ? 0 : i % 7 === 1 ? -0 : v));
  return { x, xAdv, grad };
}

gpuTest("webgpu PGD update (signStep) equals the plain ops on cpu bit for bit: zero gradients, box edges", async () => {
  const cases: [number[], [number, number], number, number][] = [
    [[3, 5, 7, 1], [0, 1], 0.3, 0.01],
    [[2, 4, 4, 2], [0, 255], 8, 2],
    [[1, 6, 5, 3], [-1, 1], 0.1, 0.25],
  ];
  for (const [shape, range, eps, step] of cases) {
    const { x, xAdv, grad } = pgdCase(shape.reduce((a, b) => a * b), range, eps);
    const f = () => [signStep(tf.tensor(xAdv, shape), tf.tensor(grad, shape), tf.tensor(x, shape), step, eps, range)];
    const [[want], [got]] = [await outputsOn("cpu", f), await outputsOn("webgpu", f)];
    const cache = (tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache;
    assert.ok(Object.keys(cache).some((k) => k.startsWith("adv_pgd_update")), "the PGD update kernel did not run");
    await tf.setBackend("cpu");
    const diff = want.findIndex((w, i) => !Object.is(w + 0, got[i] + 0));
    assert.equal(diff, -1, `shape ${shape}, range ${range}, ε ${eps}: at ${diff}, ${got[diff]} vs ${want[diff]}`);
    // A zero gradient leaves its pixel where it was, up to the projection.
    for (let i = 0; i < grad.length; i += 7) {
      const stay = Math.min(
        Math.max(xAdv[i], Math.fround(x[i] - Math.fround(eps))),
        Math.fround(x[i] + Math.fround(eps)),
      );
      assert.equal(got[i], Math.fround(Math.min(Math.max(stay, range[0]), range[1])), `zero gradient moved ${i}`);
    }
  }
});

gpuTest("webgpu PGD attack (perturb) matches cpu; a mismatched shape is refused", async () => {
  const shape: [number, number, number] = [4, 5, 1];
  const model = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: shape }), tfl.layers.dense({ units: 3 })] });
  // Every third pixel has zero weight: its input gradient is an exact zero.
  const kernel = Array.from({ length: 20 * 3 }, (_, i) => (Math.floor(i / 3) % 3 === 0 ? 0 : Math.sin(7 * i)));
  tf.tidy(() => model.setWeights([tf.tensor2d(kernel, [20, 3]), tf.tensor1d([0.1, -0.2, 0.3])]));
  try {
    const errors = await webgpuErrors(() => {
      const x = tf.randomUniform([6, ...shape], 0, 1, "float32", 3);
      const y = tf.tensor1d([0, 1, 2, 0, 1, 2], "int32");
      return [perturb(model, x, y, { eps: 0.3, steps: 4, stepSize: 0.1, randomStart: true, seed: 5 })];
    });
    const worst = within(errors, 1e-6, "perturb");
    console.log(`perturb: relative error ${worst}`);
  } finally {
    model.dispose();
  }
  await tf.setBackend("webgpu");
  assert.throws(
    () => tf.tidy(() => signStep(tf.zeros([2, 3]), tf.zeros([3, 2]), tf.zeros([2, 3]), 0.1, 0.3, [0, 1])),
    /must have one shape/,
  );
  await tf.setBackend("cpu");
});
