/**
 * The GPU check is ready to carry: bench/gpu/prepare.sh writes a folder that runs with nothing but its own
 * files (Deno, the bundled bench and WebGPU tests, the Vulkan loader's package), and its run.sh, in quick mode
 * on whatever adapter this machine has (lavapipe in CI), passes the tests and prints the benchmark's lines.
 * Skipped without a WebGPU adapter, apt-get or xz.
 *
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import { adapter } from "./fixtures/webgpu.ts";

const installed = (path: string) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
};
const hasApt = installed("/usr/bin/apt-get") && installed("/usr/bin/xz");

async function bash(args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("bash", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  return { code: r.code, out: text };
}

Deno.test({
  name: "bench/gpu/prepare.sh writes a self-contained folder whose run.sh passes the WebGPU tests and benches",
  ignore: !adapter.available || !hasApt,
  sanitizeResources: false,
  async fn() {
    const dir = ".cache/gpu-bundle-test";
    const prepared = await bash(["bench/gpu/prepare.sh", dir]);
    assertEquals(prepared.code, 0, prepared.out);
    const size = [...Deno.readDirSync(dir)].filter((e) => e.isFile)
      .reduce((sum, e) => sum + Deno.statSync(`${dir}/${e.name}`).size, 0);
    assert(size < 50 * 2 ** 20, `the folder is ${size} bytes, too big to carry`);
    // Run from a copy with no repository around it: nothing may come from node_modules or the sources.
    const away = await Deno.makeTempDir({ dir: ".cache" });
    try {
      const copy = await bash(["-c", `cp -r ${dir} ${away}/gpu`]);
      assertEquals(copy.code, 0, copy.out);
      const out = `${away}/out`;
      const ran = await bash(["-c", `cd / && bash ${Deno.cwd()}/${away}/gpu/run.sh ${Deno.cwd()}/${out} quick`]);
      assertEquals(ran.code, 0, ran.out);
      const tests = await Deno.readTextFile(`${out}/tests.txt`);
      assert(/ok \| \d+ passed \| 0 failed/.test(tests), tests.slice(-2000));
      for (
        const [file, field] of [["models.jsonl", "train"], ["models_stock.jsonl", "train"], [
          "kernels.jsonl",
          "speedup",
        ]]
      ) {
        const lines = (await Deno.readTextFile(`${out}/${file}`)).trim().split("\n").map((l) => JSON.parse(l))
          .filter((l) => !l.profile);
        assert(lines.length > 0 && lines.every((l) => l[field] > 0), `${file}: ${JSON.stringify(lines)}`);
      }
    } finally {
      await Deno.remove(away, { recursive: true });
      await Deno.remove(dir, { recursive: true });
    }
  },
});
