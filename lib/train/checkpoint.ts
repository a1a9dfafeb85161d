/**
 * Checkpoints in the standard TF.js layers format (`model.json` + `weights.bin`,
 * readable by `tf.loadLayersModel`), plus the optimiser state and the training
 * state needed to resume. A checkpoint is written whole into a temporary
 * folder, renamed to `ckpt-<step>`, and becomes current only when the `latest`
 * pointer is renamed into place, so a run killed at any moment (or a full disk)
 * leaves the previous checkpoint intact.
 *
 * state.json records the SHA-256 of every other file of the checkpoint and a
 * checksum of its own other fields; loading checks them, checks the training
 * state against itself and the config, and checks the weights are finite.
 * Checkpoints written before checksums were recorded are accepted on the other
 * checks. When `latest` is missing, the newest checkpoint that verifies is used.
 *
 * @module
 */
import { tf, tfl } from "../core/tf.ts";
import { UserError } from "../core/errors.ts";
import { stableStringify } from "../core/hash.ts";
import { writeFileAtomic } from "../core/fs.ts";

/** Hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The two files of a TF.js layers model, in memory. */
async function modelFiles(model: tfl.LayersModel): Promise<{ json: string; weights: Uint8Array }> {
  let files: { json: string; weights: Uint8Array } | undefined;
  await model.save(tf.io.withSaveHandler((artifacts) => {
    const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData!));
    const json = JSON.stringify({
      format: "layers-model",
      generatedBy: `TensorFlow.js tfjs-layers v${tfl.version_layers}`,
      convertedBy: null,
      modelTopology: artifacts.modelTopology,
      weightsManifest: [{ paths: ["weights.bin"], weights: artifacts.weightSpecs }],
    });
    files = { json, weights };
    return Promise.resolve({ modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } });
  }));
  return files!;
}

/** Saves `model` as `dir/model.json` + `dir/weights.bin` (atomically per file; weights first). */
export async function saveModel(model: tfl.LayersModel, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const { json, weights } = await modelFiles(model);
  await writeFileAtomic(`${dir}/weights.bin`, weights);
  await writeFileAtomic(`${dir}/model.json`, json);
}

/** How many of `values` are NaN or ±Infinity. */
function nonFinite(values: Float32Array): number {
  let bad = 0;
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) bad++;
  return bad;
}

/** Builds a model from the text of model.json and the bytes of its weights file, checking sizes and finiteness. */
async function modelFromFiles(what: string, text: string, weights: Uint8Array): Promise<tfl.LayersModel> {
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${what}: cannot read model.json (${(e as Error).message})`);
  }
  const manifest = json?.weightsManifest?.[0];
  if (!json?.modelTopology || !manifest?.weights) {
    throw new UserError(`${what}: model.json is not a TF.js layers model (no modelTopology or weightsManifest)`);
  }
  const file = manifest.paths[0];
  const specs = manifest.weights as tf.io.WeightsManifestEntry[];
  const sizes = specs.map((w) => w.shape.reduce((a, b) => a * b, 1));
  const expected = 4 * sizes.reduce((a, b) => a + b, 0);
  if (weights.length !== expected) {
    throw new UserError(`${what}: ${file} has ${weights.length} bytes, model.json describes ${expected}`);
  }
  const buffer = weights.slice().buffer;
  let off = 0;
  for (const [i, w] of specs.entries()) {
    if ((w.dtype ?? "float32") === "float32") {
      const bad = nonFinite(new Float32Array(buffer, off, sizes[i]));
      if (bad) {
        throw new UserError(
          `${what}: ${file} is not finite: ${bad} of the ${sizes[i]} values of ${w.name} are NaN or ±Infinity`,
        );
      }
    }
    off += 4 * sizes[i];
  }
  return await tfl.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: buffer,
  }));
}

/** Reads `path`, or throws a {@link UserError} from `what` that names the file. */
async function readOrRefuse(what: string, path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new UserError(`${what}: cannot read ${path.slice(path.lastIndexOf("/") + 1)} (${(e as Error).message})`);
  }
}

/**
 * Loads a model saved by {@link saveModel} (or any TF.js layers model folder with
 * one weights file). A missing, truncated or corrupt file, or weights that are
 * not finite, is a {@link UserError} that names it; nothing is deleted.
 */
export async function loadModel(dir: string): Promise<tfl.LayersModel> {
  const what = `checkpoint ${dir}`;
  const text = new TextDecoder().decode(await readOrRefuse(what, `${dir}/model.json`));
  let file = "weights.bin";
  try {
    file = JSON.parse(text)?.weightsManifest?.[0]?.paths?.[0] ?? file;
  } catch { /* modelFromFiles says what is wrong */ }
  return await modelFromFiles(what, text, await readOrRefuse(what, `${dir}/${file}`));
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

/** The folder name of the checkpoint at `step`: `ckpt-0000300`. */
function checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(7, "0")}`;
}

