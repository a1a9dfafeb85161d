/**
 * An experiment end to end on the `webgpu` backend: Figure 1's CIFAR-10 smoke preset trains a ResNet
 * (augmentation, FGSM training, batch norm, momentum SGD: our WebGPU kernels) and attacks it with PGD, reading
 * every number asynchronously (a synchronous read throws on WebGPU in Deno). Skipped without an adapter.
 *
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import { presetConfig, runExperiment, tf, useBackend } from "../mod.ts";
import { experiment } from "../experiments/figure1.ts";
import { cifarFixture } from "./fixtures/cifar_data.ts";
import { gpuTest } from "./fixtures/webgpu.ts";

gpuTest("figure1 --dataset cifar10 smoke trains and attacks on webgpu", async () => {
  const previous = tf.getBackend();
  const cacheDir = await Deno.makeTempDir();
  try {
    const info = await useBackend("webgpu", { quiet: true, cacheDir });
    assert(info.detail.includes("our kernels: Conv2D"), info.detail);
    const config = presetConfig(experiment, "cifar10", "smoke");
    const data = { train: cifarFixture(64, 1), test: cifarFixture(16, 2) };
    const results = await runExperiment(experiment, config, { preset: "smoke", cacheDir, quiet: true, data });
    assertEquals(results.backend.name, "webgpu");
    for (const k of ["natural", "adversarial"] as const) {
      const a = results.models[k].accuracy;
      assert(a.natural >= 0 && a.natural <= 1 && a.pgd >= 0 && a.pgd <= a.natural, `${k}: ${JSON.stringify(a)}`);
    }
    for (const e of results.examples) assert(e.losses.adversarial.every(Number.isFinite));
  } finally {
    await tf.setBackend(previous);
    await Deno.remove(cacheDir, { recursive: true });
  }
});
