/**
 * The "native" (BLAS via FFI) backend against the reference `cpu` backend:
 * every kernel it replaces on random shapes, model A's gradients and a few
 * Adam steps. Skipped where no BLAS loads (no --allow-ffi, no library).
 *
 *   deno test --allow-ffi --allow-env=BLAS_LIBRARY tests/native_test.ts
 *
 * (--allow-ffi loads the BLAS; --allow-env=BLAS_LIBRARY only lets that variable
 * pick the library. Deno 2.9 needs no --unstable-ffi.)
 *
 * @module
 */
import assert from "node:assert/strict";
import { loadBlas } from "../lib/backends/native/_blas.ts";
import { capacityShape, logits, mnistNet, MODEL_A } from "../lib/nn/mnist_net.ts";
import {
  compiledReason,
  dnnlCounts,
  dnnlReason,
  narrowCounts,
  NATIVE_BACKEND,
  registerNativeBackend,
  useCompiledLoops,
  useDnnl,
} from "../lib/backends/native/mod.ts";
import {
  ADAM_UPDATE,
  BN_ACT_GRAD,
  BN_ACT_INFER,
  BN_ACT_INFER_GRAD,
  BN_ACT_TRAIN,
  MOMENTUM_UPDATE,
  PGD_UPDATE,
  STANDARDIZE,
  STANDARDIZE_GRAD,
} from "../lib/backends/kernel_names.ts";
import { tf } from "../lib/core/tf.ts";
import { type NativeBackend } from "../lib/backends/native/_backend.ts";
import { COMPILED_BINARY_MIN } from "../lib/backends/native/_elementwise.ts";
import { modelB } from "../lib/nn/model_b.ts";
import { crossEntropy as sparseCrossEntropy } from "../lib/nn/losses.ts";
import { relError } from "./assert.ts";

const blas = loadBlas();
const ignore = !blas.ok;
if (!blas.ok) console.warn(`native backend tests skipped: ${blas.reason}`);

const TOL = 1e-4;

