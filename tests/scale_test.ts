/**
 * Leaving one machine (SPEC, "Beyond one machine"; docs/scale.md): the Kubernetes manifest is an Indexed Job whose
 * completions, parallelism and `--shards` agree, on a shared volume, with a merge Job after it; and, where Slurm and
 * munge are installed, a private single-node Slurm cluster runs an experiment as a job array of two shards plus a
 * dependent merge job, whose merged results equal an unsharded run's.
 */
import { assert, assertEquals, DENO } from "./assert.ts";
import { parseArgsFor, resolveShard } from "../mod.ts";
import { experiment as figure3 } from "../experiments/figure3.ts";

// The experiment the Slurm test runs (any experiment split into units works; nothing else changes).
const EXPERIMENT = "figure3";
const FLAGS = "--preset smoke --quiet";
const RESULTS = `${EXPERIMENT}_mnist.results.json`;

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const SLURM_COMMANDS = ["slurmctld", "slurmd", "sbatch", "munged"];

// ---------------------------------------------------------------------------------------------------------------
// A YAML reader for the subset the manifests use: block maps and lists by indentation, `---` between documents,
// whole-line comments, and scalars that are plain words, numbers, booleans, "JSON strings" or ["JSON", "lists"].
// Anything else is an error, so the test fails rather than misreads.

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };
interface Line {
  indent: number;
  text: string;
  n: number;
}

/** The documents of `text`. */
function parseYaml(text: string): Yaml[] {
  const docs: Line[][] = [[]];
  text.split("\n").forEach((raw, i) => {
    if (/^---\s*$/.test(raw)) return void docs.push([]);
    if (raw.includes("\t")) throw new SyntaxError(`line ${i + 1}: a tab`);
    const body = raw.trimEnd(), trimmed = body.trimStart();
    if (trimmed && !trimmed.startsWith("#")) {
      docs.at(-1)!.push({ indent: body.length - trimmed.length, text: trimmed, n: i + 1 });
    }
  });
  return docs.filter((d) => d.length > 0).map((lines) => {
    const at = { i: 0 };
    const value = yamlBlock(lines, at, lines[0].indent);
    if (at.i < lines.length) throw new SyntaxError(`line ${lines[at.i].n}: unexpected indentation`);
    return value;
  });
}

const isItem = (text: string) => text === "-" || text.startsWith("- ");
const KEY = /^([\w./-]+):(?:\s+(.*))?$/;

function yamlBlock(lines: Line[], at: { i: number }, indent: number): Yaml {
  const first = lines[at.i];
  if (isItem(first.text)) {
    const list: Yaml[] = [];
    while (at.i < lines.length && lines[at.i].indent === indent && isItem(lines[at.i].text)) {
      const line = lines[at.i];
      const rest = line.text.slice(1).trimStart();
      if (rest) {
        // The item's first line, as if it stood alone past the dash.
        lines[at.i] = { indent: indent + line.text.length - rest.length, text: rest, n: line.n };
      } else {
        at.i++;
      }
      list.push(yamlBlock(lines, at, lines[at.i].indent));
    }
    return list;
  }
  if (!KEY.test(first.text)) {
    at.i++;
    return yamlScalar(first.text, first.n);
  }
  const map: { [key: string]: Yaml } = {};
  while (at.i < lines.length && lines[at.i].indent === indent) {
    const line = lines[at.i];
    const m = KEY.exec(line.text);
    if (!m) throw new SyntaxError(`line ${line.n}: expected "key: value", got "${line.text}"`);
    if (m[1] in map) throw new SyntaxError(`line ${line.n}: "${m[1]}" twice`);
    at.i++;
    const next = lines[at.i];
    if (m[2]) map[m[1]] = yamlScalar(m[2], line.n);
    else if (next && (next.indent > indent || (next.indent === indent && isItem(next.text)))) {
      map[m[1]] = yamlBlock(lines, at, next.indent);
    } else map[m[1]] = null;
  }
  return map;
}

