/**
 * Writes the gallery, `figures/index.html`: one self-contained page of every
 * result in the folder (figure, tables, the paper's claims, provenance, links
 * to the files), discovered from its `*.results.json` files. Opens from the
 * file system with no server; `deno task figures` rebuilds it too.
 *
 *   deno task gallery                  # figures/index.html
 *   deno task gallery --out results    # results/index.html, from the files in results/
 *
 * @module
 */
import { ensureWritable, outFolderArgs, runMain, UserError, writeGallery } from "../mod.ts";

if (import.meta.main) {
  await runMain(async () => {
    const out = outFolderArgs(
      Deno.args,
      "gallery: one HTML page of every figure and table in a results folder\n\n" +
        "usage: deno task gallery [--out figures]\n\n" +
        "  --out FOLDER   the folder of *.results.json files, where index.html is written (default figures)",
    );
    if (out === undefined) return;
    try {
      await Deno.stat(out);
    } catch {
      throw new UserError(
        `no results folder ${out}: run an experiment first (deno task figure1), or name one with --out`,
      );
    }
    await ensureWritable(out, "--out");
    console.log(`wrote ${await writeGallery(out)}`);
  });
}
