/**
 * How backend selection survives a broken machine: a corrupt compiled-kernel
 * cache, a cache folder given by the caller, a bad `BLAS_LIBRARY`, no C
 * compiler, and WebGPU probing without `XDG_RUNTIME_DIR`. Each case runs
 * tests/fixtures/backend_child.ts in a child process with the experiments'
 * permissions and reads its exit code and backend line.
 *
 *   deno test --allow-read --allow-env --allow-ffi --allow-write --allow-run tests/backend_reliability_test.ts
 *
 * The cases that load the native backend are skipped where no BLAS loads, and
 * those that compile where there is no `cc`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { DENO } from "./assert.ts";
import { loadBlas } from "../lib/backends/native/_blas.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CHILD = "tests/fixtures/backend_child.ts";
const GOT = "2048"; // what the child's convolution sums to

const blas = loadBlas();
const noBlas = !blas.ok;
if (!blas.ok) console.warn(`backend reliability tests of the native backend skipped: ${blas.reason}`);
const noCc = (() => {
  try {
    return !new Deno.Command("cc", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return true;
  }
})();

interface ChildRun {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** The `backend: …` line, or "" when the child printed none. */
  line: string;
}

/**
 * Runs the child with `backend`, writing only under `dir`; `env` entries replace the parent's (undefined
 * removes one), and ADV_CACHE_DIR, BLAS_LIBRARY, ADV_NO_CC and ADV_NO_DNNL start unset.
 */
