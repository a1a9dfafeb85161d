/**
 * The experiment harness: experiments import only mod.ts and each has its task;
 * the results header is stamped by the harness; redraw finds an experiment by
 * name; command-line mistakes common to every experiment are one clear error;
 * the template experiment runs end to end.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  datasetFlag,
  gitCommit,
  loadSplit,
  parseArgsFor,
  presetConfig,
  redrawAll,
  runExperiment,
  tf,
  UserError,
  writeResults,
} from "../mod.ts";
import { findExperiment } from "../experiments/figures.ts";
import { experiment as sweep } from "../experiments/eps_sweep.ts";
import { experiment as figure1 } from "../experiments/figure1.ts";

await tf.setBackend("cpu");

/** The files of experiments/ that are scripts over the results, not experiments. */
const SCRIPTS = ["figures.ts", "gallery.ts"];
const EXPERIMENTS = Array.from(Deno.readDirSync("experiments"))
  .map((e) => e.name)
  .filter((n) => n.endsWith(".ts") && !SCRIPTS.includes(n))
  .sort();

Deno.test("experiments import nothing but ../mod.ts, and each has its task and its experiment of the same name", async () => {
  const tasks = JSON.parse(await Deno.readTextFile("deno.json")).tasks;
  assert(EXPERIMENTS.length >= 4, EXPERIMENTS.join(", "));
  for (const file of [...EXPERIMENTS, ...SCRIPTS]) {
    const text = await Deno.readTextFile(`experiments/${file}`);
    const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)].map((m) => m[1]);
    for (const s of specifiers) assert(s === "../mod.ts" || s.startsWith("node:"), `${file} imports ${s}`);
  }
  for (const file of EXPERIMENTS) {
    const name = file.replace(/\.ts$/, "");
    assertEquals((await findExperiment(name))?.name, name, file);
    assert(tasks[name]?.command.endsWith(`experiments/${file}`), `deno.json has no task ${name} running ${file}`);
  }
  assertEquals(await findExperiment("no_such_experiment"), undefined);
});

Deno.test("common command-line mistakes: --dataset twice, --data-dir on MNIST, a dataset the experiment lacks", () => {
  assertThrows(() => datasetFlag(["--dataset", "cifar10", "--dataset", "mnist"]), UserError, "given 2 times");
  assertThrows(() => parseArgsFor(figure1, ["--data-dir", "/tmp"]), UserError, "--data-dir is for CIFAR-10");
  assertThrows(() => parseArgsFor(figure1, ["--dataset", "svhn"]), UserError, "--dataset must be mnist or cifar10");
  assertThrows(() => parseArgsFor(figure1, ["--train-eps", "8"]), UserError, "--train-eps must be in (0, 1]");
  const ok = parseArgsFor(figure1, ["--dataset", "cifar10", "--data-dir", "/data"]);
  assert("common" in ok && ok.common.dataDir === "/data");
});

Deno.test("the template experiment end to end: header stamped by the harness, files, redraw by name", async () => {
  const cacheDir = await Deno.makeTempDir();
  const out = await Deno.makeTempDir();
  const config = presetConfig(sweep, "mnist", "smoke");
  const results = await runExperiment(sweep, config, { preset: "smoke", cacheDir, quiet: true, command: "x y" });
  assertEquals(results.rows.length, 2 * config.points);
  assertEquals(results.rows.filter((r) => r.eps === 0).length, 2);
  assertEquals([results.experiment, results.dataset, results.preset, results.seed], ["eps_sweep", "mnist", "smoke", 0]);
  assertEquals(results.command, "x y");
  assertEquals(results.commit, await gitCommit());
  assert(results.wall_seconds > 0 && results.versions["tfjs-core"] === "4.22.0");
  const written = await writeResults(sweep, results, out);
  assertEquals(written.map((p) => p.split("/").pop()), [
    "eps_sweep_mnist.results.json",
    "eps_sweep_mnist.vl.json",
    "eps_sweep_mnist.svg",
    "eps_sweep_mnist.png",
    "eps_sweep_mnist.md",
  ]);
  const md = await Deno.readTextFile(`${out}/eps_sweep_mnist.md`);
  await Deno.remove(`${out}/eps_sweep_mnist.md`);
  await redrawAll(out, findExperiment);
  assertEquals(await Deno.readTextFile(`${out}/eps_sweep_mnist.md`), md);
  // A results file of an experiment that does not exist is named in the error.
  await Deno.writeTextFile(`${out}/x_mnist.results.json`, JSON.stringify({ experiment: "nope", dataset: "mnist" }));
  const { failed } = await redrawAll(out, findExperiment);
  assertEquals(failed.length, 1);
  assert(failed[0].startsWith(`${out}/x_mnist.results.json: no experiment "nope"`), failed[0]);
  await Deno.remove(cacheDir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("--unverified-data loads CIFAR-10 files that differ from the official ones; without it they are refused", async () => {
  const root = await Deno.makeTempDir();
  const dir = `${root}/cifar-10-batches-bin`;
  await Deno.mkdir(dir);
  // Files of the official size, all zeros (sparse): well formed, but not the official bytes.
  for (const name of ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]) {
    await Deno.writeFile(`${dir}/${name}.bin`, new Uint8Array());
    await Deno.truncate(`${dir}/${name}.bin`, 10000 * 3073);
  }
  const options = { dataDir: dir, cacheDir: `${root}/cache`, limit: 10 };
  await assertRejects(() => loadSplit("cifar10", "test", options), UserError, "--unverified-data");
  assertEquals((await loadSplit("cifar10", "test", { ...options, unverifiedData: true })).n, 10);
  const parsed = parseArgsFor(figure1, ["--dataset", "cifar10", "--unverified-data"]);
  assert("common" in parsed && parsed.common.unverifiedData);
  assertThrows(() => parseArgsFor(figure1, ["--unverified-data"]), UserError, "--unverified-data is for CIFAR-10");
  await Deno.remove(root, { recursive: true });
});