/** Deterministic uniform numbers in [lo, hi) (mulberry32). */
function random(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

function tensor(shape: number[], seed: number, lo = -1, hi = 1): tf.Tensor {
  return tf.tensor(random(shape.reduce((p, q) => p * q, 1), seed, lo, hi), shape);
}

/** Runs `f` on the cpu and on the native backend; returns each output's values. */
async function both(f: () => tf.Tensor | tf.Tensor[]): Promise<[Float32Array[], Float32Array[]]> {
  const results: Float32Array[][] = [];
  for (const backend of ["cpu", NATIVE_BACKEND]) {
    await tf.setBackend(backend);
    const out = tf.tidy(f);
    const list = Array.isArray(out) ? out : [out];
    results.push(list.map((t) => t.dataSync() as Float32Array));
    tf.dispose(list);
  }
  return [results[0], results[1]];
}

/** max |a − b| / max(max |b|, 1e-3), elementwise over the whole array. */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, "length");
  let diff = 0, scale = 1e-3;
  for (let i = 0; i < a.length; i++) {
    if (Object.is(a[i], b[i]) || a[i] === b[i]) continue; // NaN, ±∞ and exact matches
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

async function assertSame(what: string, f: () => tf.Tensor | tf.Tensor[], tol = TOL) {
  const [ref, got] = await both(f);
  assert.equal(got.length, ref.length);
  for (let i = 0; i < ref.length; i++) {
    const e = relErr(got[i], ref[i]);
    assert.ok(e <= tol, `${what} (output ${i}): relative error ${e} > ${tol}`);
  }
}

/** Runs `f` with the native backend's compiled C loops, then with its TypeScript loops; leaves the compiled ones on. */
async function eachLoops(f: (loops: "compiled" | "typescript") => Promise<void>): Promise<void> {
  try {
    for (const loops of ["compiled", "typescript"] as const) {
      useCompiledLoops(loops === "compiled");
      await f(loops);
    }
  } finally {
    useCompiledLoops(true);
  }
}

const setup = async () => {
  const r = await registerNativeBackend();
  assert.ok(r.ok, r.ok ? "" : r.reason);
};

type Pad = "same" | "valid" | [[number, number], [number, number], [number, number], [number, number]];
interface ConvCase {
  n: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  k: [number, number];
  stride: number;
  pad: Pad;
  dilation?: number;
}

const CONVS: ConvCase[] = [
  { n: 1, h: 7, w: 9, cin: 3, cout: 4, k: [3, 3], stride: 1, pad: "same" },
  { n: 2, h: 8, w: 8, cin: 2, cout: 5, k: [3, 3], stride: 2, pad: "same" },
  { n: 3, h: 9, w: 7, cin: 3, cout: 2, k: [5, 5], stride: 2, pad: "valid" },
  { n: 2, h: 11, w: 10, cin: 1, cout: 6, k: [5, 5], stride: 1, pad: "same" },
  { n: 2, h: 6, w: 6, cin: 4, cout: 3, k: [1, 1], stride: 1, pad: "valid" },
  { n: 1, h: 6, w: 5, cin: 2, cout: 3, k: [2, 3], stride: 1, pad: "same" },
  { n: 2, h: 7, w: 8, cin: 2, cout: 3, k: [3, 2], stride: 2, pad: [[0, 0], [1, 2], [2, 0], [0, 0]] },
  { n: 1, h: 9, w: 9, cin: 8, cout: 5, k: [5, 5], stride: 1, pad: "same" }, // rows copied by memcpy
  { n: 2, h: 6, w: 7, cin: 33, cout: 4, k: [3, 3], stride: 2, pad: "same" }, // channels copied by memcpy
  { n: 1, h: 9, w: 9, cin: 2, cout: 3, k: [3, 3], stride: 1, pad: "same", dilation: 2 },
  { n: 3, h: 8, w: 8, cin: 16, cout: 16, k: [3, 3], stride: 1, pad: "same" }, // the CIFAR ResNet's blocks
  { n: 2, h: 8, w: 8, cin: 16, cout: 32, k: [3, 3], stride: 2, pad: "same" }, // its downsampling convolution
  { n: 2, h: 8, w: 9, cin: 3, cout: 8, k: [3, 3], stride: 2, pad: "valid" }, // output size rounded down
  // First layers, whose input gradient has its own compiled loop (vector accumulators for 8·k output channels):
  { n: 1, h: 28, w: 28, cin: 1, cout: 32, k: [5, 5], stride: 1, pad: "same" }, // model A's, batch 1
  { n: 2, h: 9, w: 10, cin: 3, cout: 16, k: [3, 3], stride: 1, pad: "same" }, // the CIFAR ResNets'
  { n: 2, h: 7, w: 6, cin: 2, cout: 24, k: [3, 3], stride: 2, pad: [[0, 0], [2, 1], [1, 2], [0, 0]] },
  { n: 1, h: 9, w: 8, cin: 4, cout: 48, k: [4, 3], stride: 2, pad: "same" },
  { n: 1, h: 6, w: 7, cin: 1, cout: 64, k: [2, 2], stride: 1, pad: "valid" },
  { n: 2, h: 5, w: 5, cin: 3, cout: 72, k: [3, 3], stride: 2, pad: "same" }, // over 64: the loop through memory
];

function convName(c: ConvCase): string {
  return `x[${c.n},${c.h},${c.w},${c.cin}] k${c.k} s${c.stride} ${JSON.stringify(c.pad)}` +
    (c.dilation ? ` d${c.dilation}` : "");
}

Deno.test({
  name: "native Conv2D and its gradients (x, filter) equal cpu, through oneDNN and through im2col (C and TypeScript)",
  ignore,
  fn: async () => {
    await setup();
    useDnnl(true);
    if (dnnlReason) console.warn(`oneDNN convolutions unavailable: ${dnnlReason}`);
    else {
      const before = { ...dnnlCounts };
      await convCases();
      assert.equal(dnnlCounts.declined, before.declined, "oneDNN declined none of the cases");
      assert(dnnlCounts.done > before.done + 2 * CONVS.length, "oneDNN computed the convolutions");
    }
    useDnnl(false);
    await eachLoops(async (loops) => {
      if (loops === "compiled" && compiledReason) console.warn(`compiled loops unavailable: ${compiledReason}`);
      const before = narrowCounts.done;
      await convCases();
      if (loops === "compiled" && !compiledReason) {
        const narrow = CONVS.filter((c) => c.cin <= 4 && !c.dilation).length;
        assert.equal(narrowCounts.done - before, narrow, "the narrow input-gradient loop computed the first layers'");
      }
    });
    useDnnl(true);
  },
});

async function convCases() {
  for (const [i, c] of CONVS.entries()) {
    const conv = (x: tf.Tensor, w: tf.Tensor) =>
      tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad, "NHWC", c.dilation ?? 1);
    const make = () => {
      const x = tensor([c.n, c.h, c.w, c.cin], 10 + i);
      const w = tensor([c.k[0], c.k[1], c.cin, c.cout], 20 + i);
      return { x, w };
    };
    await assertSame(`Conv2D ${convName(c)}`, () => {
      const { x, w } = make();
      return conv(x, w);
    });
    if (c.dilation) continue; // TF.js has no gradient for dilated conv2d
    await assertSame(`Conv2D gradients ${convName(c)}`, () => {
      const { x, w } = make();
      const y = conv(x, w);
      const r = tensor(y.shape, 30 + i);
      return tf.grads((a, b) => tf.sum(tf.mul(conv(a, b), r)))([x, w]);
    });
  }
}

Deno.test({
  name: "native FusedConv2D (bias, relu / leakyrelu / linear) equals cpu",
  ignore,
  fn: async () => {
    await setup();
    const acts = ["relu", "leakyrelu", "linear"] as const;
    for (const [i, c] of CONVS.slice(0, 4).entries()) {
      for (const activation of acts) {
        await assertSame(`FusedConv2D ${activation} ${convName(c)}`, () =>
          tf.fused.conv2d({
            x: tensor([c.n, c.h, c.w, c.cin], 40 + i) as tf.Tensor4D,
            filter: tensor([c.k[0], c.k[1], c.cin, c.cout], 50 + i) as tf.Tensor4D,
            strides: c.stride,
            pad: c.pad,
            bias: tensor([c.cout], 60 + i),
            activation,
            leakyreluAlpha: 0.1,
          }));
      }
    }
  },
});

