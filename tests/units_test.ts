/**
 * Units and shards: the shard of a process from `--shard`, Slurm's array
 * variables or Kubernetes' completion index; units partitioned k mod n; a
 * unit's result written once and never redone; and a table split over two
 * shards and merged gives exactly the unsharded results (apart from timings),
 * while a merge with a shard missing says so.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  parseArgsFor,
  parseShard,
  presetConfig,
  resolveShard,
  type Results,
  runExperiment,
  runShard,
  runUnits,
  type TableBody,
  type TableConfig,
  unitsOf,
  UserError,
  writeResults,
} from "../mod.ts";
import { experiment as table1 } from "../experiments/table1.ts";
import { experiment as figure1 } from "../experiments/figure1.ts";
import { onFastBackend } from "./fixtures/cifar_data.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("--shard i/n is parsed strictly", () => {
  assertEquals(parseShard("1/4"), { index: 1, count: 4 });
  assertEquals(parseShard(" 0 / 1 "), { index: 0, count: 1 });
  assertThrows(() => parseShard("4/4"), UserError, "below 4");
  assertThrows(() => parseShard("0/0"), UserError, "at least 1");
  assertThrows(() => parseShard("1-4"), UserError, 'expects i/n (shard i of n, counting from 0), got "1-4"');
  assertThrows(() => parseShard("-1/4"), UserError, "expects i/n");
});

Deno.test("the shard: the flag wins, then Slurm's array rank, then JOB_COMPLETION_INDEX with --shards, else 0/1", () => {
  const slurm = { SLURM_ARRAY_TASK_ID: "5", SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_COUNT: "3" };
  assertEquals(resolveShard("2/3", undefined, env(slurm)), { index: 2, count: 3, from: "--shard" });
  // An array 1-3 runs shards 0, 1, 2; an array 1-5:2 (tasks 1, 3, 5) too.
  assertEquals(resolveShard(undefined, undefined, env({ ...slurm, SLURM_ARRAY_TASK_ID: "1" })).index, 0);
  assertEquals(resolveShard(undefined, undefined, env({ ...slurm, SLURM_ARRAY_TASK_ID: "3" })).index, 2);
  const stepped = resolveShard(undefined, undefined, env({ ...slurm, SLURM_ARRAY_TASK_STEP: "2" }));
  assertEquals([stepped.index, stepped.count], [2, 3]);
  assert(stepped.from.startsWith("SLURM_ARRAY_TASK_ID=5"));
  assertThrows(
    () => resolveShard(undefined, undefined, env({ ...slurm, SLURM_ARRAY_TASK_ID: "4", SLURM_ARRAY_TASK_STEP: "2" })),
    UserError,
    "not on the array's grid",
  );
  assertThrows(() => resolveShard(undefined, 4, env({ ...slurm, SLURM_ARRAY_TASK_ID: "1" })), UserError, "disagrees");
  assertEquals(resolveShard(undefined, 4, env({ JOB_COMPLETION_INDEX: "3" })).index, 3);
  assertThrows(() => resolveShard(undefined, undefined, env({ JOB_COMPLETION_INDEX: "3" })), UserError, "--shards n");
  assertThrows(() => resolveShard(undefined, 3, env({ JOB_COMPLETION_INDEX: "3" })), UserError, "not below");
  assertEquals(resolveShard(undefined, undefined, env({})), { index: 0, count: 1, from: "no shard given" });
  assertThrows(() => resolveShard("1/2", 3, env({})), UserError, "disagree");
});

Deno.test("units go to shard k mod n: every unit exactly once over the shards", () => {
  const list = Array.from({ length: 7 }, (_, k) => k);
  const shards = [0, 1, 2].map((index) => unitsOf(list, { index, count: 3 }));
  assertEquals(shards, [[0, 3, 6], [1, 4], [2, 5]]);
});

Deno.test("a unit's result is written once and not redone; a merge runs nothing and names what is missing", async () => {
  const dir = await Deno.makeTempDir();
  let calls = 0;
  const list = ["a", "b", "c"].map((key) => ({ key, run: () => Promise.resolve(`${key}${++calls}`) }));
  const shard = (index: number) => ({ index, count: 2, from: "test" });
  const first = await runUnits(list, dir, { shard: shard(0), backend: "cpu" });
  assertEquals([first.ran, first.missing, calls], [["a", "c"], ["b"], 2]);
  assertEquals(first.results.get("c")?.result, "c2");
  const again = await runUnits(list, dir, { shard: shard(0), backend: "cpu" });
  assertEquals([again.ran, again.skipped, calls], [[], ["a", "c"], 2]);
  const merged = await runUnits(list, dir, { shard: shard(0), backend: "cpu", merge: true });
  assertEquals([merged.ran, merged.missing, calls], [[], ["b"], 2]);
  // A result file cut short (a machine that died mid-write before atomic writes) is run again.
  await Deno.writeTextFile(`${dir}/b.json`, "{");
  const last = await runUnits(list, dir, { shard: shard(1), backend: "cpu" });
  assertEquals([last.ran, last.missing, calls], [["b"], [], 3]);
  await assertRejects(
    () => runUnits([list[0], list[0]], dir, { shard: shard(0), backend: "cpu" }),
    RangeError,
    "share",
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("only experiments split into units take --shard, --shards and --merge", () => {
  assertThrows(() => parseArgsFor(figure1, ["--shard", "0/2"]), UserError, "--shard");
  const parsed = parseArgsFor(table1, ["--shard", "1/2", "--preset", "smoke"]);
  assert("common" in parsed && parsed.common.shard === "1/2" && !parsed.common.merge);
  assertThrows(() => parseArgsFor(table1, ["--merge", "--shard", "1/2"]), UserError, "without --shard");
  assertThrows(() => parseArgsFor(table1, ["--shards", "two"]), UserError, "--shards expects an integer");
  const help = parseArgsFor(table1, ["--help"]);
  assert("help" in help && help.help.includes("SLURM_ARRAY_TASK_ID") && help.help.includes("--merge"));
});

/** A results file without what differs between runs of the same config: times, the command line, where. */
function timeless(r: Results<TableConfig, TableBody>) {
  const { wall_seconds: _w, command: _c, units, ...rest } = r;
  return { ...rest, units: { ...units!, seconds: 0 } };
}