function yamlScalar(text: string, n: number): Yaml {
  if (/^["[{]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      throw new SyntaxError(`line ${n}: ${text} is not a JSON string or list (the only flow style read here)`);
    }
  }
  if (/^'.*'$/.test(text)) return text.slice(1, -1).replaceAll("''", "'");
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  if (text === "null" || text === "~") return null;
  if (/\s#|^[&*!|>%@`]/.test(text)) throw new SyntaxError(`line ${n}: "${text}" needs more YAML than read here`);
  return text;
}

Deno.test("the YAML subset reader reads maps, lists of maps, flow lists and documents", () => {
  const text = "# c\na: 1\nb:\n  - name: x\n    v: [\"p\", \"q\"]\n  - plain\nc:\n- true\n---\nd: 'it''s'\n";
  assertEquals(parseYaml(text), [{ a: 1, b: [{ name: "x", v: ["p", "q"] }, "plain"], c: [true] }, { d: "it's" }]);
});

// ---------------------------------------------------------------------------------------------------------------

// deno-lint-ignore no-explicit-any
type Obj = any;

/** The value after `flag` in `argv`. */
function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

Deno.test("Kubernetes: an Indexed Job of N pods runs deno task figure3 --shards N on a shared volume, then a merge Job", async () => {
  const docs = parseYaml(await Deno.readTextFile(`${ROOT}/scale/k8s/figure3-job.yaml`)) as Obj[];
  assertEquals(docs.map((d) => d.kind), ["PersistentVolumeClaim", "Job", "Job"]);
  const [pvc, shards, merge] = docs;
  // Pods on any node write the same folders.
  assert(pvc.spec.accessModes.includes("ReadWriteMany"), "the volume must be ReadWriteMany");

  const n = shards.spec.completions;
  assertEquals(shards.apiVersion, "batch/v1");
  assertEquals(shards.spec.completionMode, "Indexed");
  assert(Number.isInteger(n) && n >= 2, `completions ${n}`);
  assertEquals(shards.spec.parallelism, n, "parallelism must equal completions");
  const shardPod = shards.spec.template.spec, mergePod = merge.spec.template.spec;
  assertEquals(shardPod.containers.length, 1);
  const shard = shardPod.containers[0], merger = mergePod.containers[0];
  const shardArgv: string[] = [...shard.command, ...(shard.args ?? [])];
  const mergeArgv: string[] = [...merger.command, ...(merger.args ?? [])];
  assertEquals(shardArgv.slice(0, 3), ["deno", "task", "figure3"]);
  assertEquals(flagValue(shardArgv, "--shards"), String(n), "--shards must equal completions");
  assert(!shardArgv.includes("--shard") && !shardArgv.includes("--merge"), "the index is JOB_COMPLETION_INDEX's");
  assert(["Never", "OnFailure"].includes(shardPod.restartPolicy));

  // The flags are figure3's; the last pod is the last shard.
  const parsed = parseArgsFor(figure3, shardArgv.slice(3));
  assert("common" in parsed);
  const last = resolveShard(
    parsed.common.shard,
    parsed.common.shards,
    (v) => v === "JOB_COMPLETION_INDEX" ? String(n - 1) : undefined,
  );
  assertEquals([last.index, last.count], [n - 1, n]);

  // The merge: one pod, held back until the shards are done, with the shards' flags but --merge for --shards N.
  assertEquals(merge.spec.suspend, true, "the merge Job starts suspended");
  assert(merge.spec.completionMode !== "Indexed" && (merge.spec.completions ?? 1) === 1);
  assertEquals(mergeArgv.slice(0, 3), ["deno", "task", "figure3"]);
  const withoutShards = shardArgv.filter((_, i) => shardArgv[i] !== "--shards" && shardArgv[i - 1] !== "--shards");
  assertEquals(mergeArgv.filter((a) => a !== "--merge"), withoutShards);
  assert(mergeArgv.includes("--merge"));
  assert("common" in parseArgsFor(figure3, mergeArgv.slice(3)));
  assertEquals(merger.image, shard.image);

  // Both mount the claim at the folders the task may write (.cache: models and unit results; figures: the output).
  for (const [pod, container] of [[shardPod, shard], [mergePod, merger]]) {
    const claimed = pod.volumes.filter((v: Obj) => v.persistentVolumeClaim?.claimName === pvc.metadata.name)
      .map((v: Obj) => v.name);
    assertEquals(claimed.length, 1, "one volume of the shared claim");
    const mounts = container.volumeMounts.filter((m: Obj) => m.name === claimed[0]).map((m: Obj) => m.mountPath);
    assertEquals(mounts.sort(), [`${container.workingDir}/.cache`, `${container.workingDir}/figures`]);
  }
});

// ---------------------------------------------------------------------------------------------------------------

/** The path of `cmd` on the PATH (or in the sbin folders, which an ordinary user's PATH may lack). */
function which(cmd: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    try {
      if (dir && Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const missing = SLURM_COMMANDS.filter((c) => !which(c));
if (missing.length > 0) {
  console.log(`scale_test: skipping the Slurm test: ${missing.join(", ")} not found (apt-get install slurm-wlm munge)`);
}

/** Runs `cmd` with `args` in the repository; returns its exit code and output, stdout and stderr together. */
async function sh(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  seconds = 120,
): Promise<{ code: number; out: string; stdout: string }> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(seconds * 1000),
  }).output();
  const [o, e] = [stdout, stderr].map((b) => new TextDecoder().decode(b));
  return { code, out: o + e, stdout: o };
}

/**
 * A results file without what differs between two runs of the same config in different folders at different
 * times: `wall_seconds` and `units.seconds` (timings), `command` (the flags name each run's folders, and the merge
 * adds --merge), and the cache folder where a field names it (`saveDir`, the re-scoring check's detail), which
 * becomes <cache-dir>.
 */
function comparable(results: Obj, cacheDir: string): Obj {
  const { wall_seconds: _w, command: _c, units, ...rest } = results;
  const text = JSON.stringify({ ...rest, units: { ...units, seconds: 0 } });
  return JSON.parse(text.replaceAll(cacheDir, "<cache-dir>"));
}

/** The `shard` of every unit result under `cacheDir`/units. */
async function unitShards(cacheDir: string): Promise<string[]> {
  const shards: string[] = [];
  for await (const d of Deno.readDir(`${ROOT}/${cacheDir}/units`)) {
    if (!d.isDirectory) continue;
    for await (const f of Deno.readDir(`${ROOT}/${cacheDir}/units/${d.name}`)) {
      if (f.name.endsWith(".json")) {
        shards.push(JSON.parse(await Deno.readTextFile(`${ROOT}/${cacheDir}/units/${d.name}/${f.name}`)).shard);
      }
    }
  }
  return shards.sort();
}

Deno.test({
  name: `Slurm: a private cluster runs ${EXPERIMENT} as an array of 2 shards and a merge job; merged = unsharded`,
  ignore: missing.length > 0,
  async fn() {
    const cluster = await Deno.makeTempDir({ dir: "/tmp", prefix: "slurm-cluster-" });
    // The jobs run `deno task`, which may write only under figures/ and .cache/: the runs' folders go there.
    await Deno.mkdir(`${ROOT}/.cache`, { recursive: true });
    const work = await Deno.makeTempDir({ dir: `${ROOT}/.cache`, prefix: "scale-test-" });
    const rel = work.slice(ROOT.length + 1);
    try {
      const start = await sh("bash", ["scale/slurm/cluster.sh", "start", cluster], {}, 60);
      assertEquals(start.code, 0, `cluster.sh start failed:\n${start.out}`);
      const env = {
        SLURM_CONF: `${cluster}/slurm.conf`,
        EXPERIMENT,
        EXPERIMENT_FLAGS: `${FLAGS} --out ${rel}/slurm/out --cache-dir ${rel}/slurm/cache`,
        DENO,
        LOG_DIR: `${rel}/slurm/logs`,
      };
      const submit = await sh("bash", ["scale/slurm/submit.sh", "2", "--wait"], env, 180);
      const logs: string[] = [];
      try {
        for await (const f of Deno.readDir(`${work}/slurm/logs`)) {
          logs.push(`--- ${f.name}\n${await Deno.readTextFile(`${work}/slurm/logs/${f.name}`)}`);
        }
      } catch {
        // no logs: no job started
      }
      const ids = /array_job_id=(\d+)\nmerge_job_id=(\d+)/.exec(submit.stdout);
      assert(ids, `submit.sh printed no job ids:\n${submit.out}`);
      assertEquals(submit.code, 0, `the Slurm jobs failed:\n${submit.out}\n${logs.sort().join("\n")}`);
      assert(/merge job \d+: 1 COMPLETED/.test(submit.out) && /array job \d+: 2 COMPLETED/.test(submit.out));
      // Each task ran its shard, told by Slurm's array variables.
      for (const i of [0, 1]) {
        const log = await Deno.readTextFile(`${work}/slurm/logs/${EXPERIMENT}-${ids[1]}_${i}.out`);
        assert(log.includes(`shard ${i}/2 (SLURM_ARRAY_TASK_ID=${i} (min 0, step 1, count 2))`), log);
      }
      const shards = await unitShards(`${rel}/slurm/cache`);
      assertEquals([...new Set(shards)], ["0/2", "1/2"], "both shards ran units");

      // The same flags on this machine, in one process.
      const local = await sh(DENO, [
        "task",
        EXPERIMENT,
        ...FLAGS.split(" "),
        "--out",
        `${rel}/local/out`,
        "--cache-dir",
        `${rel}/local/cache`,
      ]);
      assertEquals(local.code, 0, local.out);
      const read = async (dir: string) => JSON.parse(await Deno.readTextFile(`${work}/${dir}/out/${RESULTS}`));
      const [merged, whole] = [await read("slurm"), await read("local")];
      assertEquals(merged.units.missing, []);
      assertEquals(merged.units.total, shards.length);
      assertEquals(comparable(merged, `${rel}/slurm/cache`), comparable(whole, `${rel}/local/cache`));
    } finally {
      // Also after a start that failed or timed out midway: whatever daemon has a PID file there is stopped.
      const stop = await sh("bash", ["scale/slurm/cluster.sh", "stop", cluster], {}, 60);
      if (stop.code !== 0 && !stop.out.includes("no cluster in")) console.error(`cluster.sh stop failed:\n${stop.out}`);
      await Deno.remove(cluster, { recursive: true }).catch(() => {});
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
