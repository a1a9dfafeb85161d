/**
 * Strict command lines for experiment scripts: every scalar field of an
 * experiment's config is a flag (`stepSize` → `--step-size`), presets set many
 * at once, and an unknown flag or a bad value is a one-line error that names
 * what is allowed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type BackendName, BACKENDS } from "../backends/select.ts";
import { UserError } from "../core/errors.ts";

/** What an experiment declares so that {@link parseExperimentArgs} can build its command line. */
export interface ExperimentSpec<C extends object> {
  /** Task name, e.g. "figure1". */
  name: string;
  /** One line on what it reproduces. */
  summary: string;
  /** The default (quick) preset. */
  defaults: C;
  /** Named presets applied over the defaults (`paper`, `smoke`, ...). */
  presets: Record<string, Partial<C>>;
  /** Help text of each config field that is a flag. */
  help: Partial<Record<keyof C, string>>;
  /** Throws a {@link UserError} on an inconsistent config. */
  validate?: (config: C) => void;
  /** What a unit of its work is, when it can be split into shards (adds --shard, --shards and --merge). */
  units?: string;
}

/** Flags every experiment takes. */
export interface CommonFlags {
  /** Preset applied under the flags ("quick" is the default config). */
  preset: string;
  /** Backend to run on. */
  backend: BackendName;
  /** Train again even when a cached model exists. */
  retrain: boolean;
  /** Folder the figures and results are written to. */
  out: string;
  /** Folder of the model cache. */
  cacheDir: string;
  /** Less output. */
  quiet: boolean;
  /** CIFAR-10: folder of the binary version ("": the CIFAR10_DIR variable, then the cache). */
  dataDir: string;
  /** CIFAR-10: the files are meant to differ from the official ones; skip their checksums. */
  unverifiedData: boolean;
  /** `--shard i/n` as given (experiments with units). */
  shard?: string;
  /** `--shards n`: the number of shards where the index comes from JOB_COMPLETION_INDEX. */
  shards?: number;
  /** Combine the unit results that exist instead of computing. */
  merge: boolean;
}

const COMMON = {
  preset: { type: "string", help: "preset: quick (default), paper, smoke, ..." },
  backend: { type: "string", help: `backend: ${BACKENDS.join("|")} (default auto)` },
  retrain: { type: "boolean", help: "train again even if a cached model exists (and redo cached units)" },
  out: { type: "string", help: "output folder (default figures)" },
  "cache-dir": { type: "string", help: "model cache folder (default .cache)" },
  "data-dir": { type: "string", help: "CIFAR-10 binary folder (default: CIFAR10_DIR, then <cache-dir>/cifar10)" },
  "unverified-data": { type: "boolean", help: "CIFAR-10 files meant to differ from the official ones: skip checksums" },
  quiet: { type: "boolean", help: "no progress lines" },
  help: { type: "boolean", help: "show this help" },
} as const;

/** Flags of experiments whose work is split into units. */
const SHARDING = {
  shard: { type: "string", help: "run only shard i of n (i/n, from 0): units k with k mod n = i" },
  shards: { type: "string", help: "number of shards, with JOB_COMPLETION_INDEX (Kubernetes) as the index" },
  merge: { type: "boolean", help: "combine the units' results that exist (after the shards ran), write the files" },
} as const;

function commonFlags(units: string | undefined) {
  return units ? { ...COMMON, ...SHARDING } : COMMON;
}

/** `stepSize` → `step-size`. */
export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function scalarKeys<C extends object>(spec: ExperimentSpec<C>): (keyof C & string)[] {
  return (Object.keys(spec.defaults) as (keyof C & string)[]).filter((k) =>
    ["number", "boolean", "string"].includes(typeof spec.defaults[k])
  );
}

