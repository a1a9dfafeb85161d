/**
 * Redraws every figure from the results files saved under `figures/`, without
 * recomputing anything: `deno task figures [--out figures]`. Each results file
 * names its experiment, whose file `experiments/<name>.ts` draws it. Then the
 * gallery page, `<out>/index.html`, is rebuilt from what is there.
 *
 * @module
 */
import {
  type AnyExperiment,
  ensureWritable,
  outFolderArgs,
  redrawAll,
  runMain,
  UserError,
  writeGallery,
} from "../mod.ts";

/** The experiment of a results file, by name: `experiments/<name>.ts`, or undefined when there is none. */
export async function findExperiment(name: string): Promise<AnyExperiment | undefined> {
  const url = new URL(`./${name}.ts`, import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    return undefined;
  }
  return (await import(url.href)).experiment as AnyExperiment | undefined;
}

if (import.meta.main) {
  await runMain(async () => {
    const out = outFolderArgs(
      Deno.args,
      "figures: redraw every figure from its saved results, and the gallery page\n\nusage: deno task figures [--out figures]",
    );
    if (out === undefined) return;
    await ensureWritable(out, "--out");
    const { written, failed } = await redrawAll(out, findExperiment);
    for (const p of written) console.log(`wrote ${p}`);
    if (!written.length && !failed.length) console.log("no results files found");
    console.log(`wrote ${await writeGallery(out)}`);
    if (failed.length) {
      for (const f of failed) console.error(`cannot draw ${f}`);
      throw new UserError(`${failed.length} results file${failed.length > 1 ? "s" : ""} could not be drawn (above)`);
    }
  });
}
