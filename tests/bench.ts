/**
 * Throughput of MNIST model A per backend, in images per second, as one JSON
 * line per backend:
 *
 *   {"backend":"native","model":"mnist_a","forward":…,"pgd_step":…,"train":…,
 *    "rss_mb":…,"num_tensors_growth":…}
 *
 * - forward: inference logits at batch 100;
 * - pgd_step: one L∞ PGD step at batch 100 (input gradient of the summed
 *   cross-entropy, x + 0.01·sign(g), projection onto the ε = 0.3 ball and [0, 1]);
 * - train: one Adam (lr 1e-4, the library's optimiser) step on the mean cross-entropy at batch 50;
 * - rss_mb: resident memory at the end; num_tensors_growth: tensors alive after
 *   the timed loops minus before them, summed over the three (0 unless
 *   something leaks; the warm-up runs first, so Adam's moments do not count).
 *
 * Random inputs, no dataset. Each measurement warms up first, then runs for
 * `--seconds` (a measurement whose warm-up alone took that long reports the
 * warm-up). A measurement that throws (wasm training without its gradient
 * kernels, say) reports null.
 *
 *   deno run --allow-read --allow-env --allow-ffi tests/bench.ts --backend native --seconds 5
 *   deno run --allow-read --allow-env --allow-ffi tests/bench.ts --backend all
 *
 * --allow-ffi is for the native backend (system OpenBLAS; all that
 * `--backend native` or `cpu` needs); --allow-read for the wasm binaries;
 * --allow-env lets BLAS_LIBRARY choose the library. OpenBLAS threads follow
 * OPENBLAS_NUM_THREADS (default: all cores).
 *
 * `--peer` compares with PyTorch in the same run: for `--rounds` rounds it runs
 * each chosen backend and then tests/peer_torch.py (the same net, batches and
 * timing rule), each in a process of its own so that none shares threads with
 * another, prints every JSON line, then one line of ratios of the medians:
 *
 *   {"ratios":{"native/pytorch":{"forward":…,"pgd_step":…,"train":…}},
 *    "medians":{"native":{…},"pytorch":{…}},"rounds":2}
 *
 * It needs a python3 that can import torch (Debian: `sudo apt-get install
 * python3-torch`, which runs with /usr/bin/python3) and
 * `--allow-run=deno,python3,/usr/bin/python3` (`deno task bench` grants it):
 * Deno re-runs this file through its own executable, or `deno` on PATH.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { mnistNet, MODEL_A } from "../lib/models.ts";
import { Adam } from "../lib/optim.ts";
import { registerNativeBackend } from "../lib/native.ts";
import { tf } from "../lib/tf.ts";
import { registerWasmBackend } from "../lib/wasm.ts";

/** Every benchmark setting. */
export interface Config {
  backends: Backend[];
  seconds: number; // timed run per measurement
  forwardBatch: number;
  pgdBatch: number;
  trainBatch: number;
  eps: number; // ε of the projection in the PGD step (MNIST pixels in [0, 1])
  stepSize: number; // α of the PGD step
  learningRate: number; // Adam
  seed: number;
  peer: boolean; // also run the PyTorch peer, alternating, and print ratios
  rounds: number; // rounds of the peer comparison
  peerThreads: number; // torch threads of the peer
}

const BACKENDS = ["native", "cpu", "wasm"] as const;
type Backend = typeof BACKENDS[number];

export const DEFAULTS: Config = {
  backends: ["native"],
  seconds: 5,
  forwardBatch: 100,
  pgdBatch: 100,
  trainBatch: 50,
  eps: 0.3,
  stepSize: 0.01,
  learningRate: 1e-4,
  seed: 0,
  peer: false,
  rounds: 2,
  peerThreads: 2,
};

/** One JSON line of output. */
export interface BenchResult {
  backend: Backend;
  model: "mnist_a";
  forward: number | null;
  pgd_step: number | null;
  train: number | null;
  rss_mb: number;
  num_tensors_growth: number;
}

