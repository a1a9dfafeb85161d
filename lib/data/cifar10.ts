/**
 * CIFAR-10 from the standard binary version (`cifar-10-batches-bin/`:
 * `data_batch_1..5.bin`, `test_batch.bin`), pixels as float32 in [0, 255],
 * images NHWC [n, 32, 32, 3].
 *
 * The folder is looked for in `--data-dir`, then `$CIFAR10_DIR`, then the cache
 * (`<cacheDir>/cifar10/cifar-10-batches-bin`, `cacheDir` defaulting to
 * `.cache`); with none of those the official archive is downloaded into the
 * cache, its size and md5 verified, and extracted. Where the network is not
 * reachable that fails within seconds with one message that says how to get
 * the data.
 *
 * Each file is checked against the SHA-256 of the official file the first time
 * it is read ({@link CIFAR10_SHA256}); the verdict is kept in
 * `<cacheDir>/cifar10/verified.json` by the file's path, size and modification
 * time, so later runs do not hash again. `verify: false` turns the check off for
 * data that is meant to differ.
 *
 * Every file-system error while finding or reading the data (a missing or
 * unreadable folder or file, a file where a folder is expected or the reverse)
 * is one {@link UserError} naming the path and what was expected.
 *
 * Permissions: `--allow-read` (the files), `--allow-env=CIFAR10_DIR` (else the
 * variable is treated as unset), `--allow-write` on the cache folder for the
 * verdicts (without it they are not kept, and each run hashes again) and for
 * the download, plus `--allow-net` for the download.
 *
 * @module
 */
import { type Dataset, fsUserError, readDataFile } from "./dataset.ts";
import { UserError } from "../core/errors.ts";
import { Md5 } from "./_md5.ts";
import { extractTar } from "./_tar.ts";

export { Md5 } from "./_md5.ts";
export { extractTar, readTar, type TarEntry } from "./_tar.ts";

/** Bytes of one record: 1 label byte + 3,072 pixel bytes (R plane, G plane, B plane). */
export const CIFAR10_RECORD_BYTES = 3073;
/** Records in each of the standard batch files. */
export const CIFAR10_FILE_RECORDS = 10000;
/** Files of each split, in order. */
export const CIFAR10_FILES = {
  train: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
  test: ["test_batch.bin"],
} as const;
/** The official archive of the binary version, its size in bytes and its md5. */
export const CIFAR10_ARCHIVE = {
  url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
  size: 170052171,
  md5: "c32a1d4ab5d03f1284b67883e8d87530",
} as const;
/**
 * SHA-256 of each official file, by name: computed from a copy whose md5s equal
 * those of the members of the official archive ({@link CIFAR10_ARCHIVE}), as
 * `md5sum *.bin` shows them on an extracted copy:
 *
 *   5dd7e06a14cb22eb9f671a540d1b7c25  data_batch_1.bin
 *   5ea93a67294ea407fff1d09f752e9692  data_batch_2.bin
 *   942cd6a4bcdd0dd3c604fbe906cb4421  data_batch_3.bin
 *   ae636b3ba5c66a11e91e8cb52e771fcb  data_batch_4.bin
 *   53f37980c15c3d472c316c40844f3f0d  data_batch_5.bin
 *   803d5f7f4d78ea53de84dbe85f74fb6d  test_batch.bin
 */
export const CIFAR10_SHA256: Readonly<Record<string, string>> = {
  "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
  "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
  "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
  "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
  "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
  "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
};

/** Class names, by label. */
export const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
] as const;

const PIXELS = 1024;
const ALL_FILES = [...CIFAR10_FILES.test, ...CIFAR10_FILES.train];

/** Options of {@link parseCifarBatch}. */
export interface ParseOptions {
  /** Records the file must hold (default 10,000, the standard files); "any" accepts any whole number of records. */
  records?: number | "any";
  /** Convert only the first `limit` records (the whole file is still size-checked). */
  limit?: number;
}

/**
 * Parses one CIFAR-10 binary batch file: records of 1 label byte and 3,072
 * pixel bytes (1,024 red, 1,024 green, 1,024 blue, each plane row-major 32×32).
 * Returns images NHWC [n, 32, 32, 3] as float32 in [0, 255] (planes
 * interleaved into channels) and labels 0..9. A file of the wrong size or with
 * a label above 9 is a {@link UserError} naming `name`.
 */
