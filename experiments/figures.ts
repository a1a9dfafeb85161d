/**
 * Redraws every figure from the results files saved under `figures/`, without
 * recomputing anything: `deno task figures [--out figures]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runMain, UserError } from "../mod.ts";

/** Experiments that can redraw their figure from a results file, by the `experiment` field of that file. */
const REDRAW: Record<string, () => Promise<{ redraw(path: string, out: string): Promise<string[]> }>> = {
  figure1: () => import("./figure1.ts"),
  figure2: () => import("./figure2.ts"),
  figure4: () => import("./figure4.ts"),
};

/** Redraws the figure of every `*.results.json` in `dir`; returns the paths written. */
export async function redrawAll(dir: string): Promise<string[]> {
  const written: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = Array.from(Deno.readDirSync(dir)).sort((a, b) => a.name.localeCompare(b.name));
  } catch {
    throw new UserError(`no results folder ${dir}: run an experiment first (deno task figure1)`);
  }
  for (const e of entries) {
    if (!e.name.endsWith(".results.json")) continue;
    const path = `${dir}/${e.name}`;
    const experiment = JSON.parse(await Deno.readTextFile(path)).experiment as string;
    const mod = REDRAW[experiment];
    if (!mod) {
      throw new UserError(`${path}: unknown experiment "${experiment}", expected one of ${Object.keys(REDRAW)}`);
    }
    written.push(...await (await mod()).redraw(path, dir));
  }
  return written;
}

if (import.meta.main) {
  await runMain(async () => {
    let values;
    try {
      ({ values } = parseArgs({ args: Deno.args, options: { out: { type: "string" }, help: { type: "boolean" } } }));
    } catch (e) {
      throw new UserError(`${(e as Error).message}; known flags: --out, --help`);
    }
    if (values.help) {
      console.log("figures: redraw every figure from its saved results\n\nusage: deno task figures [--out figures]");
      return;
    }
    const written = await redrawAll(values.out ?? "figures");
    for (const p of written) console.log(`wrote ${p}`);
    if (!written.length) console.log("no results files found");
  });
}