Deno.test({
  name: "native BatchMatMul and _FusedMatMul (transposes, batches, broadcast) equal cpu",
  ignore,
  fn: async () => {
    await setup();
    const cases: [number[], number[], boolean, boolean][] = [
      [[3, 4], [4, 5], false, false],
      [[4, 3], [4, 5], true, false],
      [[3, 4], [5, 4], false, true],
      [[4, 3], [5, 4], true, true],
      [[1, 7], [7, 1], false, false],
      [[2, 3, 4], [2, 4, 5], false, false],
      [[2, 4, 3], [2, 5, 4], true, true],
      [[2, 3, 4], [1, 4, 5], false, false],
      [[1, 3, 4], [3, 5, 4], false, true],
      [[2, 2, 3, 4], [2, 2, 4, 6], false, false],
    ];
    for (const [i, [sa, sb, ta, tb]] of cases.entries()) {
      await assertSame(
        `BatchMatMul ${sa} ${sb} tA=${ta} tB=${tb}`,
        () => tf.matMul(tensor(sa, 70 + i), tensor(sb, 80 + i), ta, tb),
      );
    }
    for (const [i, [sa, sb, ta, tb]] of cases.slice(0, 4).entries()) {
      const n = tb ? sb[0] : sb[1];
      for (const activation of ["relu", "leakyrelu", "linear"] as const) {
        await assertSame(`_FusedMatMul ${activation} ${sa} ${sb} tA=${ta} tB=${tb}`, () =>
          tf.fused.matMul({
            a: tensor(sa, 90 + i),
            b: tensor(sb, 100 + i),
            transposeA: ta,
            transposeB: tb,
            bias: tensor([n], 110 + i),
            activation,
            leakyreluAlpha: 0.3,
          }));
      }
    }
    // Gradients of a matmul run BatchMatMul with transposes.
    await assertSame("matMul gradients", () => {
      const a = tensor([5, 3], 120), b = tensor([3, 4], 121), r = tensor([5, 4], 122);
      return tf.grads((p, q) => tf.sum(tf.mul(tf.matMul(p, q), r)))([a, b]);
    });
  },
});

Deno.test({
  name: "native MaxPool / AvgPool and their gradients equal cpu (ties included)",
  ignore,
  fn: async () => {
    await setup();
    const cases: [number[], number, number, "same" | "valid"][] = [
      [[2, 8, 8, 3], 2, 2, "valid"],
      [[1, 7, 9, 2], 3, 2, "same"],
      [[2, 5, 6, 4], 2, 1, "same"],
      [[3, 9, 7, 1], 3, 2, "valid"],
    ];
    await eachLoops(async (loops) => {
      for (const [i, [shape, size, stride, pad]] of cases.entries()) {
        const what = `${shape} size ${size} stride ${stride} ${pad} (${loops} loops)`;
        // ReLU'd input: many zero ties, as in the MNIST net.
        const input = () => tf.relu(tensor(shape, 130 + i));
        await assertSame(`MaxPool ${what}`, () => tf.maxPool(input() as tf.Tensor4D, size, stride, pad));
        await assertSame(`MaxPoolGrad ${what}`, () => {
          const x = input();
          const r = tensor(tf.maxPool(x as tf.Tensor4D, size, stride, pad).shape, 140 + i);
          return tf.grad((a) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, size, stride, pad), r)))(x);
        });
        await assertSame(`AvgPool ${what}`, () => tf.avgPool(input() as tf.Tensor4D, size, stride, pad));
        const avgGrad = () => {
          const x = input();
          const r = tensor(tf.avgPool(x as tf.Tensor4D, size, stride, pad).shape, 150 + i);
          return [
            tf.grad((a) => tf.sum(tf.mul(tf.avgPool(a as tf.Tensor4D, size, stride, pad), r)))(x),
            x,
            r,
          ];
        };
        if (pad === "valid") await assertSame(`AvgPoolGrad ${what}`, avgGrad);
        // Native's AvgPoolGrad is the exact adjoint of AvgPool (SAME included):
        // <avgPool(x), r> = <x, avgPoolGrad(r)>.
        await tf.setBackend(NATIVE_BACKEND);
        tf.tidy(() => {
          const [g, x, r] = avgGrad();
          const lhs = tf.sum(tf.mul(tf.avgPool(x as tf.Tensor4D, size, stride, pad), r)).dataSync()[0];
          const rhs = tf.sum(tf.mul(x, g)).dataSync()[0];
          assert.ok(Math.abs(lhs - rhs) <= 1e-4 * Math.max(1, Math.abs(lhs)), `AvgPoolGrad adjoint ${what}`);
        });
      }
    });
  },
});

