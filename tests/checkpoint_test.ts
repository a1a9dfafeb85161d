import { assert, assertEquals, DENO } from "./assert.ts";
import {
  isTrained,
  loadCheckpoint,
  loadMnist,
  modelDir,
  tf,
  type tfl,
  type TrainConfig,
  trainModel,
  UserError,
} from "../mod.ts";
import { lockFolder } from "../lib/train/_lock.ts";
import { KILL_CONFIG } from "./fixtures/kill_config.ts";
import { CONCURRENT_CONFIG } from "./fixtures/concurrent_config.ts";

await tf.setBackend("cpu");
const data = await loadMnist("train", { limit: 300 });

/** The kill -9 test's config, 4 steps, another seed. */
const CONFIG: TrainConfig = { ...KILL_CONFIG, steps: 4, seed: 5 };
const OPTS = { data, quiet: true, checkpointEvery: 1 };

async function weights(m: tfl.LayersModel): Promise<Float32Array[]> {
  return await Promise.all(m.getWeights().map((w) => w.data() as Promise<Float32Array>));
}

/** The folder `dir/latest` points to. */
async function latestPath(dir: string): Promise<string> {
  return `${dir}/${(await Deno.readTextFile(`${dir}/latest`)).trim()}`;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Trains CONFIG (to `stopAfter`, or to the end) into a new temporary cache. */
async function trainedCache(stopAfter?: number) {
  const cacheDir = await Deno.makeTempDir();
  const t = await trainModel(CONFIG, { ...OPTS, cacheDir, stopAfter });
  return { cacheDir, t, ckpt: await latestPath(t.dir) };
}

/** Rewrites `path`'s state.json through `edit`. */
async function editState(path: string, edit: (s: Record<string, unknown>) => void): Promise<void> {
  const state = JSON.parse(await Deno.readTextFile(`${path}/state.json`));
  edit(state);
  await Deno.writeTextFile(`${path}/state.json`, JSON.stringify(state));
}

/** Asserts that training CONFIG from `cacheDir` is refused with a one-line UserError naming `ckpt` and `what`. */
async function assertRefused(cacheDir: string, ckpt: string, what: string): Promise<void> {
  let err: unknown;
  try {
    await trainModel(CONFIG, { ...OPTS, cacheDir });
  } catch (e) {
    err = e;
  }
  assert(err instanceof UserError, `expected a UserError about ${what}, got ${err}`);
  const m = err.message;
  assert(!m.includes("\n"), `one line: ${m}`);
  for (const part of [ckpt, what, "--retrain"]) assert(m.includes(part), `"${part}" in: ${m}`);
}

Deno.test("a checkpoint records the SHA-256 of each of its files in state.json", async () => {
  const { cacheDir, t, ckpt } = await trainedCache();
  const state = JSON.parse(await Deno.readTextFile(`${ckpt}/state.json`));
  assertEquals(Object.keys(state.files).sort(), ["model.json", "optimizer.bin", "weights.bin"]);
  for (const [name, sum] of Object.entries(state.files)) {
    assertEquals(sum, await sha256(await Deno.readFile(`${ckpt}/${name}`)), name);
  }
  t.model.dispose();
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("weights overwritten with 0xFF (NaN) are refused, naming the checkpoint; the file is left in place", async () => {
  const { cacheDir, t, ckpt } = await trainedCache();
  const size = (await Deno.stat(`${ckpt}/weights.bin`)).size;
  await Deno.writeFile(`${ckpt}/weights.bin`, new Uint8Array(size).fill(0xff));
  await assertRefused(cacheDir, ckpt, "weights.bin");
  assertEquals((await Deno.readFile(`${ckpt}/weights.bin`)).every((b) => b === 0xff), true);
  t.model.dispose();
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("a changed optimizer.bin or model.json is refused by its checksum", async () => {
  for (const file of ["optimizer.bin", "model.json"]) {
    const { cacheDir, t, ckpt } = await trainedCache();
    const bytes = await Deno.readFile(`${ckpt}/${file}`);
    if (file === "model.json") await Deno.writeTextFile(`${ckpt}/${file}`, new TextDecoder().decode(bytes) + " ");
    else {
      const f = new Float32Array(bytes.buffer);
      f[0] += 0.5; // still finite, same size
      await Deno.writeFile(`${ckpt}/${file}`, bytes);
    }
    await assertRefused(cacheDir, ckpt, file);
    t.model.dispose();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("an old checkpoint without checksums still loads; with NaN weights it is refused", async () => {
  const { cacheDir, t, ckpt } = await trainedCache();
  await editState(ckpt, (s) => {
    delete s.files;
    delete s.checksum;
  });
  const cached = await trainModel(CONFIG, { ...OPTS, cacheDir });
  assertEquals(cached.fromCache, true);
  assertEquals(await weights(cached.model), await weights(t.model));
  const size = (await Deno.stat(`${ckpt}/weights.bin`)).size;
  await Deno.writeFile(`${ckpt}/weights.bin`, new Uint8Array(size).fill(0xff));
  await assertRefused(cacheDir, ckpt, "not finite");
  tf.dispose([t.model, cached.model] as unknown as tf.Tensor[]);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("state.json is cross-checked: step, history, done and config hash", async () => {
  const { cacheDir, t, ckpt } = await trainedCache(2);
  const original = await Deno.readTextFile(`${ckpt}/state.json`);
  type S = Record<string, unknown> & { history: { loss: (number | null)[]; accuracy: number[] } };
  const edits: [string, (s: S) => void][] = [
    ["history", (s) => delete (s as Record<string, unknown>).history],
    ["history.loss", (s) => s.history.loss.pop()],
    ["history.accuracy", (s) => s.history.accuracy.push(0.5)],
    ["history.loss", (s) => (s.history.loss[0] = null)],
    ["step", (s) => (s.step = 3)],
    ["step", (s) => (s.step = 1.5)],
    ["step", (s) => (s.step = 9)],
    ["done", (s) => (s.done = true)],
    ["config", (s) => (s.configHash = "000000000000")],
    // Consistent with itself, so only the checksum of the state catches it.
    ["state.json", (s) => {
      s.step = 1;
      s.history.loss.pop();
      s.history.accuracy.pop();
    }],
  ];
  for (const [what, edit] of edits) {
    await editState(ckpt, (s) => edit(s as S));
    await assertRefused(cacheDir, ckpt, what);
    await Deno.writeTextFile(`${ckpt}/state.json`, original);
  }
  // Untouched, it resumes.
  const resumed = await trainModel(CONFIG, { ...OPTS, cacheDir });
  assertEquals([resumed.fromCache, resumed.step, resumed.history.loss.length], [false, 4, 4]);
  tf.dispose([t.model, resumed.model] as unknown as tf.Tensor[]);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("without `latest`, a finished model is found again: cached, same weights, nothing deleted", async () => {
  const { cacheDir, t, ckpt } = await trainedCache();
  await Deno.remove(`${t.dir}/latest`);
  assertEquals(await isTrained(CONFIG, cacheDir), true);
  const cached = await trainModel(CONFIG, { ...OPTS, cacheDir });
  assertEquals(cached.fromCache, true);
  assertEquals(cached.step, 4);
  assertEquals(await weights(cached.model), await weights(t.model));
  assertEquals(await latestPath(t.dir), ckpt, "latest is written again");
  assertEquals((await Deno.stat(`${ckpt}/weights.bin`)).isFile, true);
  tf.dispose([t.model, cached.model] as unknown as tf.Tensor[]);
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("without `latest`, a partial run resumes from its newest complete checkpoint, skipping a corrupt one", async () => {
  const whole = await trainedCache();
  const { cacheDir, t, ckpt } = await trainedCache(2);
  const aside = await Deno.makeTempDir();
  for (const e of Deno.readDirSync(ckpt)) await Deno.copyFile(`${ckpt}/${e.name}`, `${aside}/${e.name}`);
  const part = await trainModel(CONFIG, { ...OPTS, cacheDir, stopAfter: 3 });
  const newer = await latestPath(t.dir);
  assert(newer.endsWith("ckpt-0000003"), newer);
  await Deno.rename(aside, ckpt); // the older checkpoint back beside the newer one
  await Deno.remove(`${t.dir}/latest`);
  const size = (await Deno.stat(`${newer}/weights.bin`)).size;
  await Deno.writeFile(`${newer}/weights.bin`, new Uint8Array(size).fill(0xff));
  const found = await loadCheckpoint(t.dir, t.hash);
  assertEquals([found?.path, found?.state.step], [ckpt, 2]);
  found!.model.dispose();
  assertEquals(await latestPath(t.dir), ckpt, "latest is written again");
  const resumed = await trainModel(CONFIG, { ...OPTS, cacheDir });
  assertEquals(resumed.fromCache, false);
  assertEquals(resumed.history.loss, whole.t.history.loss);
  assertEquals(await weights(resumed.model), await weights(whole.t.model));
  tf.dispose([t.model, part.model, resumed.model, whole.t.model] as unknown as tf.Tensor[]);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(whole.cacheDir, { recursive: true });
});

/** Why a tmpfs cannot be mounted here (not root, no mount), or undefined when it can. */
function tmpfsUnavailable(): string | undefined {
  const dir = Deno.makeTempDirSync();
  try {
    const r = new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], stderr: "piped" })
      .outputSync();
    if (!r.success) return `mount -t tmpfs failed: ${new TextDecoder().decode(r.stderr).trim()}`;
    new Deno.Command("umount", { args: [dir] }).outputSync();
    return undefined;
  } catch (e) {
    return `cannot run mount: ${(e as Error).message}`;
  } finally {
    try {
      Deno.removeSync(dir);
    } catch { /* still mounted */ }
  }
}
const noTmpfs = tmpfsUnavailable();

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
  assert(r.success, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

Deno.test({
  name: "a full --cache-dir is a one-line error saying how much space is needed; the last checkpoint stays" +
    (noTmpfs ? ` (skipped: needs a tmpfs mount, as root; ${noTmpfs})` : ""),
  ignore: noTmpfs !== undefined,
  fn: async () => {
    const mnt = await Deno.makeTempDir();
    await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]);
    try {
      const t = await trainModel(CONFIG, { ...OPTS, cacheDir: mnt, stopAfter: 2 });
      const before = await latestPath(t.dir);
      let size = 0;
      for (const e of Deno.readDirSync(before)) size += (await Deno.stat(`${before}/${e.name}`)).size;
      // Fill the file system: the write stops at the last free byte.
      await Deno.writeFile(`${mnt}/filler`, new Uint8Array(2 << 20)).catch(() => {});
      let err: unknown;
      try {
        await trainModel(CONFIG, { ...OPTS, cacheDir: mnt, stopAfter: 3 });
      } catch (e) {
        err = e;
      }
      assert(err instanceof UserError, `expected a UserError, got ${err}`);
      const m = err.message;
      assert(!m.includes("\n"), `one line: ${m}`);
      assert(m.includes(t.dir), `names the folder: ${m}`);
      const needed = Number(/needs .*?\((\d+) bytes\)/.exec(m)?.[1]);
      assert(needed > size, `needs more than the previous checkpoint's ${size} bytes: ${m}`);
      assertEquals(Array.from(Deno.readDirSync(t.dir), (e) => e.name).filter((n) => n.includes("tmp")), []);
      assertEquals(await latestPath(t.dir), before);
      const back = await loadCheckpoint(t.dir, t.hash);
      assertEquals(back?.state.step, 2);
      assertEquals(await weights(back!.model), await weights(t.model));
      // With space again, the run resumes and finishes.
      await Deno.remove(`${mnt}/filler`);
      const done = await trainModel(CONFIG, { ...OPTS, cacheDir: mnt });
      assertEquals([done.fromCache, done.step], [false, 4]);
      tf.dispose([t.model, back!.model, done.model] as unknown as tf.Tensor[]);
    } finally {
      await run("umount", [mnt]);
      await Deno.remove(mnt, { recursive: true });
    }
  },
});

/** Reads a child's stream to the end; `seen` resolves once `marker` appeared (or at the end). */
function collect(stream: ReadableStream<Uint8Array>, marker: string) {
  let text = "";
  let found = () => {};
  const seen = new Promise<void>((r) => (found = r));
  const all = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes(marker)) found();
    }
    found();
    return text;
  })();
  return { seen, all };
}

Deno.test("two runs of one config into one cache: one trains, the other waits and reuses its model", async () => {
  const cacheDir = await Deno.makeTempDir();
  const dir = await modelDir(CONCURRENT_CONFIG, cacheDir);
  await Deno.mkdir(dir, { recursive: true });
  // Hold the lock so both children start while a run is in progress, then let them go.
  const held = await lockFolder(dir);
  const marker = `waiting for ${Deno.pid} training ${dir}`;
  const children = [0, 1].map(() => {
    const child = new Deno.Command(DENO, {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        `--allow-write=${cacheDir}`,
        "tests/fixtures/train_concurrent.ts",
        cacheDir,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return { child, out: collect(child.stdout, "\n"), err: collect(child.stderr, marker) };
  });
  await Promise.all(children.map((c) => c.err.seen));
  await held.release();
  const results = [];
  for (const c of children) {
    const [status, out, err] = await Promise.all([c.child.status, c.out.all, c.err.all]);
    assert(status.success, `child failed: ${err}`);
    assert(err.includes(marker), `the child said it waits: ${err}`);
    results.push(JSON.parse(out.trim().split("\n").at(-1)!));
  }
  assertEquals(results.map((r) => r.fromCache).sort(), [false, true], "exactly one trains");
  assertEquals(results.map((r) => r.step), [4, 4]);
  assertEquals(results[0].sha256, results[1].sha256);
  await Deno.remove(cacheDir, { recursive: true });
});