const CHECKPOINT_NAME = /^ckpt-(\d+)$/;

/** The checksum of a state.json's fields other than `checksum`: SHA-256 of their stable JSON. */
async function stateChecksum(state: Record<string, unknown>): Promise<string> {
  const { checksum: _, ...rest } = state;
  return await sha256Hex(new TextEncoder().encode(stableStringify(rest)));
}

/** True for a full disk or an exceeded quota. */
function isNoSpace(e: unknown): boolean {
  const code = (e as { code?: string })?.code;
  return code === "ENOSPC" || code === "EDQUOT" || /os error (28|122)\)/.test(String((e as Error)?.message));
}

/** `bytes` as `31.2 KiB`, `4.0 MiB`, `1.3 GiB`. */
function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

/** The name `dir/latest` holds, or null when there is no such file. */
async function latestName(dir: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(`${dir}/latest`)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Writes a checkpoint `dir/ckpt-<step>/` (model, optimiser state tensors,
 * state.json with the SHA-256 of each other file), then points `dir/latest` at
 * it and removes the checkpoints it supersedes. A full disk is a
 * {@link UserError} that says how many bytes the checkpoint needs and where;
 * the temporary files are removed and the previous checkpoint stays current.
 */
export async function saveCheckpoint(
  dir: string,
  model: tfl.LayersModel,
  optimizerState: tf.Tensor[],
  state: TrainState,
): Promise<string> {
  const name = checkpointName(state.step);
  const { json, weights } = await modelFiles(model);
  const parts = await Promise.all(optimizerState.map((t) => t.data()));
  const flat = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    flat.set(p as Float32Array, off);
    off += p.length;
  }
  const files: Record<string, Uint8Array> = {
    "weights.bin": weights,
    "model.json": new TextEncoder().encode(json),
    "optimizer.bin": new Uint8Array(flat.buffer),
  };
  const sums: Record<string, string> = {};
  for (const [file, bytes] of Object.entries(files)) sums[file] = await sha256Hex(bytes);
  // The state as it will read back (JSON drops undefined fields), so that its checksum verifies.
  const full = JSON.parse(
    JSON.stringify({ ...state, optimizerShapes: optimizerState.map((t) => t.shape), files: sums }),
  );
  full.checksum = await stateChecksum(full);
  files["state.json"] = new TextEncoder().encode(JSON.stringify(full));
  const bytes = Object.values(files).reduce((s, b) => s + b.length, 0);

  const tmp = `${dir}/${name}.${Deno.pid}.tmp`;
  let renamed = false;
  try {
    await Deno.mkdir(tmp, { recursive: true });
    for (const [file, b] of Object.entries(files)) await Deno.writeFile(`${tmp}/${file}`, b);
    await Deno.remove(`${dir}/${name}`, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, `${dir}/${name}`);
    renamed = true;
    await writeFileAtomic(`${dir}/latest`, name);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    const previous = await latestName(dir).catch(() => null);
    if (renamed && previous !== name) await Deno.remove(`${dir}/${name}`, { recursive: true }).catch(() => {});
    if (!isNoSpace(e)) throw e;
    const kept = previous ? `${dir}/${previous} is still the latest checkpoint` : "there is no earlier checkpoint";
    throw new UserError(
      `no space left for checkpoint ${dir}/${name}: it needs ${formatBytes(bytes)} (${bytes} bytes) free in ${dir}; ` +
        `free some space there or use another --cache-dir (${kept})`,
    );
  }
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
  state: TrainState & { optimizerShapes: number[][] };
}

/** How to get past a bad checkpoint at `path`. */
function recovery(path: string): string {
  return `run again with --retrain to train from scratch, or delete ${path} (it is left in place)`;
}