Deno.test({
  name: "native element-wise kernels (relu, step, arithmetic, broadcasts, sums) equal cpu",
  ignore,
  fn: async () => {
    await setup();
    const s = [3, 5, 7, 4];
    // NaN with the sign bit set too (0xffc00000): relu and step keep it NaN, as cpu does.
    const negNaN = new Float32Array(Int32Array.of(0xffc00000 | 0).buffer)[0];
    const special = () => tf.tensor([NaN, negNaN, -0, 0, -Infinity, Infinity, -1e-30, 1e-30, 2, -3]);
    await eachLoops(async (loops) => {
      await assertSame(`relu / step / sqrt / square / neg / sign (${loops})`, () => {
        const x = tensor(s, 160);
        return [tf.relu(x), tf.step(x), tf.step(x, 0.25), tf.sqrt(tf.abs(x)), tf.square(x), tf.neg(x), tf.sign(x)];
      });
      await assertSame(
        `relu / step / sign on NaN, ±0, ±∞ (${loops})`,
        () => [tf.relu(special()), tf.step(special(), 0.5), tf.sign(special())],
      );
    });
    const pairs: [number[], number[]][] = [[s, s], [s, [4]], [[4], s], [s, []], [[], s], [s, [1, 7, 4]], [
      s,
      [5, 1, 4],
    ]];
    for (const [i, [sa, sb]] of pairs.entries()) {
      await assertSame(`add / sub / mul / div ${JSON.stringify(sa)} ${JSON.stringify(sb)}`, () => {
        const a = tensor(sa, 170 + i), b = tensor(sb, 180 + i, 0.5, 2);
        return [tf.add(a, b), tf.sub(a, b), tf.mul(a, b), tf.div(a, b)];
      });
    }
    // long enough for the compiled, threaded loop (and, without it, the JS one): same shape, channel, scalar, swapped
    const big = [4, 33, 17, 16];
    await eachLoops(async (loops) => {
      for (const [i, [sa, sb]] of ([[big, big], [big, [16]], [[16], big], [big, []], [[], big]] as const).entries()) {
        await assertSame(`add / sub / mul / div ${JSON.stringify(sa)} ${JSON.stringify(sb)} (${loops})`, () => {
          const a = tensor([...sa], 200 + i), b = tensor([...sb], 210 + i, 0.5, 2);
          return [tf.add(a, b), tf.sub(a, b), tf.mul(a, b), tf.div(a, b)];
        });
      }
    });
    await assertSame("sum over leading, trailing, middle and all axes", () => {
      const x = tensor(s, 190);
      return [
        tf.sum(x, [0, 1, 2]),
        tf.sum(x, 0, true),
        tf.sum(x, [2, 3]),
        tf.sum(x, -1),
        tf.sum(x, [1, 2]),
        tf.sum(x),
      ];
    });
    // Long enough for the compiled loop (bias gradients: sums over N·H·W), which sums in double in the
    // TypeScript loop's order: both give the same floats.
    const sums = (x: tf.Tensor) => [
      tf.sum(x, [0, 1, 2]),
      tf.mean(x, [0, 1, 2]),
      tf.sum(x, [1, 2]),
      tf.sum(x, -1),
      tf.sum(x),
      tf.sum(tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, 13]), [0, 1, 2]), // a column count off the blocks of 8
    ];
    const got: Float32Array[][] = [];
    await eachLoops(async (loops) => {
      await assertSame(`sums and means of [6, 33, 29, 37] (${loops})`, () => sums(tensor([6, 33, 29, 37], 195)));
      await tf.setBackend(NATIVE_BACKEND);
      const outs = tf.tidy(() => sums(tensor([6, 33, 29, 37], 195)));
      got.push(outs.map((t) => t.dataSync() as Float32Array));
      tf.dispose(outs);
    });
    got[0].forEach((c, i) => assert.deepEqual(c, got[1][i], `sum ${i}: compiled and TypeScript loops differ`));
  },
});

/** Summed cross-entropy of model A on (x, labels). */
function crossEntropy(model: ReturnType<typeof mnistNet>, x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  return tf.neg(tf.sum(tf.mul(y, tf.logSoftmax(logits(model, x)))));
}

Deno.test({
  name: "native model A input and parameter gradients of the cross-entropy equal cpu",
  ignore,
  fn: async () => {
    await setup();
    await tf.setBackend("cpu");
    const model = mnistNet(MODEL_A, 3);
    const x = tensor([3, 28, 28, 1], 200, 0, 1);
    const y = tf.oneHot(tf.tensor1d([1, 7, 3], "int32"), 10);
    await assertSame("model A ∂loss/∂x (batch 3)", () => tf.grad((a) => crossEntropy(model, a, y))(x));
    // Parameter gradients at batch 1: the cpu backend's Conv2DBackpropFilter
    // takes seconds per image on model A's second convolution.
    const x1 = tf.slice(x, 0, 1), y1 = tf.slice(y, 0, 1);
    await assertSame("model A ∂loss/∂θ (batch 1)", () => {
      const weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { value, grads } = tf.variableGrads(() => crossEntropy(model, x1, y1), weights);
      return [value, ...weights.map((w) => grads[w.name])];
    });
    tf.dispose([x, y, x1, y1]);
    model.dispose();
  },
});

Deno.test({
  name: "native Adam steps follow the cpu loss curve (small MNIST net)",
  ignore,
  fn: async () => {
    await setup();
    const curves: number[][] = [];
    for (const backend of ["cpu", NATIVE_BACKEND]) {
      await tf.setBackend(backend);
      // Scale 2 of the capacity family: model A's layers, few filters, so the
      // cpu reference stays fast.
      const model = mnistNet(capacityShape(2), 5);
      const optimizer = tf.train.adam(1e-2);
      const x = tensor([4, 28, 28, 1], 210, 0, 1);
      const y = tf.oneHot(tf.tensor1d([0, 4, 9, 2], "int32"), 10);
      const losses: number[] = [];
      for (let step = 0; step < 5; step++) {
        const loss = optimizer.minimize(() => crossEntropy(model, x, y), true) as tf.Scalar;
        losses.push(loss.dataSync()[0]);
        loss.dispose();
      }
      curves.push(losses);
      optimizer.dispose();
      model.dispose();
      tf.dispose([x, y]);
    }
    const [ref, got] = curves;
    assert.ok(ref[4] < ref[0], `loss should fall on cpu: ${ref}`);
    for (let i = 0; i < ref.length; i++) {
      assert.ok(
        Math.abs(got[i] - ref[i]) <= 1e-3 * Math.abs(ref[i]),
        `step ${i}: native loss ${got[i]} vs cpu ${ref[i]}`,
      );
    }
  },
});

