/**
 * Writing a set of files (a results file and the figure drawn from it) as a
 * unit, so that a reader never finds files of two runs side by side.
 *
 * Every file is first written in full under a temporary name in the same
 * folder; only when all of them are on disk is a journal written (atomically)
 * that lists the renames, and then the renames are made and the journal
 * removed. A run killed before the journal leaves the old set untouched (its
 * temporary files are removed by the next writer); a run killed during the
 * renames leaves a journal, which the next writer or reader of the folder
 * ({@link recoverFileSets}) carries out to the end. A full disk fails while the
 * temporary files are written, before anything old is replaced.
 *
 * @module
 */
import { join } from "node:path";

const JOURNAL = /^\.(.+)\.set\.json$/;
const TEMP = /\.set-tmp$/;

/** Writes `files` (name → text or bytes) into `dir` as one unit; returns the paths, in the order given. */
export async function writeFileSet(dir: string, files: [string, string | Uint8Array][]): Promise<string[]> {
  for (const [name] of files) {
    if (!/^[\w][\w.-]*$/.test(name)) throw new Error(`file name must be letters, digits, '_', '-' or '.', got ${name}`);
  }
  await Deno.mkdir(dir, { recursive: true });
  await recoverFileSets(dir);
  const tag = `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const moves: [string, string][] = files.map(([name]) => [`.${name}.${tag}.set-tmp`, name]);
  try {
    for (const [i, [, data]] of files.entries()) await writeNew(join(dir, moves[i][0]), data);
  } catch (err) {
    for (const [tmp] of moves) await Deno.remove(join(dir, tmp)).catch(() => {});
    throw err;
  }
  const journal = join(dir, `.${files[0][0]}.set.json`);
  await writeNew(`${journal}.${tag}`, JSON.stringify(moves));
  await Deno.rename(`${journal}.${tag}`, journal);
  await finish(dir, journal, moves);
  return files.map(([name]) => join(dir, name));
}

/** Carries out the renames of any set whose writer was stopped midway, and removes stray temporary files. */
export async function recoverFileSets(dir: string): Promise<void> {
  let names: string[];
  try {
    names = Array.from(Deno.readDirSync(dir), (e) => e.name);
  } catch {
    return;
  }
  const pending = new Set<string>();
  for (const name of names.filter((n) => JOURNAL.test(n))) {
    const moves = JSON.parse(await Deno.readTextFile(join(dir, name))) as [string, string][];
    for (const [tmp] of moves) pending.add(tmp);
    await finish(dir, join(dir, name), moves);
  }
  for (const name of names) {
    if (TEMP.test(name) && !pending.has(name)) await Deno.remove(join(dir, name)).catch(() => {});
  }
}

async function finish(dir: string, journal: string, moves: [string, string][]): Promise<void> {
  for (const [tmp, name] of moves) {
    try {
      await Deno.rename(join(dir, tmp), join(dir, name));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // already moved before a stop
    }
  }
  await Deno.remove(journal);
}

/** Writes a file that must not exist yet (so an existing link at that name is never followed). */
async function writeNew(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await Deno.writeFile(path, bytes, { createNew: true });
}
