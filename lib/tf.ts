/**
 * The one place that imports TensorFlow.js, so every module shares a single
 * engine (core, layers and the reference `cpu` backend).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as tfl from "@tensorflow/tfjs-layers";

export { tf, tfl };