async function child(
  backend: string,
  dir: string,
  options: { cacheDir?: string; env?: Record<string, string | undefined>; flags?: string[] } = {},
): Promise<ChildRun> {
  const env = Deno.env.toObject();
  for (const name of ["ADV_CACHE_DIR", "BLAS_LIBRARY", "ADV_NO_CC", "ADV_NO_DNNL"]) delete env[name];
  for (const [name, value] of Object.entries({ NO_COLOR: "1", ...options.env })) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  const flags = options.flags ??
    ["--allow-read", "--allow-env", "--allow-ffi", "--allow-run=cc", `--allow-write=${dir}`];
  const out = await new Deno.Command(DENO, {
    args: ["run", "--no-prompt", ...flags, CHILD, backend, ...(options.cacheDir ? [options.cacheDir] : [])],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return {
    code: out.code,
    signal: out.signal,
    stdout: new TextDecoder().decode(out.stdout).trim(),
    stderr,
    line: stderr.split("\n").find((l) => l.startsWith("backend: ")) ?? "",
  };
}

function describe(r: ChildRun): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ""}, stdout ${JSON.stringify(r.stdout)}, stderr:\n${r.stderr}`;
}

/** Asserts the child ran to the end: exit 0, no signal, the convolution's sum on stdout. */
function assertRan(r: ChildRun, what: string): void {
  assert.equal(r.code, 0, `${what}: ${describe(r)}`);
  assert.equal(r.stdout, GOT, `${what}: ${describe(r)}`);
}

/** The compiled libraries under `<cacheDir>/native` (not their checksum records). */
function libraries(cacheDir: string): string[] {
  try {
    return [...Deno.readDirSync(`${cacheDir}/native`)].map((e) => e.name).filter((n) => n.endsWith(".so")).sort();
  } catch {
    return [];
  }
}

/** Cuts every compiled library under `<cacheDir>/native` to 1,000 bytes, as a full disk or a killed copy would. */
function truncateLibraries(cacheDir: string): void {
  for (const name of libraries(cacheDir)) Deno.truncateSync(`${cacheDir}/native/${name}`, 1000);
}

/** An empty folder to put on the PATH: no `cc` there. */
function emptyBin(dir: string): string {
  const bin = `${dir}/empty-bin`;
  Deno.mkdirSync(bin, { recursive: true });
  return bin;
}

Deno.test({
  name:
    "a truncated compiled library in the cache is rebuilt (native and auto), or skipped with the reason, never loaded",
  ignore: noBlas || noCc,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
    try {
      const env = { ADV_CACHE_DIR: dir };
      const first = await child("native", dir, { env });
      assertRan(first, "first run (builds the cache)");
      assert.match(first.line, /compiled C loops/, first.line);
      const built = libraries(dir);
      assert.ok(built.some((n) => n.startsWith("kernels-")), `no kernels library in ${dir}/native: ${built}`);

      for (const backend of ["native", "auto"]) {
        truncateLibraries(dir);
        const r = await child(backend, dir, { env });
        assertRan(r, `--backend ${backend} over truncated libraries`);
        assert.match(r.line, /backend: native .*compiled C loops/, r.line);
        assert.match(r.line, /rebuilt .*kernels-/, `the backend line reports the rebuild: ${r.line}`);
        for (const name of libraries(dir)) {
          assert.ok(Deno.statSync(`${dir}/native/${name}`).size > 1000, `${name} was rebuilt whole`);
        }
      }

      // Truncated, and no compiler to rebuild with: the TypeScript loops, and why. (--allow-run, since
      // --allow-run=cc with no cc on the PATH stops before the cache is looked at, with the same reason.)
      truncateLibraries(dir);
      const flags = ["--allow-read", "--allow-env", "--allow-ffi", "--allow-run", `--allow-write=${dir}`];
      const r = await child("native", dir, { env: { ...env, PATH: emptyBin(dir) }, flags });
      assertRan(r, "truncated libraries and no cc");
      assert.match(r.line, /TypeScript loops \(no compiled ones: .*kernels-.*checksum/, r.line);
      assert.match(r.line, /no C compiler \(cc\) on the PATH/, r.line);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a compiled library without its checksum record is rebuilt before it is loaded",
  ignore: noBlas || noCc,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
    try {
      const env = { ADV_CACHE_DIR: dir };
      assertRan(await child("native", dir, { env }), "first run (builds the cache)");
      const records = [...Deno.readDirSync(`${dir}/native`)].map((e) => e.name).filter((n) => n.endsWith(".sha256"));
      assert.ok(records.length >= 1, `a checksum record beside each library: ${libraries(dir)}`);
      for (const name of records) Deno.removeSync(`${dir}/native/${name}`);
      truncateLibraries(dir);
      const r = await child("native", dir, { env });
      assertRan(r, "truncated libraries without records");
      assert.match(r.line, /rebuilt .*kernels-/, r.line);
      assert.match(r.line, /compiled C loops/, r.line);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "useBackend's cacheDir option says where compiled libraries go; ADV_CACHE_DIR still works without it",
  ignore: noBlas || noCc,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
    try {
      const [a, b, c] = ["a", "b", "c"].map((s) => `${dir}/${s}`);
      // The option (writes are allowed under `dir` only, so .cache is out of reach).
      const r = await child("native", dir, { cacheDir: a });
      assertRan(r, "cacheDir option");
      assert.match(r.line, /compiled C loops/, r.line);
      assert.ok(libraries(a).some((n) => n.startsWith("kernels-")), `libraries in ${a}/native: ${libraries(a)}`);
      // ADV_CACHE_DIR without the option.
      const s = await child("native", dir, { env: { ADV_CACHE_DIR: b } });
      assertRan(s, "ADV_CACHE_DIR");
      assert.ok(libraries(b).some((n) => n.startsWith("kernels-")), `libraries in ${b}/native: ${libraries(b)}`);
      // The option wins over the environment.
      const t = await child("native", dir, { cacheDir: c, env: { ADV_CACHE_DIR: b } });
      assertRan(t, "cacheDir option and ADV_CACHE_DIR");
      assert.ok(libraries(c).length > 0, `libraries in ${c}/native: ${libraries(c)}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a BLAS_LIBRARY that cannot be loaded is named in the backend line (auto) or is a one-line error (native)",
  ignore: noBlas,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
    try {
      const env = { BLAS_LIBRARY: "/nonexistent.so", ADV_NO_CC: "1" };
      const r = await child("auto", dir, { env });
      assertRan(r, "auto with a bad BLAS_LIBRARY");
      assert.match(r.line, /BLAS_LIBRARY=\/nonexistent\.so could not be loaded/, r.line);
      // Another BLAS loaded here (the test runs only where one does): the line names it.
      assert.match(
        r.line,
        /^backend: native — BLAS \S+ \(BLAS_LIBRARY=.* could not be loaded.*; used \S+ instead\)/,
        r.line,
      );
      const s = await child("native", dir, { env });
      assert.equal(s.code, 2, describe(s));
      const lines = s.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `one line: ${s.stderr}`);
      assert.match(lines[0], /^error: --backend native: BLAS_LIBRARY=\/nonexistent\.so could not be loaded/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "no cc on the PATH reads as a missing compiler, not a missing permission; a missing permission as itself",
  ignore: noBlas || noCc,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
    try {
      const path = emptyBin(dir);
      for (const run of ["--allow-run=cc", "--allow-run", ""]) {
        const flags = ["--allow-read", "--allow-env", "--allow-ffi", `--allow-write=${dir}`, ...(run ? [run] : [])];
        const r = await child("native", dir, { cacheDir: `${dir}/fresh`, env: { PATH: path }, flags });
        assertRan(r, `no cc on the PATH, ${run || "no --allow-run"}`);
        assert.match(r.line, /TypeScript loops \(no compiled ones: no C compiler \(cc\) on the PATH\)/, r.line);
        assert.doesNotMatch(r.line, /allow-run/, r.line);
      }
      // cc on the PATH but no permission to run it.
      const flags = ["--allow-read", "--allow-env", "--allow-ffi", `--allow-write=${dir}`];
      const r = await child("native", dir, { cacheDir: `${dir}/fresh`, flags });
      assertRan(r, "cc but no --allow-run");
      assert.match(r.line, /TypeScript loops \(no compiled ones: no --allow-run=cc\)/, r.line);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--backend auto without XDG_RUNTIME_DIR prints no XDG_RUNTIME_DIR errors, and leaves no folder behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "adv-backend-" });
  try {
    const env = { XDG_RUNTIME_DIR: undefined, ADV_CACHE_DIR: dir };
    // The tasks' permissions: no write access to the temporary folder.
    const r = await child("auto", dir, { env });
    assertRan(r, "auto, no XDG_RUNTIME_DIR");
    assert.doesNotMatch(r.stderr, /XDG_RUNTIME_DIR/, r.stderr);
    // With write access to a temporary folder (TMPDIR): the private folder used there is removed at exit.
    const tmp = `${dir}/tmp`;
    Deno.mkdirSync(tmp);
    const flags = ["--allow-read", "--allow-env", "--allow-ffi", "--allow-run=cc", "--allow-write"];
    const s = await child("auto", dir, { env: { ...env, TMPDIR: tmp }, flags });
    assertRan(s, "auto, no XDG_RUNTIME_DIR, a writable TMPDIR");
    assert.doesNotMatch(s.stderr, /XDG_RUNTIME_DIR/, s.stderr);
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), [], `nothing left in ${tmp}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
