/**
 * The one place that imports TensorFlow.js, so every module shares a single
 * engine (core, layers and the reference `cpu` backend).
 *
 * `@tensorflow/tfjs-core`'s Node bundle, which Deno loads, registers neither
 * the gradient functions nor the chained tensor methods (`x.add(y)`); the union
 * package `@tensorflow/tfjs` registers both on the shared global registries, so
 * it is imported here for that side effect. Its other backends stay unused.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs";
import * as tfl from "@tensorflow/tfjs-layers";

// Production mode: silences the "install tfjs-node" notice, which does not apply to Deno.
tf.env().set("PROD", true);

export { tf, tfl };