Deno.test("table1 over two shards, merged, is the unsharded table; a merge with a shard missing says so", () =>
  onFastBackend(async () => {
    const tmp = await Deno.makeTempDir();
    const config = { ...presetConfig(table1, "mnist", "smoke"), saveAdv: `${tmp}/adv` };
    const cacheDir = `${tmp}/cache`;
    const options = { preset: "smoke", quiet: true, command: "test", cacheDir };
    const whole = await runExperiment(table1, config, options);
    // The same cache (its models), without the whole run's unit results.
    await Deno.remove(`${cacheDir}/units`, { recursive: true });
    await assertRejects(
      () => runExperiment(table1, config, { ...options, merge: true }),
      UserError,
      "nothing to merge",
    );
    const first = await runShard(table1, config, { index: 1, count: 2, from: "test" }, options);
    // Units: the checks, then each of the 20 rows on examples 0-3, then on examples 4-5; shard 1 of 2 has every other.
    assertEquals([first.ran.length, first.done, first.total], [20, 20, 41]);
    assert(first.ran[0].startsWith("natural_1x1_A-") && first.ran[0].endsWith("-00000-00003"), first.ran[0]);
    const partial = await runExperiment(table1, config, { ...options, merge: true });
    assertEquals(partial.units!.missing.length, 21);
    assertEquals(partial.units!.missing[0], "checks");
    assertEquals(partial.outcomes[0].index, []); // no slice has all of its rows yet
    await writeResults(table1, partial, `${tmp}/out`);
    assert((await Deno.readTextFile(`${tmp}/out/table1_mnist.md`)).startsWith("> **Incomplete:** 21 of 41 units"));
    const second = await runShard(table1, config, { index: 0, count: 2, from: "test" }, options);
    assertEquals(second.ran.length, 21);
    const merged = await runExperiment(table1, config, { ...options, merge: true });
    assertEquals(merged.units!.missing, []);
    assertEquals(timeless(merged), timeless(whole));
    // A rerun finds every unit done and recomputes nothing.
    const rerun = await runShard(table1, config, { index: 0, count: 2, from: "test" }, options);
    assertEquals([rerun.ran, rerun.skipped.length], [[], 21]);
    await Deno.remove(tmp, { recursive: true });
  }));
