/**
 * Writing files so that a reader never sees half of one.
 *
 * @module
 */

/**
 * Writes bytes or text to `path` atomically: a new temporary file beside it
 * (named by the process and a random tag, so concurrent writers never share
 * one), then a rename. On failure the temporary file is removed.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeFile(tmp, typeof data === "string" ? new TextEncoder().encode(data) : data, { createNew: true });
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