Deno.test({
  name: "native gradient step leaks no tensors; registering twice is harmless",
  ignore,
  fn: async () => {
    await setup();
    const again = await registerNativeBackend();
    assert.ok(again.ok);
    assert.deepEqual(
      tf.getKernelsForBackend(NATIVE_BACKEND).map((k) => k.kernelName).sort(),
      [
        ...tf.getKernelsForBackend("cpu").map((k) => k.kernelName),
        BN_ACT_GRAD,
        BN_ACT_TRAIN,
        BN_ACT_INFER,
        BN_ACT_INFER_GRAD,
        ADAM_UPDATE,
        MOMENTUM_UPDATE,
        STANDARDIZE,
        STANDARDIZE_GRAD,
        PGD_UPDATE,
      ]
        .sort(),
    );
    await tf.setBackend(NATIVE_BACKEND);
    const model = mnistNet(MODEL_A, 7);
    const x = tensor([2, 28, 28, 1], 220, 0, 1);
    const y = tf.oneHot(tf.tensor1d([5, 6], "int32"), 10);
    const step = () => tf.tidy(() => tf.grad((a) => crossEntropy(model, a, y))(x)).dispose();
    step();
    const before = tf.memory().numTensors;
    step();
    step();
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([x, y]);
    model.dispose();
  },
});

Deno.test({
  name: "native recycled output buffers never clobber read-back arrays or live views",
  ignore,
  fn: async () => {
    await setup();
    await tf.setBackend(NATIVE_BACKEND);
    const a = tf.fill([300, 300], 1); // 360 KB: large enough to be pooled
    // An array read back by dataSync() stays the caller's after dispose.
    const b = tf.add(a, a);
    const read = b.dataSync();
    b.dispose();
    const others = [tf.add(a, a), tf.mul(a, 3), tf.sub(a, a), tf.relu(a)];
    assert.ok(read.every((v) => v === 2), "dataSync() array was overwritten");
    // A contiguous slice views its source's buffer: freeing the source must not recycle it.
    const big = tf.mul(a, 2);
    const view = tf.slice(big, [0, 0], [100, 300]);
    big.dispose();
    others.push(tf.mul(a, 5), tf.mul(a, 7));
    assert.ok(view.dataSync().every((v) => v === 2), "slice view was overwritten");
    // Recycled arrays come back dirty: every kernel must still write all of its output.
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => {
        const x = tf.relu(tensor([4, 32, 32, 8], 230 + i));
        const pooled = tf.maxPool(x as tf.Tensor4D, 2, 2, "valid");
        const g = tf.grad((p) => tf.sum(tf.maxPool(p as tf.Tensor4D, 2, 2, "valid")))(x);
        assert.equal(tf.sum(g).dataSync()[0], pooled.size);
      });
    }
    tf.dispose([a, view, ...others]);
  },
});

Deno.test({
  name: "native broadcasts, comparisons, select, reductions, slice, pad, tile, leaky ReLU and batch norm equal cpu",
  ignore,
  fn: async () => {
    await setup();
    const a = () => tensor([3, 5, 4, 6], 1);
    const shapes = [[3, 1, 1, 1], [1, 1, 1, 6], [3, 5, 1, 6], [1, 5, 4, 1], [6], [], [5, 1, 1]];
    for (const [i, bs] of shapes.entries()) {
      const b = () => tensor(bs, 40 + i, 0.5, 2);
      for (const op of [tf.add, tf.sub, tf.mul, tf.div, tf.maximum, tf.minimum, tf.squaredDifference]) {
        await assertSame(`${op.name} [3,5,4,6] with ${JSON.stringify(bs)}`, () => op(a(), b()));
        await assertSame(`${op.name} ${JSON.stringify(bs)} with [3,5,4,6]`, () => op(b(), a()));
      }
      for (const op of [tf.greater, tf.greaterEqual, tf.less, tf.lessEqual, tf.equal]) {
        await assertSame(`${op.name} ${JSON.stringify(bs)}`, () => op(a(), b()).cast("float32"));
      }
    }
    await assertSame("where", () => tf.where(tf.greater(a(), 0), a(), tensor([3, 5, 4, 6], 9)));
    for (const axes of [[0], [0, 1, 2], [1, 2], [1, 2, 3], [3], [2, 3], [0, 1, 2, 3]]) {
      await assertSame(`mean ${axes}`, () => tf.mean(a(), axes));
      await assertSame(`sum ${axes} keepDims`, () => tf.sum(a(), axes, true));
    }
    await assertSame("moments and their gradient", () => {
      const x = a();
      const m = tf.moments(x, [0, 1, 2]);
      return [m.mean, m.variance, tf.grad((v: tf.Tensor) => tf.sum(tf.moments(v, [1, 2, 3]).variance))(x)];
    });
    await assertSame("slice", () => tf.slice(a(), [1, 2, 0, 3], [2, 2, 3, 3]));
    await assertSame("pad", () => tf.pad(a(), [[0, 0], [1, 2], [0, 1], [3, 4]], 0.5));
    await assertSame("tile", () => tf.tile(tensor([1, 2, 1, 3], 5), [3, 1, 4, 2]));
    await assertSame("leaky relu and its gradient", () => {
      const x = a();
      return [tf.leakyRelu(x, 0.1), tf.grad((v: tf.Tensor) => tf.sum(tf.leakyRelu(v, 0.1)))(x)];
    });
    await assertSame(
      "batch norm (inference)",
      () => tf.batchNorm(a(), tensor([6], 2), tensor([6], 3, 0.5, 1), tensor([6], 4), tensor([6], 6), 1e-3),
    );
  },
});

