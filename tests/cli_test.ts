import { assert, assertEquals, assertThrows, DENO } from "./assert.ts";
import { parseArgsFor, parseExperimentArgs, presetConfig, recipeOf, specFor, UserError, zooConfig } from "../mod.ts";
import { experiment } from "../experiments/figure1.ts";

const SPEC = specFor(experiment, "mnist");
const DEFAULTS = presetConfig(experiment, "mnist", "quick");
const PAPER = presetConfig(experiment, "mnist", "paper");
const CIFAR_DEFAULTS = presetConfig(experiment, "cifar10", "quick");
const parse = (args: string[]) => parseArgsFor(experiment, args);

Deno.test("flags override the preset, which overrides the defaults", () => {
  const r = parseExperimentArgs(["--preset", "paper", "--restarts", "20", "--backend", "cpu"], SPEC);
  assert("config" in r);
  assertEquals(r.config.restarts, 20);
  assertEquals(r.config.steps, PAPER.steps);
  assertEquals(r.config.eps, DEFAULTS.eps);
  assertEquals(r.common.backend, "cpu");
  assertEquals(r.common.preset, "paper");
});

Deno.test("bad command lines are one clear error each", () => {
  const cases: [string[], string][] = [
    [["--epsilon", "0.3"], "known flags: --preset"],
    [["--eps", "0"], "--eps must be in (0, 1]"],
    [["--eps", "8"], "got 8"],
    [["--eps", "abc"], '--eps expects a number, got "abc"'],
    [["--steps", "0"], "--steps must be an integer ≥ 1, got 0"],
    [["--steps", "2.5"], "--steps must be an integer ≥ 1, got 2.5"],
    [["--backend", "tpu"], 'unknown backend "tpu", expected one of auto, webgpu, native, wasm, cpu'],
    [["--preset", "huge"], 'unknown preset "huge", expected one of quick, paper, smoke'],
    [["stray"], "known flags"],
    [["--eps", "-1"], "--eps -1: write --eps=-1 for a value that starts with a dash"],
    [["--eps", "--steps", "3"], "--eps needs a value, got the flag --steps"],
  ];
  for (const [args, message] of cases) assertThrows(() => parseExperimentArgs(args, SPEC), UserError, message);
});

Deno.test("--help lists every flag and preset", () => {
  const r = parseExperimentArgs(["--help"], SPEC);
  assert("help" in r);
  for (const flag of ["--eps", "--step-size", "--restarts", "--backend", "--retrain", "--preset"]) {
    assert(r.help.includes(flag), `help lacks ${flag}`);
  }
  assert(r.help.includes("paper, smoke"));
});

Deno.test("figure1 with a bad flag exits 2 with one line and writes nothing", async () => {
  const out = await Deno.makeTempDir();
  const cmd = new Deno.Command(DENO, {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-ffi",
      `--allow-write=${out}`,
      "experiments/figure1.ts",
      "--eps=-1",
      "--out",
      out,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stderr } = await cmd.output();
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assertEquals(code, 2);
  assertEquals(lines.length, 1);
  assert(lines[0].startsWith("error: --eps must be in (0, 1]"), lines[0]);
  assertEquals(Array.from(Deno.readDirSync(out)), []);
  await Deno.remove(out);
});

Deno.test("--dataset cifar10 switches to the CIFAR-10 defaults and checks the ε scale", () => {
  const args = ["--dataset", "cifar10", "--restarts", "10"];
  const r = parse(args);
  assert("config" in r);
  assertEquals(r.config.eps, CIFAR_DEFAULTS.eps);
  assertEquals(r.config.batch, 128);
  assertEquals(r.config.restarts, 10);
  const bad = ["--dataset=cifar10", "--eps", "0.03"];
  assertThrows(() => parse(bad), UserError, "looks like a [0,1]-scale value");
  const mnistEps = ["--eps", "8"];
  assertThrows(() => parse(mnistEps), UserError, "--eps must be in (0, 1] for MNIST");
  const schedule = ["--dataset", "cifar10", "--lr-schedule", "cosine"];
  assertThrows(
    () => parse(schedule),
    UserError,
    '--lr-schedule must be steps or cyclic, got "cosine"',
  );
  const other = ["--dataset", "svhn"];
  assertThrows(
    () => parse(other),
    UserError,
    '--dataset must be mnist or cifar10, got "svhn"',
  );
});

Deno.test("CIFAR-10 schedules: the quick preset's one cycle peaks at 40%, the paper preset drops at 50% and 75% and keeps the paper's decay", () => {
  const quick = zooConfig("A_nat", "cifar10", recipeOf(CIFAR_DEFAULTS));
  assertEquals(quick.lrPoints, [[0, 0], [Math.round(0.4 * quick.steps), CIFAR_DEFAULTS.lr], [quick.steps, 0]]);
  assertEquals(quick.lrBoundaries, undefined);
  const paper = zooConfig("A", "cifar10", recipeOf(presetConfig(experiment, "cifar10", "paper")));
  assertEquals(paper.lrPoints, undefined);
  assertEquals([paper.lr, paper.lrBoundaries, paper.lrValues], [0.1, [40000, 60000], [0.01, 0.001]]);
  // The paper's weight decay whatever the quick preset uses (5e-4, chosen by bench/sweep_torch.py).
  assertEquals([paper.weightDecay, quick.weightDecay], [2e-4, 5e-4]);
});