export function parseCifarBatch(
  bytes: Uint8Array,
  name: string,
  options: ParseOptions = {},
): { images: Float32Array; labels: Int32Array; n: number } {
  const records = options.records ?? CIFAR10_FILE_RECORDS;
  if (records === "any") {
    if (bytes.length % CIFAR10_RECORD_BYTES !== 0) {
      throw new UserError(
        `${name}: expected a multiple of ${CIFAR10_RECORD_BYTES} bytes (records of 1 label + 3072 pixel bytes), ` +
          `found ${bytes.length} (truncated or corrupt file)`,
      );
    }
  } else if (bytes.length !== records * CIFAR10_RECORD_BYTES) {
    throw new UserError(
      `${name}: expected ${records * CIFAR10_RECORD_BYTES} bytes (${records} records of ${CIFAR10_RECORD_BYTES}), ` +
        `found ${bytes.length} (truncated or corrupt file)`,
    );
  }
  const total = bytes.length / CIFAR10_RECORD_BYTES;
  const n = Math.min(options.limit ?? total, total);
  const images = new Float32Array(n * 3 * PIXELS);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * CIFAR10_RECORD_BYTES;
    const label = bytes[at];
    if (label > 9) throw new UserError(`${name}: record ${i} has label ${label}, expected 0..9 (corrupt file)`);
    labels[i] = label;
    const out = i * 3 * PIXELS;
    for (let p = 0; p < PIXELS; p++) {
      images[out + 3 * p] = bytes[at + 1 + p];
      images[out + 3 * p + 1] = bytes[at + 1 + PIXELS + p];
      images[out + 3 * p + 2] = bytes[at + 1 + 2 * PIXELS + p];
    }
  }
  return { images, labels, n };
}

/** Options of {@link findCifar10Dir} and {@link loadCifar10}. */
export interface Cifar10DirOptions {
  /** Cache folder (default `.cache`); the data lives in `<cacheDir>/cifar10/cifar-10-batches-bin`. */
  cacheDir?: string;
  /** Try the download when no folder is found (default true). */
  download?: boolean;
  /** The archive to download (default {@link CIFAR10_ARCHIVE}; tests point it at a local server). */
  archive?: { url: string; size: number; md5: string };
  /** Seconds to wait for the server to answer before giving up (default 5). */
  timeoutSeconds?: number;
}

/** Where the loader keeps a downloaded copy: `<cacheDir>/cifar10/cifar-10-batches-bin`. */
export function cifar10CacheDir(cacheDir = ".cache"): string {
  return `${cacheDir}/cifar10/cifar-10-batches-bin`;
}

/**
 * What is wrong with `dir` as a cifar-10-batches-bin folder: "absent" when
 * nothing is at that path, else the problems found (none: every file is there
 * and is a file). A path that is a file, or a folder that cannot be read, is a
 * {@link UserError} naming `what` and `dir`.
 */
async function folderProblems(dir: string, what: string): Promise<string[] | "absent"> {
  const expected = "a readable cifar-10-batches-bin folder (holding test_batch.bin and data_batch_1..5.bin)";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "absent";
    throw fsUserError(`${what} ${dir}`, expected, e);
  }
  if (!info.isDirectory) throw new UserError(`${what} ${dir}: expected ${expected}, found a file`);
  const missing: string[] = [], notFiles: string[] = [];
  for (const f of ALL_FILES) {
    try {
      const file = await Deno.stat(`${dir}/${f}`);
      if (!file.isFile) {
        notFiles.push(`${f} is ${file.isDirectory ? "a folder" : "not a regular file"}, expected a file`);
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) missing.push(f);
      else throw fsUserError(`${what} ${dir}`, expected, e);
    }
  }
  return [...(missing.length ? [`missing ${missing.join(", ")}`] : []), ...notFiles];
}

function envDir(): string | undefined {
  try {
    return Deno.env.get("CIFAR10_DIR") || undefined;
  } catch {
    return undefined; // no --allow-env: treated as unset
  }
}