const USAGE = `usage: deno task bench [options]
   or: deno run --allow-read --allow-env --allow-ffi [--allow-run=deno,python3,/usr/bin/python3] tests/bench.ts [options]

  --backend native|cpu|wasm|all   backend(s) to measure (default native; a comma list such as native,wasm)
  --seconds N                     timed seconds per measurement (default 5)
  --peer                          also measure PyTorch (tests/peer_torch.py), alternating
                                  with ours, each run its own process, and print the
                                  ratios of the medians (needs --allow-run and python3-torch)
  --rounds N                      rounds of --peer (default 2)
  --peer-threads N                torch threads of the peer (default 2)
  --help                          this text

Prints one JSON line per backend: img/s of forward (batch 100), PGD step
(batch 100) and Adam training step (batch 50) on MNIST model A.`;

function parse(args: string[]): Config | "help" {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      backend: { type: "string" },
      seconds: { type: "string" },
      peer: { type: "boolean" },
      rounds: { type: "string" },
      "peer-threads": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return "help";
  const config = { ...DEFAULTS };
  if (values.backend !== undefined) {
    const b = values.backend;
    const names = b.split(",");
    if (b === "all") config.backends = [...BACKENDS];
    else if (names.every((n) => (BACKENDS as readonly string[]).includes(n))) config.backends = names as Backend[];
    else throw new Error(`--backend must be one of ${BACKENDS.join(", ")}, a comma list of them, or all, got "${b}"`);
  }
  if (values.seconds !== undefined) {
    const s = Number(values.seconds);
    if (!Number.isFinite(s) || s <= 0) {
      throw new Error(`--seconds must be a positive number, got "${values.seconds}"`);
    }
    config.seconds = s;
  }
  config.peer = values.peer ?? false;
  const count = (flag: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got "${v}"`);
    return n;
  };
  config.rounds = count("rounds", values.rounds, config.rounds);
  config.peerThreads = count("peer-threads", values["peer-threads"], config.peerThreads);
  if (!config.peer && (values.rounds !== undefined || values["peer-threads"] !== undefined)) {
    throw new Error("--rounds and --peer-threads only apply with --peer");
  }
  return config;
}

/**
 * Images per second of `step` (which processes `batch` images and returns a
 * tensor to read back), and the tensors it left behind over the timed loop.
 */
async function throughput(
  batch: number,
  seconds: number,
  step: () => tf.Tensor,
): Promise<{ rate: number; growth: number }> {
  const once = async () => {
    const out = step();
    await out.data();
    out.dispose();
  };
  let t0 = performance.now();
  await once();
  const warm = (performance.now() - t0) / 1000;
  if (warm >= seconds) return { rate: batch / warm, growth: 0 }; // too slow to run again
  if (warm < seconds / 10) await once();
  const before = tf.memory().numTensors;
  let n = 0;
  t0 = performance.now();
  while ((performance.now() - t0) / 1000 < seconds) {
    await once();
    n++;
  }
  const rate = (n * batch) / ((performance.now() - t0) / 1000);
  return { rate, growth: tf.memory().numTensors - before };
}

function oneHot(batch: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => tf.oneHot(tf.randomUniform([batch], 0, 10, "int32", seed), 10) as tf.Tensor2D);
}

async function measure(backend: Backend, config: Config): Promise<BenchResult> {
  if (backend === "native") {
    const r = await registerNativeBackend();
    if (!r.ok) throw new Error(`native backend cannot load: ${r.reason}`);
    console.error(`native: BLAS ${r.path}`);
  } else if (backend === "wasm") {
    await registerWasmBackend();
  }
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to start`);
  await tf.ready();

  const model = mnistNet(MODEL_A, config.seed);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = new Adam(vars, config.learningRate); // the library's Adam, as training uses
  const s = config.seed;
  const xf = tf.randomUniform([config.forwardBatch, 28, 28, 1], 0, 1, "float32", s + 1);
  const x0 = tf.randomUniform([config.pgdBatch, 28, 28, 1], 0, 1, "float32", s + 2);
  const yp = oneHot(config.pgdBatch, s + 3);
  const xt = tf.randomUniform([config.trainBatch, 28, 28, 1], 0, 1, "float32", s + 4);
  const yt = oneHot(config.trainBatch, s + 5);
  const lower = tf.clipByValue(tf.sub(x0, config.eps), 0, 1);
  const upper = tf.clipByValue(tf.add(x0, config.eps), 0, 1);

  const logitsOf = (x: tf.Tensor, training: boolean) => model.apply(x, { training }) as tf.Tensor2D;
  const summedCE = (x: tf.Tensor) => tf.neg(tf.sum(tf.mul(yp, tf.logSoftmax(logitsOf(x, false))))) as tf.Scalar;
  const inputGrad = tf.grad(summedCE);
  let xAdv = x0.clone();

  const forward = () => tf.tidy(() => logitsOf(xf, false));
  const pgdStep = () => {
    const next = tf.tidy(() => {
      const g = inputGrad(xAdv);
      const stepped = tf.add(xAdv, tf.mul(config.stepSize, tf.sign(g)));
      return tf.minimum(tf.maximum(stepped, lower), upper);
    });
    xAdv.dispose();
    xAdv = next;
    return tf.sum(next);
  };
  const train = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.neg(tf.sum(tf.mul(yt, tf.logSoftmax(logitsOf(xt, true))), -1))) as tf.Scalar,
        vars,
      );
      optimizer.apply(vars.map((v) => grads[v.name]));
      return value;
    });

  let growth = 0;
  const attempt = async (name: string, batch: number, step: () => tf.Tensor) => {
    try {
      const r = await throughput(batch, config.seconds, step);
      growth += r.growth;
      return Math.round(r.rate * 10) / 10;
    } catch (err) {
      console.error(`${backend} ${name}: ${err instanceof Error ? err.message : err}`);
      return null;
    }
  };
  const result: BenchResult = {
    backend,
    model: "mnist_a",
    forward: await attempt("forward", config.forwardBatch, forward),
    pgd_step: await attempt("pgd_step", config.pgdBatch, pgdStep),
    train: await attempt("train", config.trainBatch, train),
    rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
    num_tensors_growth: 0,
  };
  result.num_tensors_growth = growth;
  tf.dispose([xf, x0, yp, xt, yt, lower, upper, xAdv]);
  optimizer.dispose();
  model.dispose();
  return result;
}