Deno.test({
  name: "native fused batch norm + leaky ReLU (training and inference) equals the plain ops on cpu, with gradients",
  ignore,
  fn: async () => {
    await setup();
    const { batchNormActTrain } = await import("../lib/nn/_fused.ts");
    await eachLoops(async (loops) => {
      // 60 rows: less than one block of the C loops; 567 rows: several blocks and a remainder, split across threads
      for (const shape of [[4, 5, 3, 6], [7, 9, 9, 5]]) {
        await assertSame(`bn+leaky train ${shape} (${loops} loops)`, () => {
          const x = tensor(shape, 11, -2, 3);
          const g = tensor([shape[3]], 12, 0.5, 1.5), b = tensor([shape[3]], 13);
          const r = tensor(shape, 14);
          const f = (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) =>
            tf.sum(tf.mul(batchNormActTrain(xs, gs, bs, 1e-3, 0.1).y, r));
          const { y, mean, variance } = batchNormActTrain(x, g, b, 1e-3, 0.1);
          return [y, mean, variance, ...tf.grads((xs, gs, bs) => f(xs, gs, bs))([x, g, b])];
        });
      }
    });
    const { batchNormActInfer } = await import("../lib/nn/_fused.ts");
    await eachLoops(async (loops) => {
      for (const shape of [[4, 5, 3, 6], [7, 9, 9, 5]]) {
        await assertSame(`bn+leaky inference ${shape} and its gradients (${loops} loops)`, () => {
          const C = shape[3];
          const x = tensor(shape, 21, -2, 3);
          const m = tensor([C], 22), v = tensor([C], 23, 0.5, 2), g = tensor([C], 24, 0.5, 1.5), b = tensor([C], 25);
          const r = tensor(shape, 26);
          const f = (xs: tf.Tensor, gs: tf.Tensor, bs: tf.Tensor) =>
            tf.sum(tf.mul(batchNormActInfer(xs, m, v, gs, bs, 1e-3, 0.1), r));
          return [batchNormActInfer(x, m, v, g, b, 1e-3, 0.1), ...tf.grads((xs, gs, bs) => f(xs, gs, bs))([x, g, b])];
        });
      }
    });
  },
});

Deno.test({
  name: "native per-image standardisation (one kernel each way) equals the plain ops on cpu, with gradients",
  ignore,
  fn: async () => {
    await setup();
    const { PerImageStandardization } = await import("../lib/nn/resnet.ts");
    const layer = new PerImageStandardization();
    const f = (x: tf.Tensor) => layer.apply(x) as tf.Tensor;
    await tf.setBackend(NATIVE_BACKEND);
    assert.ok(tf.getKernel(STANDARDIZE, NATIVE_BACKEND), "the native backend registers the standardisation kernel");
    await eachLoops(async (loops) => {
      // pixels in [0, 255]; image 1 constant (σ² = 0 < 1/m: clamped, gradient without the σ term), image 2 nearly so
      await assertSame(`standardisation and its input gradient (${loops} loops)`, () => {
        const [n, h, w, c] = [3, 7, 5, 3], m = h * w * c;
        const v = random(n * m, 40, 0, 255);
        v.fill(17, m, 2 * m);
        for (let j = 2 * m; j < 3 * m; j++) v[j] = 100 + (j % 2) * 0.05;
        const x = tf.tensor4d(v, [n, h, w, c]), r = tensor([n, h, w, c], 41);
        return [f(x), tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(f(xs), r)))(x)];
      });
    });
  },
});

Deno.test({
  name: "native PGD update (one pass) equals the plain ops on cpu: sign step, ε-ball projection, pixel clip",
  ignore,
  fn: async () => {
    await setup();
    const { signStep } = await import("../lib/attacks/pgd.ts");
    assert.ok(tf.getKernel(PGD_UPDATE, NATIVE_BACKEND), "the native backend registers the PGD update kernel");
    await eachLoops(async (loops) => {
      for (
        const [range, eps, step] of [[[0, 255], 8, 2], [[0, 1], 0.3, 0.01]] as [[number, number], number, number][]
      ) {
        await assertSame(`PGD update in [${range}], ε ${eps}, step ${step} (${loops} loops)`, () => {
          const shape = [5, 13, 11, 3], n = 5 * 13 * 11 * 3, [lo, hi] = range;
          const x = tf.tensor(random(n, 50, lo, hi), shape);
          // iterates inside, on and outside the ball, some beyond the pixel range; gradients with exact zeros
          const xAdv = tf.add(x, tf.tensor(random(n, 51, -1.5 * eps, 1.5 * eps), shape));
          const g = tf.tensor(random(n, 52).map((v, i) => (i % 7 === 0 ? 0 : v)), shape);
          return signStep(xAdv, g, x, step, eps, range);
        }, 1e-6);
      }
    });
  },
});

