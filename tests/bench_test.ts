/**
 * `deno task bench` runs end to end: one JSON line per backend and net with
 * the documented fields (no speed is asserted: speeds belong to the bench, not
 * to tests), and a bad flag is an error that names it, with exit code 2.
 */
import assert from "node:assert/strict";
import { DENO } from "./assert.ts";
import { fileURLToPath } from "node:url";
import { loadBlas } from "../lib/backends/native/_blas.ts";
import { adapter } from "./fixtures/webgpu.ts";

const bench = fileURLToPath(new URL("../bench/bench.ts", import.meta.url));
const config = fileURLToPath(new URL("../deno.json", import.meta.url));

async function run(args: string[]) {
  const out = await new Deno.Command(DENO, {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-ffi",
      "--allow-run=cc",
      "--allow-write",
      "--config",
      config,
      bench,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test({
  name: "bench: one JSON line per net on native (MNIST model A and the CIFAR ResNet), no tensor growth",
  ignore: !loadBlas().ok,
  fn: async () => {
    const r = await run(["--backend", "native", "--model", "all", "--seconds", "0.01", "--memory-steps", "3"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.backend, l.model]), [["native", "mnist_a"], ["native", "cifar_resnet"]]);
    for (const l of lines) {
      for (const k of ["forward", "pgd_step", "train", "rss_mb"]) assert.ok(l[k] > 0, `${l.model} ${k}: ${l[k]}`);
      assert.equal(l.num_tensors_growth, 0, `${l.model} leaks tensors`);
      assert.equal(l.memory.steps, 3);
      assert.equal(l.memory.num_tensors_growth, 0, `${l.model} leaks tensors over the memory steps`);
      assert.ok(
        l.memory.rss_mb_before > 0 && l.memory.rss_mb_quarters.length === 3 && l.memory.heap_mb_quarters.length === 3 &&
          l.memory.external_mb_quarters.length === 3,
        JSON.stringify(l.memory),
      );
    }
  },
});

Deno.test("bench: a bad flag is an error naming it (then the usage), exit code 2, nothing measured", async () => {
  for (
    const [args, says] of [
      [["--model", "resnet50"], "--model must be one of mnist_a, cifar_resnet"],
      [["--backend", "tpu"], "--backend must be one of"],
      [["--seconds", "0"], "--seconds must be a positive number"],
      [["--rounds", "2"], "--rounds only applies with --peer or --kernels"],
      [["--kernels"], "--kernels needs --backend webgpu"],
      [["--backend", "native", "--stock"], "--stock needs --backend webgpu"],
      [["--batch", "4"], "--batch and --only only apply with --kernels"],
      [["--memory-steps", "1.5"], "--memory-steps must be a whole number"],
    ] as const
  ) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}`);
    assert.ok(r.stderr.split("\n")[0].includes(says), `${args.join(" ")}: ${r.stderr.split("\n")[0]}`);
    assert.equal(r.stdout, "");
  }
});

Deno.test({
  name: "bench --backend webgpu --kernels: one line per case, ours and TF.js's timed, every kernel of ours covered",
  ignore: !adapter.available,
  fn: async () => {
    const r = await run(["--backend", "webgpu", "--kernels", "--batch", "2", "--rounds", "1"]);
    assert.equal(r.code, 0, r.stderr);
    const all = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const lines = all.filter((l) => !l.profile), profiles = all.filter((l) => l.profile);
    for (const l of lines) {
      assert.ok(l.ours_ms > 0 && l.stock_ms > 0 && l.speedup > 0, JSON.stringify(l));
      assert.equal(l.backend, "webgpu");
    }
    // Each training step profiled with ours and with stock: ours run our filter gradient, stock TF.js's.
    assert.deepEqual(profiles.map((p) => p.kernels), ["ours", "stock", "ours", "stock"]);
    for (const p of profiles) assert.ok(p.wall_ms > 0 && p.top.some(([k]: string[]) => k === "Conv2DBackpropFilter"));
    assert.ok(profiles[0].top.some(([k]: string[]) => k === "AdvMomentumUpdate"), JSON.stringify(profiles[0]));
    assert.ok(!profiles[1].top.some(([k]: string[]) => k === "AdvMomentumUpdate"), JSON.stringify(profiles[1]));
    const cases = new Set(lines.map((l) => `${l.model} ${l.case}`));
    for (const c of ["Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "training step", "PGD step"]) {
      assert.ok(cases.has(`cifar_resnet ${c}`) && cases.has(`mnist_a ${c}`), `${c} missing: ${[...cases]}`);
    }
    assert.ok(r.stderr.includes("our kernels: Conv2D"), r.stderr);
  },
});

Deno.test({
  name: "bench --backend webgpu --stock: the models' line with TF.js's own kernels",
  ignore: !adapter.available,
  fn: async () => {
    const r = await run(["--backend", "webgpu", "--stock", "--model", "mnist_a", "--seconds", "0.01"]);
    assert.equal(r.code, 0, r.stderr);
    const [line] = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(line.kernels, "stock");
    for (const k of ["forward", "pgd_step", "train"]) assert.ok(line[k] > 0, `${k}: ${line[k]}`);
    assert.ok(r.stderr.includes("TF.js's own kernels"), r.stderr);
  },
});
