/**
 * lib/nn/_layers.ts: Conv2D and Dense through the plain ops give TF.js's outputs and
 * gradients, skip the weight gradients when only the input's is asked for, and
 * come back as themselves from a saved model.
 */
import assert from "node:assert/strict";
import { conv2d, dense, LeanConv2D, LeanDense } from "../lib/nn/_layers.ts";
import { tf, tfl } from "../lib/core/tf.ts";
import { relError } from "./assert.ts";

await tf.setBackend("cpu");

function twins() {
  const make = (lean: boolean) => {
    // No activation, as in the ResNet: TF.js then keeps its fused op (and its all-at-once gradient) even under a tape.
    const c = { filters: 4, kernelSize: 3, strides: 2, padding: "same" as const };
    const d = { units: 5, activation: "relu" as const };
    return tfl.sequential({
      layers: [
        lean ? conv2d({ ...c, inputShape: [7, 6, 3] }) : tfl.layers.conv2d({ ...c, inputShape: [7, 6, 3] }),
        tfl.layers.flatten(),
        lean ? dense(d) : tfl.layers.dense(d),
        lean ? dense({ units: 3 }) : tfl.layers.dense({ units: 3 }),
      ],
    });
  };
  const ours = make(true), theirs = make(false);
  theirs.setWeights(ours.getWeights());
  return { ours, theirs };
}

Deno.test("lean Conv2D and Dense: same outputs and gradients as TF.js's layers", () => {
  const { ours, theirs } = twins();
  const x = tf.randomNormal([2, 7, 6, 3], 0, 1, "float32", 1);
  const loss = (m: tfl.LayersModel) => (xs: tf.Tensor) => tf.sum(tf.square(m.apply(xs) as tf.Tensor));
  const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
    const e = relError(a.dataSync() as Float32Array, b.dataSync() as Float32Array);
    assert.ok(e < 1e-5, `${what}: relative error ${e}`);
  };
  close(ours.apply(x) as tf.Tensor, theirs.apply(x) as tf.Tensor, "outputs");
  close(tf.grad(loss(ours))(x), tf.grad(loss(theirs))(x), "input gradients");
  const varsOf = (m: tfl.LayersModel) => m.trainableWeights.map((w) => w.read() as tf.Variable);
  const g1 = tf.variableGrads(() => loss(ours)(x) as tf.Scalar, varsOf(ours)).grads;
  const g2 = tf.variableGrads(() => loss(theirs)(x) as tf.Scalar, varsOf(theirs)).grads;
  varsOf(ours).forEach((v, i) => close(g1[v.name], g2[varsOf(theirs)[i].name], `gradient of ${v.name}`));
});

Deno.test("lean Conv2D: the input gradient computes no filter gradient (TF.js's fused layer does)", async () => {
  const { ours, theirs } = twins();
  const x = tf.randomNormal([2, 7, 6, 3], 0, 1, "float32", 2);
  const kernelsOf = async (m: tfl.LayersModel) =>
    (await tf.profile(() => tf.grad((xs: tf.Tensor) => tf.sum(m.apply(xs) as tf.Tensor))(x))).kernelNames;
  assert.ok((await kernelsOf(theirs)).includes("Conv2DBackpropFilter"), "TF.js's Conv2D computes it");
  assert.ok(!(await kernelsOf(ours)).includes("Conv2DBackpropFilter"), "ours does not");
});

Deno.test("lean layers: saved as Conv2D / Dense, loaded back as the lean classes with the same weights", async () => {
  const { ours } = twins();
  let saved: tf.io.ModelArtifacts | undefined;
  await ours.save(tf.io.withSaveHandler((a) => {
    saved = a;
    return Promise.resolve({ modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } });
  }));
  const names = JSON.stringify(saved!.modelTopology).match(/"class_name":"(Conv2D|Dense)"/g) ?? [];
  assert.equal(names.length, 3, "topology names the standard classes");
  const back = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
  assert.ok(back.layers[0] instanceof LeanConv2D);
  assert.ok(back.layers[2] instanceof LeanDense && back.layers[3] instanceof LeanDense);
  const x = tf.randomNormal([1, 7, 6, 3], 0, 1, "float32", 3);
  assert.deepEqual((back.apply(x) as tf.Tensor).dataSync(), (ours.apply(x) as tf.Tensor).dataSync());
});