Deno.test({
  name: "our Adam: the native fused update equals the plain ops on cpu",
  ignore,
  fn: async () => {
    await setup();
    const { Adam } = await import("../lib/train/optim.ts");
    await eachLoops(async (loops) => {
      const results: Float32Array[] = [];
      for (const backend of ["cpu", NATIVE_BACKEND]) {
        await tf.setBackend(backend);
        const w = tf.variable(tensor([7, 5], 300));
        const opt = new Adam([w], 0.05);
        for (let step = 0; step < 5; step++) {
          const g = tf.tidy(() => tf.mul(tf.sub(w, tensor([7, 5], 301 + step)), 2));
          opt.apply([g]);
          g.dispose();
        }
        results.push(w.dataSync() as Float32Array);
        opt.dispose();
        w.dispose();
      }
      const e = relErr(results[1], results[0]);
      assert.ok(e <= TOL, `native (${loops} loops) vs cpu Adam: ${e}`);
    });
  },
});

Deno.test({
  name: "our momentum SGD with weight decay: the native fused update equals the plain ops on cpu",
  ignore,
  fn: async () => {
    await setup();
    const { Momentum } = await import("../lib/train/optim.ts");
    await eachLoops(async (loops) => {
      const results: Float32Array[][] = [];
      for (const backend of ["cpu", NATIVE_BACKEND]) {
        await tf.setBackend(backend);
        const w = tf.variable(tensor([7, 5], 310)), u = tf.variable(tensor([5], 311));
        const opt = new Momentum([w, u], 0.05, 0.9, 0.01, [true, false]); // decay on w only
        for (let step = 0; step < 5; step++) {
          const [gw, gu] = tf.tidy(() => [tf.mul(tf.sub(w, tensor([7, 5], 312 + step)), 2), tf.neg(u)]);
          opt.apply([gw, gu]);
          tf.dispose([gw, gu]);
        }
        results.push([
          w.dataSync() as Float32Array,
          u.dataSync() as Float32Array,
          opt.state()[0].dataSync() as Float32Array,
        ]);
        opt.dispose();
        tf.dispose([w, u]);
      }
      for (const [i, name] of ["w", "u", "velocity of w"].entries()) {
        const e = relErr(results[1][i], results[0][i]);
        assert.ok(e <= TOL, `native (${loops} loops) vs cpu momentum, ${name}: ${e}`);
      }
    });
  },
});

/** The constructor of the array a tensor's data is stored in on the current backend. */
function storedAs(t: tf.Tensor): string {
  return (tf.backend() as NativeBackend).data.get(t.dataId).values?.constructor.name ?? "nothing";
}

Deno.test({
  name: "native kernels read float32 tensors that hold bool or int32 data (what Cast to float32 leaves) as cpu does",
  ignore,
  fn: async () => {
    await setup();
    // Cast to float32 from bool or int32 only relabels the data (Uint8Array, Int32Array): dropout's
    // x.mul(keep.cast("float32")), crossEntropy's logits.mul(oneHot). Long enough for the compiled loops.
    const big = [4, 33, 17, 16];
    assert.ok(big.reduce((p, q) => p * q) >= COMPILED_BINARY_MIN);
    const mask = (shape: number[], seed: number) => tf.greaterEqual(tensor(shape, seed), -0.6).cast("float32");
    const ints = (shape: number[], seed: number) => tf.round(tensor(shape, seed, -3, 3)).cast("int32").cast("float32");
    await tf.setBackend(NATIVE_BACKEND);
    tf.tidy(() => {
      assert.equal(storedAs(mask([4], 1)), "Uint8Array", "a float32 cast of a bool tensor keeps its bytes");
      assert.equal(storedAs(ints([4], 1)), "Int32Array", "a float32 cast of an int32 tensor keeps its int32s");
    });
    for (const dnnl of [true, false]) {
      useDnnl(dnnl);
      await eachLoops(async (loops) => {
        const how = `(${loops} loops, oneDNN ${dnnl ? "on" : "off"})`;
        await assertSame(`arithmetic with cast masks and integers ${how}`, () => {
          const x = tensor(big, 500), m = mask(big, 501), k = ints(big, 502);
          const mc = mask([16], 503), kc = ints([16], 504);
          return [
            tf.mul(x, m),
            tf.mul(m, x),
            tf.div(tf.mul(x, m), 0.8),
            tf.add(x, k),
            tf.sub(k, x),
            tf.mul(k, m),
            tf.mul(x, mc),
            tf.add(kc, x),
            tf.div(x, tf.add(k, 10)),
          ];
        });
        await assertSame(`gradient through a cast dropout mask ${how}`, () => {
          const x = tensor(big, 510), m = mask(big, 511), r = tensor(big, 512);
          return tf.grad((a) => tf.sum(tf.mul(tf.mul(a, m), r)))(x);
        });
        await assertSame(`unary kernels and sums of cast tensors ${how}`, () => {
          const m = mask(big, 520), k = ints(big, 521);
          return [
            tf.relu(k),
            tf.relu(m),
            tf.step(k, 0.5),
            tf.neg(m),
            tf.sqrt(m),
            tf.leakyRelu(k, 0.1),
            tf.sum(k, [0, 1, 2]),
            tf.mean(m, [0, 1, 2]),
            tf.sum(k, -1),
            tf.where(tf.greater(tensor(big, 522), 0), m, k),
            tf.slice(k, [1, 2, 3, 4], [2, 20, 10, 9]),
            tf.pad(m, [[0, 0], [1, 2], [0, 1], [0, 0]], 0.5),
          ];
        });
        await assertSame(`pooling, convolutions and products of cast tensors ${how}`, () => {
          const m = mask(big, 530) as tf.Tensor4D, k = ints(big, 531) as tf.Tensor4D;
          return [
            tf.maxPool(k, 2, 2, "valid"),
            tf.avgPool(m, 3, 2, "same"),
            tf.grad((a) => tf.sum(tf.maxPool(a as tf.Tensor4D, 2, 2, "valid")))(k),
            tf.conv2d(m, tensor([3, 3, 16, 8], 532) as tf.Tensor4D, 1, "same"),
            tf.conv2d(tensor([2, 28, 28, 1], 533) as tf.Tensor4D, ints([8, 8, 1, 64], 534) as tf.Tensor4D, 2, "same"),
            tf.fused.conv2d({
              x: k,
              filter: tensor([5, 5, 16, 4], 535) as tf.Tensor4D,
              strides: 1,
              pad: "valid",
              bias: mask([4], 536),
              activation: "relu",
            }),
            tf.matMul(ints([64, 40], 537), mask([40, 33], 538)),
            tf.mul(
              tensor([4000, 10], 539),
              tf.oneHot(tf.tensor1d(Array.from({ length: 4000 }, (_, i) => i % 10), "int32"), 10),
            ),
          ];
        });
      });
    }
    useDnnl(true);
  },
});