function howToGet(cache: string): string {
  return `get the binary version from ${CIFAR10_ARCHIVE.url} (${CIFAR10_ARCHIVE.size} bytes, md5 ${CIFAR10_ARCHIVE.md5}), ` +
    `extract it (tar xzf cifar-10-binary.tar.gz) and pass its cifar-10-batches-bin folder with --data-dir DIR ` +
    `or CIFAR10_DIR=DIR, or put that folder at ${cache}`;
}

/**
 * The folder holding the CIFAR-10 binary files (`test_batch.bin` and
 * `data_batch_1..5.bin`). Looks in `dataDir` (the `--data-dir` flag), then
 * `$CIFAR10_DIR`, then the cache; a given `dataDir` or `$CIFAR10_DIR` that lacks
 * the files is an error naming it. With none found, downloads and verifies the
 * official archive into the cache; where that fails, one {@link UserError} says
 * how to get the data.
 */
export async function findCifar10Dir(dataDir?: string, options: Cifar10DirOptions = {}): Promise<string> {
  for (const [dir, what] of [[dataDir, "--data-dir"], [envDir(), "CIFAR10_DIR"]] as const) {
    if (dir === undefined) continue;
    const found = await folderProblems(dir, what);
    const problems = found === "absent" ? [`missing ${ALL_FILES.join(", ")}`] : found;
    if (problems.length === 0) return dir;
    throw new UserError(
      `${what} ${dir} is not a CIFAR-10 binary folder: ${problems.join("; ")} ` +
        `(expected the cifar-10-batches-bin folder of ${CIFAR10_ARCHIVE.url})`,
    );
  }
  const cache = cifar10CacheDir(options.cacheDir);
  const cached = await folderProblems(cache, "cache folder");
  if (cached !== "absent") {
    if (cached.length === 0) return cache;
    throw new UserError(
      `cache folder ${cache} is not a CIFAR-10 binary folder: ${cached.join("; ")}; ` +
        `remove it to download again, or ${howToGet(cache)}`,
    );
  }
  const notFound = `CIFAR-10 not found (no --data-dir, no CIFAR10_DIR, nothing in ${cache})`;
  if (options.download === false) throw new UserError(`${notFound}; ${howToGet(cache)}`);
  try {
    await downloadCifar10(cache, options);
  } catch (e) {
    throw new UserError(`${notFound}, and the download failed: ${(e as Error).message}; ${howToGet(cache)}`);
  }
  return cache;
}

/**
 * Downloads the archive into a temporary file beside `target`, verifies its
 * size and md5, extracts it into a temporary folder and renames its
 * `cifar-10-batches-bin` folder to `target`. On any failure only the temporary
 * files are removed.
 */
async function downloadCifar10(target: string, options: Cifar10DirOptions): Promise<void> {
  const archive = options.archive ?? CIFAR10_ARCHIVE;
  const parent = target.slice(0, target.lastIndexOf("/"));
  const tmpFile = `${parent}/cifar-10-binary.tar.gz.${Deno.pid}.tmp`;
  const tmpDir = `${parent}/extract.${Deno.pid}.tmp`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 1000 * (options.timeoutSeconds ?? 5));
  let response: Response;
  try {
    response = await fetch(archive.url, { signal: abort.signal });
  } catch (e) {
    const why = abort.signal.aborted
      ? `no answer within ${options.timeoutSeconds ?? 5} s`
      : e instanceof Deno.errors.NotCapable
      ? "no network permission (run with --allow-net)"
      : [e, (e as Error).cause].filter((c) => c instanceof Error).map((c) => (c as Error).message).join(": ");
    throw new Error(`${archive.url}: ${why}`);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`${archive.url}: HTTP ${response.status} ${response.statusText}`);
  }
  await Deno.mkdir(parent, { recursive: true });
  try {
    const md5 = new Md5();
    let size = 0;
    const file = await Deno.open(tmpFile, { write: true, create: true, truncate: true });
    try {
      for await (const chunk of response.body) {
        md5.update(chunk);
        size += chunk.length;
        if (size > archive.size) throw new Error(`${archive.url}: more than the expected ${archive.size} bytes`);
        for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
      }
    } finally {
      file.close();
    }
    if (size !== archive.size) {
      throw new Error(`${archive.url}: expected ${archive.size} bytes, received ${size} (interrupted download)`);
    }
    const digest = md5.hex();
    if (digest !== archive.md5) {
      throw new Error(`${archive.url}: md5 ${digest}, expected ${archive.md5} (corrupt download, deleted)`);
    }
    const input = await Deno.open(tmpFile, { read: true });
    await extractTar(input.readable.pipeThrough(new DecompressionStream("gzip")), tmpDir);
    const found = await folderProblems(`${tmpDir}/cifar-10-batches-bin`, "the archive's folder");
    if (found === "absent") throw new Error("the archive lacks the cifar-10-batches-bin folder");
    if (found.length) throw new Error(`the archive's cifar-10-batches-bin folder: ${found.join("; ")}`);
    await Deno.rename(`${tmpDir}/cifar-10-batches-bin`, target);
  } finally {
    await Deno.remove(tmpFile).catch(() => {});
    await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
}

