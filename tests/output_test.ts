/**
 * Output that never loses work and is never half written: the output and cache
 * folders are checked before any work, results that cannot be written are kept
 * elsewhere, a results file and its figure are written as one unit, and a
 * redraw reports the files it cannot draw instead of stopping at the first.
 */
import { assert, assertEquals, assertRejects, DENO, symlink } from "./assert.ts";
import {
  ensureWritable,
  presetConfig,
  recoverFileSets,
  redrawAll,
  runExperiment,
  saveResults,
  tf,
  UserError,
  writeFileSet,
} from "../mod.ts";
import { findExperiment } from "../experiments/figures.ts";
import { experiment as sweep } from "../experiments/eps_sweep.ts";

await tf.setBackend("cpu");

const decoder = new TextDecoder();

/** Runs an experiment script in a child with `--allow-write` scoped to `writable`; its exit code and stderr. */
async function script(file: string, args: string[], writable: string[]): Promise<{ code: number; stderr: string }> {
  const { code, stderr } = await new Deno.Command(DENO, {
    args: ["run", "--allow-read", "--allow-env", "--allow-ffi", `--allow-write=${writable.join(",")}`, file, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code, stderr: decoder.decode(stderr) };
}

Deno.test("bad output and cache folders are one-line errors before any work: a file, an empty path, a link out", async () => {
  const tmp = await Deno.makeTempDir();
  await Deno.writeTextFile(`${tmp}/file`, "x");
  await Deno.mkdir(`${tmp}/figures`);
  await Deno.mkdir(`${tmp}/elsewhere`);
  await symlink(`${tmp}/elsewhere`, `${tmp}/figures/link`);
  const cases: [string[], string][] = [
    [["--out", `${tmp}/file`], `--out ${tmp}/file: ${tmp}/file is a file, expected a folder`],
    [["--out", `${tmp}/file/sub`], "is a file, expected a folder"],
    [["--cache-dir", `${tmp}/file`], `--cache-dir ${tmp}/file: ${tmp}/file is a file, expected a folder`],
    [["--out="], "--out is empty; give a folder"],
    [["--cache-dir="], "--cache-dir is empty; give a folder"],
    [["--out", `${tmp}/figures/link`], `(which leads to ${await Deno.realPath(`${tmp}/elsewhere`)})`],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await script(
      "experiments/figure1.ts",
      ["--preset", "smoke", "--backend", "cpu", "--out", `${tmp}/figures`, "--cache-dir", `${tmp}/cache`, ...args],
      [`${tmp}/figures`, `${tmp}/cache`, `${tmp}/file`],
    );
    assertEquals(code, 2, `${args.join(" ")}: ${stderr}`);
    const lines = stderr.trim().split("\n");
    assertEquals(lines.length, 1, stderr);
    assert(lines[0].includes(message), `${args.join(" ")}: ${lines[0]}`);
  }
  assertEquals(Array.from(Deno.readDirSync(`${tmp}/elsewhere`)), []);
  assertEquals(await Deno.readTextFile(`${tmp}/file`), "x");
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("results that cannot be written are kept in the cache, and the error says where and how to draw them", async () => {
  const tmp = await Deno.makeTempDir();
  const config = presetConfig(sweep, "mnist", "smoke");
  const results = await runExperiment(sweep, { ...config, points: 2 }, { cacheDir: `${tmp}/cache`, quiet: true });
  await Deno.writeTextFile(`${tmp}/file`, "x");
  const err = await saveResults(sweep, results, `${tmp}/file/out`, `${tmp}/cache`).then(() => undefined, (e) => e);
  assert(err instanceof UserError, `${err}`);
  const kept = err.message.match(/kept at (\S+):/)?.[1];
  assert(kept && kept.startsWith(`${tmp}/cache/unsaved/eps_sweep_mnist.`), err.message);
  assertEquals(JSON.parse(await Deno.readTextFile(kept)), JSON.parse(JSON.stringify(results)));
  // Drawn from where it was kept, as the message says.
  await Deno.mkdir(`${tmp}/draw`);
  await Deno.copyFile(kept, `${tmp}/draw/eps_sweep_mnist.results.json`);
  const { written, failed } = await redrawAll(`${tmp}/draw`, findExperiment);
  assertEquals(failed, []);
  assert(written.some((p) => p.endsWith("eps_sweep_mnist.png")));
  await Deno.remove(tmp, { recursive: true });
});

Deno.test("a set of files is written as a unit: a stop before the journal keeps the old set, one after it completes", async () => {
  const dir = await Deno.makeTempDir();
  await writeFileSet(dir, [["a.json", "old a"], ["a.md", "old md"]]);
  // A writer stopped while writing its temporary files: the old set stays, the temporary file goes.
  await Deno.writeTextFile(`${dir}/.a.json.99-x.set-tmp`, "new a");
  await recoverFileSets(dir);
  assertEquals([await Deno.readTextFile(`${dir}/a.json`), await Deno.readTextFile(`${dir}/a.md`)], ["old a", "old md"]);
  assertEquals(Array.from(Deno.readDirSync(dir), (e) => e.name).sort(), ["a.json", "a.md"]);
  // A writer stopped between its renames (the journal written, one rename done): the next one finishes them.
  await Deno.writeTextFile(`${dir}/.a.md.7-y.set-tmp`, "new md");
  await Deno.writeTextFile(`${dir}/a.json`, "new a");
  await Deno.writeTextFile(
    `${dir}/.a.json.set.json`,
    JSON.stringify([[".a.json.7-y.set-tmp", "a.json"], [".a.md.7-y.set-tmp", "a.md"]]),
  );
  await recoverFileSets(dir);
  assertEquals([await Deno.readTextFile(`${dir}/a.json`), await Deno.readTextFile(`${dir}/a.md`)], ["new a", "new md"]);
  assertEquals(Array.from(Deno.readDirSync(dir), (e) => e.name).sort(), ["a.json", "a.md"]);
  // A file name that is a link is replaced, never followed.
  const outside = await Deno.makeTempFile();
  await Deno.remove(`${dir}/a.md`);
  await symlink(outside, `${dir}/a.md`);
  await writeFileSet(dir, [["a.json", "3"], ["a.md", "3"]]);
  assertEquals(await Deno.readTextFile(outside), "");
  assert(!(await Deno.lstat(`${dir}/a.md`)).isSymlink);
  await Deno.remove(outside);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("redraw draws every results file it can and names each one it cannot", async () => {
  const tmp = await Deno.makeTempDir();
  const results = await runExperiment(sweep, { ...presetConfig(sweep, "mnist", "smoke"), points: 2 }, {
    cacheDir: `${tmp}/cache`,
    quiet: true,
  });
  const dir = `${tmp}/figures`;
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${dir}/a_mnist.results.json`, "{ not json");
  await Deno.writeTextFile(
    `${dir}/b_mnist.results.json`,
    JSON.stringify({ experiment: "eps_sweep", dataset: "mnist" }),
  );
  await Deno.writeTextFile(`${dir}/eps_sweep_mnist.results.json`, JSON.stringify(results));
  await Deno.writeTextFile(`${dir}/z_mnist.results.json`, JSON.stringify({ experiment: "nope" }));
  const { written, failed } = await redrawAll(dir, findExperiment);
  assertEquals(written.length, 4);
  assertEquals(failed.length, 3);
  assert(failed[0].startsWith(`${dir}/a_mnist.results.json: not a JSON file`), failed[0]);
  assert(failed[1].startsWith(`${dir}/b_mnist.results.json: not a results file`), failed[1]);
  assert(failed[2].includes('no experiment "nope"'), failed[2]);
  // The figures task exits 2 with the list, after drawing the rest.
  const { code, stderr } = await script("experiments/figures.ts", ["--out", dir], [dir]);
  assertEquals(code, 2);
  assert(stderr.includes("cannot draw") && stderr.includes("3 results files could not be drawn"), stderr);
  const denied = await script("experiments/figures.ts", ["--out", `${tmp}/other`], [dir]);
  assertEquals(denied.code, 2);
  assertEquals(denied.stderr.trim().split("\n").length, 1, denied.stderr);
  await Deno.remove(tmp, { recursive: true });
});

/** Mounts a tmpfs of `size` at a new folder, or returns undefined where that is not possible (not root, no mount). */
async function tinyDisk(size: string): Promise<string | undefined> {
  const dir = await Deno.makeTempDir();
  try {
    const { code } = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir] })
      .output();
    if (code === 0) return dir;
  } catch {
    // no mount command, or no permission to run it
  }
  await Deno.remove(dir);
  return undefined;
}

const disk = await tinyDisk("256k");
Deno.test({
  name: "a full disk under --out is found before any work (needs root to mount a tmpfs)",
  ignore: !disk,
  async fn() {
    await assertRejects(() => ensureWritable(disk!, "--out", 16 * 2 ** 20), UserError, "no space left on the device");
    assertEquals(Array.from(Deno.readDirSync(disk!)), []);
    const { code, stderr } = await script(
      "experiments/eps_sweep.ts",
      ["--preset", "smoke", "--backend", "cpu", "--out", disk!, "--cache-dir", `${disk}-cache`],
      [disk!, `${disk}-cache`],
    );
    assertEquals(code, 2, stderr);
    assert(stderr.includes(`--out ${disk}: no space left on the device (need about 16 MB free)`), stderr);
    await new Deno.Command("umount", { args: [disk!] }).output();
    await Deno.remove(disk!, { recursive: true });
    await Deno.remove(`${disk}-cache`, { recursive: true }).catch(() => {});
  },
});