/**
 * One training-mode step of a fresh model B(0) on the current backend: the taped and untaped losses and the
 * gradients of the weights `pick` keeps (by index, as trainableWeights lists them).
 */
function modelBStep(
  x: tf.Tensor,
  y: tf.Tensor1D,
  pick: (w: { shape: unknown[] }) => boolean,
): { loss: number; untaped: number; grads: Map<number, Float32Array> } {
  const model = modelB(0);
  const weights = model.trainableWeights.map((w, i) => [i, w] as const).filter(([, w]) => pick(w));
  const vars = weights.map(([, w]) => w.read() as tf.Variable);
  const loss = (logits: tf.Tensor) => sparseCrossEntropy(logits as tf.Tensor2D, y).mean() as tf.Scalar;
  const { value, grads } = tf.variableGrads(() => loss(model.apply(x, { training: true }) as tf.Tensor), vars);
  const untaped = tf.tidy(() => loss(model.apply(x, { training: true }) as tf.Tensor).dataSync()[0]);
  const out = {
    loss: value.dataSync()[0],
    untaped,
    grads: new Map(weights.map(([i], j) => [i, grads[vars[j].name].dataSync() as Float32Array])),
  };
  tf.dispose([value, ...Object.values(grads)]);
  model.dispose();
  return out;
}

Deno.test({
  name: "native model B (dropout on the input) training-mode loss and gradients equal cpu at batch 64",
  ignore,
  fn: async () => {
    await setup();
    // Batch 64: the input dropout's product (64·784 values) goes through the compiled loop.
    assert.ok(64 * 28 * 28 >= COMPILED_BINARY_MIN);
    const x = tensor([64, 28, 28, 1], 600, 0, 1);
    const y = tf.tensor1d(Array.from({ length: 64 }, (_, i) => i % 10), "int32");
    // The cpu backend takes minutes for the convolution kernels' gradients at this batch (its
    // Conv2DBackpropFilter), so it gives the losses and the gradients of the biases and the dense kernel
    // (which need none); the convolution kernels' gradients are checked against the native backend's
    // TypeScript loops and im2col + BLAS, which equal cpu's kernel by kernel above.
    const cheap = (w: { shape: unknown[] }) => w.shape.length < 4;
    await tf.setBackend("cpu");
    const ref = modelBStep(x, y, cheap);
    await tf.setBackend(NATIVE_BACKEND);
    const got = modelBStep(x, y, () => true);
    useDnnl(false);
    useCompiledLoops(false);
    let plain: typeof got;
    try {
      plain = modelBStep(x, y, () => true);
    } finally {
      useCompiledLoops(true);
      useDnnl(true);
    }
    assert.ok(Number.isFinite(ref.loss) && ref.loss > 0, `cpu loss ${ref.loss}`);
    assert.ok(
      relError([got.loss, got.untaped], [ref.loss, ref.untaped]) <= TOL,
      `native losses ${got.loss}, ${got.untaped} vs cpu ${ref.loss}, ${ref.untaped}`,
    );
    assert.equal(got.grads.size, 8);
    assert.equal(ref.grads.size, 5); // three conv biases, the dense kernel and bias
    for (const [i, g] of got.grads) {
      const [against, r] = ref.grads.has(i) ? ["cpu", ref.grads.get(i)!] : ["TypeScript loops", plain.grads.get(i)!];
      const e = relError(g, r);
      assert.ok(e <= 1e-3, `gradient of weight ${i}: relative error ${e} against ${against}`);
    }
    tf.dispose([x, y]);
  },
});