/** Options of {@link loadCifar10}. */
export interface Cifar10Options extends Cifar10DirOptions {
  /** The cifar-10-batches-bin folder (the `--data-dir` flag); else `$CIFAR10_DIR`, the cache, the download. */
  dataDir?: string;
  /** Keep only the first `limit` examples (only the files they lie in are read, and verified). */
  limit?: number;
  /** Records each file must hold (default 10,000; small fixtures in the tests use fewer). */
  records?: number;
  /**
   * Check each file read against the SHA-256 of the official file, once per
   * file (default true): a modified or corrupt copy of the right size is
   * refused. `false` for data that is meant to differ from the official files.
   */
  verify?: boolean;
  /**
   * The SHA-256 each file must have, by file name (default
   * {@link CIFAR10_SHA256}; the tests pass their fixtures'). A file without an
   * entry is not checked.
   */
  digests?: Readonly<Record<string, string>>;
}

/**
 * Loads the CIFAR-10 training (data_batch_1..5, 50,000 images) or test
 * (test_batch, 10,000 images) split: pixels in [0, 255], shape [32, 32, 3].
 * Each file read is verified against {@link CIFAR10_SHA256} unless
 * `verify: false` (see {@link cifar10VerdictFile} for the cached verdicts).
 */
export async function loadCifar10(split: "train" | "test", options: Cifar10Options = {}): Promise<Dataset> {
  if (split !== "train" && split !== "test") {
    throw new UserError(`CIFAR-10 split must be "train" or "test", got ${JSON.stringify(split)}`);
  }
  const records = options.records ?? CIFAR10_FILE_RECORDS;
  const files = CIFAR10_FILES[split];
  const total = files.length * records;
  const limit = options.limit ?? total;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new UserError(`CIFAR-10 limit must be a non-negative integer, got ${limit}`);
  }
  const n = Math.min(limit, total);
  const dir = await findCifar10Dir(options.dataDir, options);
  const verifier = options.verify === false
    ? undefined
    : await Verifier.open(options.cacheDir, options.digests ?? CIFAR10_SHA256);
  const images = new Float32Array(n * 3 * PIXELS);
  const labels = new Int32Array(n);
  try {
    for (let f = 0, done = 0; done < n; f++) {
      const path = `${dir}/${files[f]}`;
      const expected = `a readable CIFAR-10 batch file (${records} records of ${CIFAR10_RECORD_BYTES} bytes)`;
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(path); // before the read: a change after it changes the mtime the verdict is kept under
      } catch (e) {
        throw fsUserError(path, expected, e);
      }
      const bytes = await readDataFile(path, expected);
      // A file of the wrong size gets parseCifarBatch's plainer message.
      if (verifier && bytes.length === records * CIFAR10_RECORD_BYTES) {
        await verifier.check(path, files[f], bytes, info, cifar10CacheDir(options.cacheDir));
      }
      const part = parseCifarBatch(bytes, path, { records, limit: n - done });
      images.set(part.images, done * 3 * PIXELS);
      labels.set(part.labels, done);
      done += part.n;
    }
  } finally {
    await verifier?.save();
  }
  return { name: "cifar10", images, labels, n, shape: [32, 32, 3], range: [0, 255] };
}

/**
 * The file keeping the verdicts of {@link loadCifar10}'s checks:
 * `<cacheDir>/cifar10/verified.json`, each file's SHA-256 by its real path,
 * with the size and modification time it had when hashed. A file whose size or
 * modification time changed is hashed again.
 */