/** The names of the `ckpt-<step>` folders in `dir`, newest step first (none when `dir` does not exist). */
async function checkpointFolders(dir: string): Promise<string[]> {
  const found: [number, string][] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = CHECKPOINT_NAME.exec(e.name);
      if (e.isDirectory && m) found.push([Number(m[1]), e.name]);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found.sort((a, b) => b[0] - a[0]).map(([, n]) => n);
}

/** The checkpoint folder `dir/latest` names, when that folder exists; otherwise null. */
async function latestFolder(dir: string): Promise<string | null> {
  const name = await latestName(dir);
  if (name === null || !CHECKPOINT_NAME.test(name)) return null;
  try {
    return (await Deno.stat(`${dir}/${name}`)).isDirectory ? name : null;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Reads and parses `path/state.json`, or throws a {@link UserError}. */
async function readState(path: string): Promise<Record<string, unknown>> {
  try {
    const state = JSON.parse(await Deno.readTextFile(`${path}/state.json`));
    if (state && typeof state === "object" && !Array.isArray(state)) return state;
    throw new Error(`expected an object, got ${JSON.stringify(state)?.slice(0, 40)}`);
  } catch (e) {
    throw new UserError(
      `corrupt checkpoint ${path}: state.json unreadable (${(e as Error).message}); ${recovery(path)}`,
    );
  }
}

/**
 * The path and training state (state.json) of the checkpoint `dir/latest`
 * points to or, when `latest` is missing or names no folder, of the newest
 * `ckpt-<step>` folder with a readable state.json; null when there is none. An
 * unreadable state.json of the `latest` one is a {@link UserError}. Reads
 * nothing else and checks nothing else.
 */
export async function readLatestState(
  dir: string,
): Promise<{ path: string; state: TrainState & { optimizerShapes: number[][] } } | null> {
  const latest = await latestFolder(dir);
  if (latest !== null) {
    return { path: `${dir}/${latest}`, state: await readState(`${dir}/${latest}`) as Checkpoint["state"] };
  }
  for (const name of await checkpointFolders(dir)) {
    try {
      return { path: `${dir}/${name}`, state: await readState(`${dir}/${name}`) as Checkpoint["state"] };
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
    }
  }
  return null;
}

/**
 * Checks the fields of a checkpoint's state.json against themselves and the
 * config: what the trainer needs to resume, consistent with `step`. Throws a
 * {@link UserError} that names the checkpoint and the field.
 */
function checkState(
  path: string,
  s: Record<string, unknown>,
  configHash: string,
  steps?: number,
): asserts s is Checkpoint["state"] {
  const bad = (what: string) => new UserError(`corrupt checkpoint ${path}: state.json ${what}; ${recovery(path)}`);
  if (s.configHash !== configHash) {
    throw new UserError(
      `checkpoint ${path} was made by config ${s.configHash}, expected ${configHash}; ${recovery(path)}`,
    );
  }
  const step = s.step as number;
  const range = steps === undefined ? "an integer ≥ 0" : `an integer in [0, ${steps}]`;
  if (!Number.isInteger(step) || step < 0 || (steps !== undefined && step > steps)) {
    throw bad(`has step ${JSON.stringify(s.step)}, expected ${range}`);
  }
  const done = steps === undefined ? typeof s.done === "boolean" : s.done === step >= steps;
  if (!done) {
    const want = steps === undefined ? "true or false" : `${step >= steps} (step ${step} of ${steps})`;
    throw bad(`has done ${JSON.stringify(s.done)}, expected ${want}`);
  }
  const history = s.history as Record<string, unknown> | undefined;
  if (!history || typeof history !== "object") {
    throw bad(`has no history, expected the loss and accuracy of ${step} steps`);
  }
  for (const key of ["loss", "accuracy"]) {
    const h = history[key];
    if (!Array.isArray(h)) throw bad(`has no history.${key}, expected ${step} numbers`);
    if (h.length !== step) throw bad(`has ${h.length} entries in history.${key}, expected ${step} (one per step)`);
    const i = h.findIndex((v) => typeof v !== "number" || !Number.isFinite(v));
    if (i >= 0) throw bad(`has history.${key}[${i}] = ${JSON.stringify(h[i])}, expected a finite number`);
  }
  const shapes = s.optimizerShapes;
  if (
    !Array.isArray(shapes) ||
    !shapes.every((sh) => Array.isArray(sh) && sh.every((d) => Number.isInteger(d) && d >= 0))
  ) {
    throw bad("has no valid optimizerShapes, expected a list of tensor shapes");
  }
  for (const key of ["rngState", "trainSeconds"]) {
    if (key in s && !(typeof s[key] === "number" && Number.isFinite(s[key]))) {
      throw bad(`has ${key} ${JSON.stringify(s[key])}, expected a finite number`);
    }
  }
}

/**
 * Reads and verifies the checkpoint folder `path`: state.json's fields, its
 * checksum and the SHA-256 of each file it lists (when recorded: older
 * checkpoints have none), finite weights and optimiser state. Throws a
 * {@link UserError} naming the checkpoint and what is wrong.
 */
async function readCheckpoint(path: string, configHash: string, steps?: number): Promise<Checkpoint> {
  const state = await readState(path);
  checkState(path, state, configHash, steps);
  const bad = (what: string) => new UserError(`corrupt checkpoint ${path}: ${what}; ${recovery(path)}`);
  if ("checksum" in state && state.checksum !== await stateChecksum(state)) {
    throw bad("state.json does not match its checksum (edited or corrupt)");
  }
  const what = `corrupt checkpoint ${path}`;
  const read: Record<string, Uint8Array> = {};
  const sums = (state.files ?? {}) as Record<string, string>;
  for (const [file, sum] of Object.entries(sums)) {
    if (!/^\w[\w.-]*$/.test(file)) throw bad(`state.json lists a file "${file}" outside the checkpoint`);
    try {
      read[file] = await Deno.readFile(`${path}/${file}`);
    } catch (e) {
      throw bad(`cannot read ${file} (${(e as Error).message})`);
    }
    if (await sha256Hex(read[file]) !== sum) {
      throw bad(`${file} does not match the SHA-256 recorded in state.json (changed or corrupt)`);
    }
  }
  const load = async (file: string) => read[file] ?? await readOrRefuse(what, `${path}/${file}`);
  let model: tfl.LayersModel;
  try {
    model = await modelFromFiles(what, new TextDecoder().decode(await load("model.json")), await load("weights.bin"));
  } catch (e) {
    const message = e instanceof UserError ? e.message : `${what}: ${(e as Error).message}`;
    throw new UserError(`${message}; ${recovery(path)}`);
  }
  const bytes = await load("optimizer.bin").catch(() => new Uint8Array(0));
  const sizes = state.optimizerShapes.map((s) => s.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const flat = bytes.length === 4 * total ? new Float32Array(bytes.slice().buffer) : null;
  const problem = !flat
    ? `optimizer.bin has ${bytes.length} bytes, expected ${4 * total}`
    : nonFinite(flat)
    ? `optimizer.bin is not finite: ${nonFinite(flat)} of its ${total} values are NaN or ±Infinity`
    : null;
  if (problem) {
    model.dispose();
    throw bad(problem);
  }
  const optimizerState: Float32Array[] = [];
  let off = 0;
  for (const s of sizes) {
    optimizerState.push(flat!.slice(off, off + s));
    off += s;
  }
  return { path, model, optimizerState, state };
}

/**
 * Reads and verifies the checkpoint `dir/latest` points to (see the module
 * doc), or returns null when there is none. When `latest` is missing or names
 * no folder, the newest `ckpt-<step>` folder that verifies is used and `latest`
 * is written again to point at it; folders that do not verify are skipped and
 * left in place. `steps`, the config's training steps, bounds the recorded step
 * and decides `done`. A corrupt checkpoint, or one made by another config, is a
 * {@link UserError} that names it and says how to recover; its files are left
 * in place.
 */
export async function loadCheckpoint(dir: string, configHash: string, steps?: number): Promise<Checkpoint | null> {
  const latest = await latestFolder(dir);
  if (latest !== null) return await readCheckpoint(`${dir}/${latest}`, configHash, steps);
  for (const name of await checkpointFolders(dir)) {
    let ckpt: Checkpoint;
    try {
      ckpt = await readCheckpoint(`${dir}/${name}`, configHash, steps);
    } catch (e) {
      if (e instanceof UserError) continue;
      throw e;
    }
    await writeFileAtomic(`${dir}/latest`, name).catch(() => {}); // a read-only cache stays as it is
    return ckpt;
  }
  return null;
}