/** The `--help` text of an experiment. */
export function helpText<C extends object>(spec: ExperimentSpec<C>): string {
  const lines = [`${spec.name}: ${spec.summary}`, "", `usage: deno task ${spec.name} [flags]`, "", "flags:"];
  for (const [flag, o] of Object.entries(commonFlags(spec.units))) lines.push(`  --${flag.padEnd(18)} ${o.help}`);
  for (const k of scalarKeys(spec)) {
    const d = spec.defaults[k];
    lines.push(`  --${kebab(k).padEnd(18)} ${spec.help[k] ?? ""} (default ${d})`);
  }
  lines.push("", `presets: quick (default), ${Object.keys(spec.presets).join(", ")}`);
  if (spec.units) {
    lines.push(
      "",
      `units: ${spec.units}. Each unit's result is kept in <cache-dir>/units/ and not redone; without --shard`,
      "the shard comes from SLURM_ARRAY_TASK_ID (a Slurm job array), else JOB_COMPLETION_INDEX with --shards n",
      "(a Kubernetes Indexed Job), else the run does every unit and writes the files. After the shards: --merge.",
    );
  }
  return lines.join("\n");
}

/**
 * Parses `args` into the effective config (defaults, then the preset, then the
 * flags) and the common flags. Returns `{ help }` for `--help`. Throws a
 * {@link UserError} for an unknown flag, an unknown preset or a bad value.
 */
export function parseExperimentArgs<C extends object>(
  args: string[],
  spec: ExperimentSpec<C>,
): { config: C; common: CommonFlags } | { help: string } {
  const keys = scalarKeys(spec);
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [flag, o] of Object.entries(commonFlags(spec.units))) options[flag] = { type: o.type };
  for (const k of keys) options[kebab(k)] = { type: "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (e) {
    const known = Object.keys(options).map((f) => `--${f}`).join(", ");
    const first = (e as Error).message.split("\n")[0].replace(/\. To specify.*$/, "");
    const ambiguous = first.match(/Option '(--[\w-]+)[^']*' argument is ambiguous/);
    if (ambiguous) {
      // `--eps -1` (a negative number, written --eps=-1) or `--eps --steps 3` (a flag with its value forgotten).
      const value = args[args.indexOf(ambiguous[1]) + 1] ?? "";
      throw new UserError(
        /^-\.?\d/.test(value)
          ? `${ambiguous[1]} ${value}: write ${ambiguous[1]}=${value} for a value that starts with a dash`
          : `${ambiguous[1]} needs a value, got the flag ${value}`,
      );
    }
    throw new UserError(`${first}; known flags: ${known}`);
  }
  if (values.help) return { help: helpText(spec) };
  const preset = (values.preset as string | undefined) ?? "quick";
  if (preset !== "quick" && !(preset in spec.presets)) {
    throw new UserError(`unknown preset "${preset}", expected one of quick, ${Object.keys(spec.presets).join(", ")}`);
  }
  const config = { ...spec.defaults, ...(preset === "quick" ? {} : spec.presets[preset]) } as C;
  for (const k of keys) {
    const raw = values[kebab(k)];
    if (raw === undefined) continue;
    config[k] = parseValue(kebab(k), raw as string, spec.defaults[k]) as C[typeof k];
  }
  const backend = (values.backend as string | undefined) ?? "auto";
  if (!(BACKENDS as readonly string[]).includes(backend)) {
    throw new UserError(`unknown backend "${backend}", expected one of ${BACKENDS.join(", ")}`);
  }
  spec.validate?.(config);
  const shards = values.shards === undefined ? undefined : Number(values.shards);
  if (shards !== undefined && !(Number.isInteger(shards) && shards >= 1)) {
    throw new UserError(`--shards expects an integer ≥ 1, got "${values.shards}"`);
  }
  if (values.merge && (values.shard !== undefined || shards !== undefined)) {
    throw new UserError("--merge combines every shard's units; give it without --shard or --shards");
  }
  return {
    config,
    common: {
      preset,
      backend: backend as BackendName,
      retrain: Boolean(values.retrain),
      out: (values.out as string | undefined) ?? "figures",
      cacheDir: (values["cache-dir"] as string | undefined) ?? ".cache",
      quiet: Boolean(values.quiet),
      dataDir: (values["data-dir"] as string | undefined) ?? "",
      unverifiedData: Boolean(values["unverified-data"]),
      ...(values.shard !== undefined ? { shard: values.shard as string } : {}),
      ...(shards !== undefined ? { shards } : {}),
      merge: Boolean(values.merge),
    },
  };
}