export function cifar10VerdictFile(cacheDir = ".cache"): string {
  return `${cacheDir}/cifar10/verified.json`;
}

/** One verdict: the file's SHA-256 when it had this size and modification time (ms since the epoch). */
interface Verdict {
  size: number;
  mtimeMs: number;
  sha256: string;
}

async function readVerdicts(file: string): Promise<Record<string, Verdict>> {
  try {
    const json = JSON.parse(await Deno.readTextFile(file));
    return json?.version === 1 && typeof json.files === "object" && json.files ? json.files : {};
  } catch {
    return {}; // absent, unreadable or not ours: every file is hashed
  }
}

/** A digest as lowercase hex. */
function hex(digest: ArrayBuffer): string {
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Checks files against known digests, using and then updating the verdict file. */
class Verifier {
  #added: Record<string, Verdict> = {};

  private constructor(
    readonly file: string,
    readonly digests: Readonly<Record<string, string>>,
    readonly verdicts: Record<string, Verdict>,
  ) {}

  static async open(cacheDir: string | undefined, digests: Readonly<Record<string, string>>): Promise<Verifier> {
    const file = cifar10VerdictFile(cacheDir);
    return new Verifier(file, digests, await readVerdicts(file));
  }

  /** Refuses `bytes` (the file `name` at `path`, as `info` described it before the read) unless their digest is the known one. */
  async check(path: string, name: string, bytes: Uint8Array<ArrayBuffer>, info: Deno.FileInfo, cache: string) {
    const want = this.digests[name];
    if (want === undefined) return;
    const key = await Deno.realPath(path).catch(() => path);
    const mtimeMs = info.mtime?.getTime();
    const known = this.verdicts[key];
    let got: string;
    if (known && mtimeMs !== undefined && known.size === info.size && known.mtimeMs === mtimeMs) got = known.sha256;
    else {
      got = hex(await crypto.subtle.digest("SHA-256", bytes));
      if (mtimeMs !== undefined) this.#added[key] = this.verdicts[key] = { size: info.size, mtimeMs, sha256: got };
    }
    if (got !== want) {
      const fix = howToGet(cache);
      throw new UserError(
        `${path}: expected the official ${name} (SHA-256 ${want}), found a modified or corrupt copy of the right size ` +
          `(SHA-256 ${got}); ${fix}; or, if the data is meant to differ, turn this check off (--unverified-data, or verify: false)`,
      );
    }
  }

  /** Writes the new verdicts (merged into the file as it is now) atomically; where the cache is not writable, keeps nothing. */
  async save(): Promise<void> {
    if (Object.keys(this.#added).length === 0) return;
    const tmp = `${this.file}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    try {
      await Deno.mkdir(this.file.slice(0, this.file.lastIndexOf("/")), { recursive: true });
      const files = { ...(await readVerdicts(this.file)), ...this.#added };
      await Deno.writeTextFile(tmp, JSON.stringify({ version: 1, files }, null, 1) + "\n");
      await Deno.rename(tmp, this.file);
    } catch {
      await Deno.remove(tmp).catch(() => {}); // not writable (or no --allow-write): the next run hashes again
    }
  }
}

/**
 * Refuses an ε on the wrong pixel scale: an ε below 1 where pixels are in
 * [0, 255] (e.g. 0.03, a [0, 1]-scale value; the paper's CIFAR-10 ε is 8), an ε
 * above the whole pixel range (e.g. 8 where pixels are in [0, 1]), and a
 * non-positive or non-finite ε. Throws a {@link UserError}.
 */
export function checkEpsScale(eps: number, range: [number, number], dataset = "CIFAR-10"): void {
  const span = range[1] - range[0];
  const paper = span > 1 ? "8" : "0.3";
  const where = `${dataset} pixels here are in [${range[0]}, ${range[1]}], the paper's ε is ${paper}`;
  if (!Number.isFinite(eps) || eps <= 0) throw new UserError(`eps must be a positive number, got ${eps}; ${where}`);
  if (span > 1 && eps < 1) throw new UserError(`eps ${eps} looks like a [0,1]-scale value; ${where}`);
  if (eps > span) throw new UserError(`eps ${eps} is larger than the whole pixel range; ${where}`);
}
