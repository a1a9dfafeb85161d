/**
 * Model A on the `webgpu` backend against the reference `cpu` backend.
 * Skipped where no WebGPU adapter exists. On a software adapter (lavapipe)
 * this takes a few seconds.
 *
 *   deno test --allow-read tests/webgpu_test.ts
 *
 * @module
 */
import { relError } from "./assert.ts";
import assert from "node:assert/strict";
import { tf } from "../lib/core/tf.ts";
import { mnistNet, MODEL_A } from "../lib/nn/mnist_net.ts";
import { registerWebgpuBackend, webgpuAdapterInfo } from "../lib/backends/webgpu/mod.ts";

const adapter = await webgpuAdapterInfo();

Deno.test("webgpuAdapterInfo never throws and is consistent", async () => {
  const info = await webgpuAdapterInfo();
  assert.equal(typeof info.available, "boolean");
  assert.equal(typeof info.fallback, "boolean");
  assert.ok(info.description.length > 0);
  if (!info.available) assert.equal(info.fallback, false);
});

Deno.test({
  name: `model A logits and input gradients on webgpu match cpu (${adapter.description})`,
  ignore: !adapter.available,
  // The adapter's device and pipeline caches outlive the test.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await registerWebgpuBackend();
    const model = mnistNet(MODEL_A, 5);
    const x = tf.randomUniform([4, 28, 28, 1], 0, 1, "float32", 21);
    const y = tf.oneHot(tf.tensor1d([1, 4, 7, 9], "int32"), 10);
    const loss = (input: tf.Tensor) =>
      tf.losses.softmaxCrossEntropy(
        y,
        model.apply(input) as tf.Tensor,
        undefined,
        undefined,
        tf.Reduction.SUM,
      ) as tf.Scalar;
    const run = async (backend: string) => {
      assert.ok(
        await tf.setBackend(backend),
        `backend ${backend} failed to initialise`,
      );
      const [logits, dx] = tf.tidy(
        () => [model.apply(x) as tf.Tensor, tf.grad(loss)(x)],
      );
      // Asynchronous reads: WebGPU's synchronous path needs a canvas.
      const out = [
        await logits.data() as Float32Array,
        await dx.data() as Float32Array,
      ];
      tf.dispose([logits, dx]);
      return out;
    };
    const previous = tf.getBackend();
    try {
      // cpu first: moving tensors off webgpu reads them synchronously, which fails.
      const [cpuLogits, cpuDx] = await run("cpu");
      const [gpuLogits, gpuDx] = await run("webgpu");
      const logitsErr = relError(gpuLogits, cpuLogits);
      const dxErr = relError(gpuDx, cpuDx);
      assert.ok(logitsErr <= 1e-3, `logits rel error ${logitsErr}`);
      assert.ok(dxErr <= 1e-3, `input gradient rel error ${dxErr}`);
    } finally {
      await tf.setBackend(previous);
      model.dispose();
      tf.dispose([x, y]);
    }
  },
});