function parseValue(flag: string, raw: string, like: unknown): unknown {
  if (typeof like === "number") {
    const v = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(v)) throw new UserError(`--${flag} expects a number, got "${raw}"`);
    return v;
  }
  if (typeof like === "boolean") {
    if (raw !== "true" && raw !== "false") throw new UserError(`--${flag} expects true or false, got "${raw}"`);
    return raw === "true";
  }
  return raw;
}

/**
 * Checks, before any work starts, that `dir` can take what a run writes: a
 * non-empty path, a folder (or one that can be created), writable under the
 * granted permissions where it really is (a link inside an allowed folder that
 * leads elsewhere is refused: Deno checks the path as written), and, with
 * `probeBytes`, room for that many bytes. So a long run never ends in an error
 * when it saves. Creates the folder; writes nothing else that stays.
 */
export async function ensureWritable(dir: string, flag: string, probeBytes = 0): Promise<void> {
  if (!dir.trim()) throw new UserError(`${flag} is empty; give a folder`);
  const { state } = await Deno.permissions.query({ name: "write", path: dir });
  const refuse = (where: string) =>
    new UserError(
      `${flag} ${where} is not writable with this task's permissions (the tasks may write figures/ and .cache/); ` +
        `run the script with deno run and --allow-write=${dir} instead`,
    );
  if (state !== "granted") throw refuse(dir);
  // The nearest existing folder, resolved through links: that is where the files land.
  let existing = dir;
  for (;;) {
    try {
      const info = await Deno.stat(existing);
      if (!info.isDirectory) {
        throw new UserError(`${flag} ${dir}: ${existing} is a file, expected a folder`);
      }
      break;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw fsError(err, flag, existing);
      const up = existing.replace(/\/+$/, "").replace(/\/[^/]*$/, "") || (existing.startsWith("/") ? "/" : ".");
      if (up === existing) break;
      existing = up;
    }
  }
  const real = await Deno.realPath(existing).catch(() => existing);
  if ((await Deno.permissions.query({ name: "write", path: real })).state !== "granted") {
    throw refuse(`${dir} (which leads to ${real})`);
  }
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (err) {
    throw fsError(err, flag, dir);
  }
  if (probeBytes > 0) {
    const probe = `${dir}/.space-probe-${Deno.pid}`;
    try {
      await Deno.writeFile(probe, new Uint8Array(probeBytes), { createNew: true });
    } catch (err) {
      throw fsError(err, flag, dir, `need about ${(probeBytes / 2 ** 20).toFixed(0)} MB free`);
    } finally {
      await Deno.remove(probe).catch(() => {});
    }
  }
}

/** A file-system error on `path` as one line for the person at the keyboard. */
export function fsError(err: unknown, flag: string, path: string, hint = ""): Error {
  if (err instanceof UserError) return err;
  const e = err as Error;
  const what = e instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : /No space left|ENOSPC|os error 28/.test(e.message)
    ? "no space left on the device"
    : e instanceof Deno.errors.NotADirectory || /Not a directory|os error 20/.test(e.message)
    ? "a part of the path is a file, expected a folder"
    : e.message;
  return new UserError(`${flag} ${path}: ${what}${hint ? ` (${hint})` : ""}`);
}

/**
 * The command line of a script that only reads and writes a results folder
 * (`deno task figures`, `deno task gallery`): `--out FOLDER` (default
 * figures) and `--help`. Returns the folder, or undefined after printing
 * `help` for `--help`; an unknown flag is a {@link UserError}.
 */
export function outFolderArgs(args: string[], help: string): string | undefined {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { out: { type: "string" }, help: { type: "boolean" } } }));
  } catch (e) {
    throw new UserError(`${(e as Error).message.split("\n")[0]}; known flags: --out, --help`);
  }
  if (values.help) {
    console.log(help);
    return undefined;
  }
  return values.out ?? "figures";
}

/**
 * Runs an experiment's `main`, turning a {@link UserError} (or a RangeError from
 * option validation) into one line on stderr and exit code 2.
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UserError || e instanceof RangeError) {
      console.error(`error: ${e.message.replaceAll("\n", " ")}`);
      Deno.exit(2);
    }
    throw e;
  }
}