/** The PyTorch peer's JSON line (tests/peer_torch.py). */
interface PeerResult {
  backend: "pytorch";
  forward: number | null;
  pgd_step: number | null;
  train: number | null;
}

const METRICS = ["forward", "pgd_step", "train"] as const;
type Metrics = Record<typeof METRICS[number], number | null>;

const PEER_INSTALL = "sudo apt-get install python3-torch";
const PEER_PYTHONS = ["/usr/bin/python3", "python3"]; // Debian's python3-torch lives under the first
const PEER_RUN_FLAG = "--allow-run=deno,python3,/usr/bin/python3";

async function canRun(command: string): Promise<boolean> {
  return (await Deno.permissions.query({ name: "run", command })).state === "granted";
}

/** The first python that can import torch, or an error that says how to get one. */
async function findPeerPython(): Promise<string> {
  const denied: string[] = [];
  for (const python of PEER_PYTHONS) {
    if (!(await canRun(python))) {
      denied.push(python);
      continue;
    }
    try {
      const probe = await new Deno.Command(python, {
        args: ["-c", "import torch"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      if (probe.success) return python;
    } catch {
      // not installed under this name
    }
  }
  const grant = `${PEER_RUN_FLAG} (deno task bench grants it)`;
  if (denied.length === PEER_PYTHONS.length) throw new Error(`--peer needs ${grant} to run the PyTorch peer`);
  const also = denied.length ? `, or grant ${grant}` : "";
  throw new Error(
    `--peer needs PyTorch, which no python3 it may run can import: install it with \`${PEER_INSTALL}\`${also}`,
  );
}

/** How to run Deno again: its own executable where allowed, else `deno` on PATH. */
async function findDeno(): Promise<string> {
  if (await canRun(Deno.execPath())) return Deno.execPath();
  if (await canRun("deno")) return "deno";
  throw new Error(`--peer needs ${PEER_RUN_FLAG} to re-run the benchmark (deno task bench grants it)`);
}

/** Runs `command` with `args` and returns its last stdout line that is a JSON object; stderr passes through. */
async function jsonLineOf(command: string, args: string[]): Promise<unknown> {
  const out = await new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "inherit" })
    .output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("{"));
  if (!out.success || lines.length === 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (exit code ${out.code}${lines.length ? "" : ", no JSON line"})`,
    );
  }
  return JSON.parse(lines[lines.length - 1]);
}

function median(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function medians(results: Metrics[]): Metrics {
  const m = {} as Metrics;
  for (const k of METRICS) {
    const v = median(results.map((r) => r[k]));
    m[k] = v === null ? null : Math.round(v * 10) / 10;
  }
  return m;
}

/**
 * The same-run comparison: rounds of (each backend, then the peer), each a
 * process of its own, every JSON line printed as it comes, then the ratios of
 * the medians (ours / PyTorch; above 1 means faster than PyTorch).
 */
async function peerMode(config: Config): Promise<void> {
  const python = await findPeerPython();
  const deno = await findDeno();
  const here = fileURLToPath(import.meta.url);
  const denoJson = fileURLToPath(new URL("../deno.json", import.meta.url));
  const peerScript = fileURLToPath(new URL("./peer_torch.py", import.meta.url));
  const seconds = String(config.seconds);
  const ours = new Map<Backend, BenchResult[]>(config.backends.map((b) => [b, []]));
  const peer: PeerResult[] = [];
  console.error(`peer: ${config.rounds} rounds of ${config.backends.join(", ")} then PyTorch (${python})`);
  for (let round = 1; round <= config.rounds; round++) {
    for (const backend of config.backends) {
      const args = ["run", "--allow-read", "--allow-env", "--allow-ffi", "--config", denoJson, here];
      const r = await jsonLineOf(deno, [...args, "--backend", backend, "--seconds", seconds]) as BenchResult;
      ours.get(backend)!.push(r);
      console.log(JSON.stringify(r));
    }
    const args = [peerScript, "--seconds", seconds, "--threads", String(config.peerThreads), "--openblas-threads", "1"];
    const p = await jsonLineOf(python, args) as PeerResult;
    peer.push(p);
    console.log(JSON.stringify(p));
  }
  const peerMedian = medians(peer);
  const ratios: Record<string, Metrics> = {};
  const all: Record<string, Metrics> = {};
  for (const [backend, results] of ours) {
    const m = medians(results);
    all[backend] = m;
    const r = {} as Metrics;
    for (const k of METRICS) {
      const a = m[k], b = peerMedian[k];
      r[k] = a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
    }
    ratios[`${backend}/pytorch`] = r;
  }
  all.pytorch = peerMedian;
  console.log(JSON.stringify({ ratios, medians: all, rounds: config.rounds }));
}

/** Measures each configured backend and prints its JSON line (with `--peer`, the same-run comparison). */
export async function main(args: string[]): Promise<void> {
  let config: Config | "help";
  try {
    config = parse(args);
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : err}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (config === "help") {
    console.log(USAGE);
    return;
  }
  if (config.peer) {
    try {
      await peerMode(config);
    } catch (err) {
      console.error(err instanceof Error ? err.message : err);
      Deno.exit(1);
    }
    return;
  }
  for (const backend of config.backends) {
    console.log(JSON.stringify(await measure(backend, config)));
  }
}

if (import.meta.main) await main(Deno.args);
