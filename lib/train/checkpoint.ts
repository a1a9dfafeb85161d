/**
 * Checkpoints in the standard TF.js layers format (`model.json` + `weights.bin`,
 * readable by `tf.loadLayersModel`), plus the optimiser state and the training
 * state needed to resume. Every file is written to a temporary name first and
 * renamed, and a checkpoint becomes current only when the `latest` pointer is
 * renamed into place, so a run killed at any moment leaves the previous
 * checkpoint intact.
 *
 * @module
 */
import { tf, tfl } from "../core/tf.ts";
import { UserError } from "../core/errors.ts";

/** Writes `bytes` to `path` atomically (temporary file, then rename). */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  if (typeof bytes === "string") await Deno.writeTextFile(tmp, bytes);
  else await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}

/** Saves `model` as `dir/model.json` + `dir/weights.bin` (atomically per file; weights first). */
export async function saveModel(model: tfl.LayersModel, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData!));
    await writeFileAtomic(`${dir}/weights.bin`, weights);
    const json = {
      format: "layers-model",
      generatedBy: `TensorFlow.js tfjs-layers v${tfl.version_layers}`,
      convertedBy: null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
    };
    await writeFileAtomic(`${dir}/model.json`, JSON.stringify(json));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
  }));
}

/**
 * Loads a model saved by {@link saveModel} (or any TF.js layers model folder with
 * one weights file). A missing, truncated or corrupt file is a {@link UserError}
 * that names it; nothing is deleted.
 */
export async function loadModel(dir: string): Promise<tfl.LayersModel> {
  const what = `checkpoint ${dir}`;
  let json;
  try {
    json = JSON.parse(await Deno.readTextFile(`${dir}/model.json`));
  } catch (e) {
    throw new UserError(`${what}: cannot read model.json (${(e as Error).message})`);
  }
  const manifest = json?.weightsManifest?.[0];
  if (!json?.modelTopology || !manifest?.weights) {
    throw new UserError(`${what}: model.json is not a TF.js layers model (no modelTopology or weightsManifest)`);
  }
  let weights: Uint8Array;
  try {
    weights = await Deno.readFile(`${dir}/${manifest.paths[0]}`);
  } catch (e) {
    throw new UserError(`${what}: cannot read ${manifest.paths[0]} (${(e as Error).message})`);
  }
  const expected = (manifest.weights as tf.io.WeightsManifestEntry[])
    .reduce((s, w) => s + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
  if (weights.length !== expected) {
    throw new UserError(`${what}: ${manifest.paths[0]} has ${weights.length} bytes, model.json describes ${expected}`);
  }
  return await tfl.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: manifest.weights,
    weightData: weights.slice().buffer,
  }));
}

/** Training state saved beside the weights of a checkpoint. */
export interface TrainState {
  /** Hash of the training config that produced the checkpoint. */
  configHash: string;
  /** Training steps done. */
  step: number;
  /** True when training reached its last step. */
  done: boolean;
  /** Anything else the trainer needs to resume (RNG state, loss history, ...). */
  [key: string]: unknown;
}

/**
 * Writes a checkpoint `dir/ckpt-<step>/` (model, optimiser state tensors,
 * state.json), then points `dir/latest` at it and removes older checkpoints.
 */
export async function saveCheckpoint(
  dir: string,
  model: tfl.LayersModel,
  optimizerState: tf.Tensor[],
  state: TrainState,
): Promise<string> {
  const name = `ckpt-${String(state.step).padStart(7, "0")}`;
  const tmp = `${dir}/${name}.${Deno.pid}.tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  await saveModel(model, tmp);
  const parts = await Promise.all(optimizerState.map((t) => t.data()));
  const total = parts.reduce((s, p) => s + p.length, 0);
  const flat = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    flat.set(p as Float32Array, off);
    off += p.length;
  }
  await Deno.writeFile(`${tmp}/optimizer.bin`, new Uint8Array(flat.buffer));
  const shapes = optimizerState.map((t) => t.shape);
  await Deno.writeTextFile(`${tmp}/state.json`, JSON.stringify({ ...state, optimizerShapes: shapes }));
  await Deno.remove(`${dir}/${name}`, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, `${dir}/${name}`);
  await writeFileAtomic(`${dir}/latest`, name);
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && e.name.startsWith("ckpt-") && e.name !== name) {
      await Deno.remove(`${dir}/${e.name}`, { recursive: true });
    }
  }
  return `${dir}/${name}`;
}

/** A checkpoint read back by {@link loadCheckpoint}. */
export interface Checkpoint {
  path: string;
  model: tfl.LayersModel;
  optimizerState: Float32Array[];
  state: TrainState;
}

const RETRAIN_HINT = "run again with --retrain to train from scratch (the checkpoint is left in place)";

/**
 * The path and training state (state.json) of the checkpoint `dir/latest`
 * points to, or null when there is none; an unreadable state.json is a
 * {@link UserError}. Reads nothing else.
 */
export async function readLatestState(
  dir: string,
): Promise<{ path: string; state: TrainState & { optimizerShapes: number[][] } } | null> {
  let name: string;
  try {
    name = (await Deno.readTextFile(`${dir}/latest`)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const path = `${dir}/${name}`;
  try {
    return { path, state: JSON.parse(await Deno.readTextFile(`${path}/state.json`)) };
  } catch (e) {
    throw new UserError(`corrupt checkpoint ${path}: state.json unreadable (${(e as Error).message}); ${RETRAIN_HINT}`);
  }
}

/**
 * Reads the checkpoint `dir/latest` points to, or returns null when there is
 * none. A corrupt checkpoint, or one made by another config, is a
 * {@link UserError} that says how to retrain; the files are left in place.
 */
export async function loadCheckpoint(dir: string, configHash: string): Promise<Checkpoint | null> {
  const latest = await readLatestState(dir);
  if (!latest) return null;
  const { path, state } = latest;
  if (state.configHash !== configHash) {
    throw new UserError(
      `checkpoint ${path} was made by config ${state.configHash}, expected ${configHash}; ${RETRAIN_HINT}`,
    );
  }
  let model: tfl.LayersModel;
  try {
    model = await loadModel(path);
  } catch (e) {
    throw new UserError(`corrupt ${(e as Error).message}; ${RETRAIN_HINT}`);
  }
  const bytes = await Deno.readFile(`${path}/optimizer.bin`).catch(() => new Uint8Array(0));
  const sizes = state.optimizerShapes.map((s) => s.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  if (bytes.length !== 4 * total) {
    model.dispose();
    throw new UserError(
      `corrupt checkpoint ${path}: optimizer.bin has ${bytes.length} bytes, expected ${4 * total}; ${RETRAIN_HINT}`,
    );
  }
  const flat = new Float32Array(bytes.slice().buffer);
  const optimizerState: Float32Array[] = [];
  let off = 0;
  for (const s of sizes) {
    optimizerState.push(flat.slice(off, off + s));
    off += s;
  }
  return { path, model, optimizerState, state };
}
