/**
 * Figure 3: the smoke preset end to end (every cell, the observations, the
 * files); two local shards merged give the unsharded results file byte for
 * byte apart from timings; the observations read the cells as the paper's
 * claims; bad capacities are refused.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { parseArgsFor, presetConfig, runExperiment, runShard, UserError, writeResults } from "../mod.ts";
import { type Cell, experiment, observe, type Results } from "../experiments/figure3.ts";
import { onFastBackend } from "./fixtures/cifar_data.ts";

/** The results file's text without what differs between two runs of one config: times and the command line. */
function timeless(r: Results): string {
  const { wall_seconds: _w, command: _c, units, ...rest } = r;
  return JSON.stringify({ ...rest, units: { ...units!, seconds: 0 } }, null, 2);
}

Deno.test("figure3 smoke: every capacity × training cell, the observations, the files; shards merge to the same file", () =>
  onFastBackend(async () => {
    const tmp = await Deno.makeTempDir();
    const config = presetConfig(experiment, "mnist", "smoke");
    const options = { preset: "smoke", quiet: true, command: "test", cacheDir: `${tmp}/cache` };
    const whole = await runExperiment(experiment, config, options);
    assertEquals(whole.cells.map((c) => `${c.scale} ${c.training}`), [
      "1 natural",
      "1 fgsm",
      "1 pgd",
      "2 natural",
      "2 fgsm",
      "2 pgd",
    ]);
    assertEquals(whole.cells[3].net, "conv 4, conv 8, FC 16");
    assertEquals(whole.observations.length, 5);
    assert(whole.cells.every((c) => c.natural >= 0 && c.natural <= 1 && Number.isFinite(c.trainLoss)));
    const written = await writeResults(experiment, whole, `${tmp}/out`);
    assert(written.some((p) => p.endsWith("figure3_mnist.png")));
    const md = await Deno.readTextFile(`${tmp}/out/figure3_mnist.md`);
    assert(md.includes("## The paper's observations") && md.includes("PGD training"), md);

    // The same cells over two shards, from the cached models but not the cached cells.
    await Deno.remove(`${tmp}/cache/units`, { recursive: true });
    const shards = [];
    for (const index of [1, 0]) {
      shards.push(await runShard(experiment, config, { index, count: 2, from: "test" }, options));
    }
    assertEquals(shards.map((s) => s.ran), [
      ["scale-1-fgsm", "scale-2-natural", "scale-2-pgd"],
      ["scale-1-natural", "scale-1-pgd", "scale-2-fgsm"],
    ]);
    const merged = await runExperiment(experiment, config, { ...options, merge: true });
    assertEquals(timeless(merged), timeless(whole));
    await Deno.remove(tmp, { recursive: true });
  }));

Deno.test("the observations read the cells as the paper's claims, and say when cells are missing", () => {
  const cell = (scale: number, training: Cell["training"], natural: number, fgsm: number, pgd: number, loss: number) =>
    ({ scale, training, net: "", params: 0, hash: "", natural, fgsm, pgd, trainLoss: loss }) as Cell;
  const cells = [
    cell(1, "natural", 0.9, 0.1, 0, 0.3),
    cell(1, "fgsm", 0.6, 0.8, 0.01, 0.5),
    cell(1, "pgd", 0.4, 0.3, 0.2, 1.5),
    cell(16, "natural", 0.99, 0.4, 0, 0.01),
    cell(16, "fgsm", 0.98, 0.9, 0.1, 0.1),
    cell(16, "pgd", 0.98, 0.95, 0.92, 0.2),
  ];
  const holds = observe(cells).map((o) => o.holds);
  assertEquals(holds, [true, true, true, true, true]);
  assert(observe(cells)[1].measured.includes("label leaking at capacities 1"));
  // A PGD-trained net that gets less robust with capacity: the last claim fails.
  const worse = cells.map((c) => c.scale === 16 && c.training === "pgd" ? { ...c, pgd: 0.1 } : c);
  assertEquals(observe(worse)[4].holds, false);
  assertEquals(observe(cells.slice(0, 3)).map((o) => o.holds), [null, true, true, null, null]);
});

Deno.test("figure3 refuses capacities that are not rising whole numbers", () => {
  for (const scales of ["1", "2,1", "1,2.5", "0,1", "a,b"]) {
    assertThrows(() => parseArgsFor(experiment, ["--scales", scales]), UserError, "--scales must be");
  }
  const parsed = parseArgsFor(experiment, ["--dataset", "cifar10", "--scales", "1,4"]);
  assert("config" in parsed && parsed.config.scales === "1,4" && parsed.config.eps === 8);
});
