/**
 * A minimal ustar reader, for the CIFAR-10 archive: regular files and
 * folders, everything else skipped.
 *
 * @module
 */

/** One entry of a tar archive read by {@link readTar}. */
export interface TarEntry {
  /** Path inside the archive (ustar prefix joined). */
  name: string;
  /** "file", "dir" or "other" (links, pax headers, ...: content skipped). */
  type: "file" | "dir" | "other";
  /** The file's bytes (empty for folders and others). */
  data: Uint8Array;
}

function tarString(block: Uint8Array, at: number, len: number): string {
  const field = block.subarray(at, at + len);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

function tarOctal(block: Uint8Array, at: number, len: number, what: string): number {
  const text = tarString(block, at, len).trim();
  if (!/^[0-7]*$/.test(text)) throw new Error(`tar: bad ${what} field ${JSON.stringify(text)}`);
  return text === "" ? 0 : parseInt(text, 8);
}

/**
 * Reads a tar (ustar) archive from a byte stream, yielding each entry with its
 * bytes. Checks every header's checksum; a truncated archive is an error.
 */
export async function* readTar(stream: ReadableStream<Uint8Array>): AsyncGenerator<TarEntry> {
  const reader = stream.getReader();
  // Chunks not yet consumed, so a large file is assembled once (no quadratic re-copying).
  const chunks: Uint8Array[] = [];
  let have = 0, ended = false;
  const need = async (k: number): Promise<boolean> => {
    while (have < k && !ended) {
      const { value, done } = await reader.read();
      if (done) ended = true;
      else if (value.length) {
        chunks.push(value);
        have += value.length;
      }
    }
    return have >= k;
  };
  /** Removes the next `k` bytes (k ≤ have) and returns the first `keep` of them. */
  const take = (k: number, keep = k): Uint8Array => {
    const out = new Uint8Array(keep);
    let got = 0;
    while (got < k) {
      const c = chunks[0];
      const m = Math.min(c.length, k - got);
      if (got < keep) out.set(c.subarray(0, Math.min(m, keep - got)), got);
      got += m;
      if (m === c.length) chunks.shift();
      else chunks[0] = c.subarray(m);
    }
    have -= k;
    return out;
  };
  try {
    while (true) {
      if (!(await need(512))) {
        if (have === 0) return; // archive without end blocks
        throw new Error("tar: truncated header");
      }
      const header = take(512);
      if (header.every((b) => b === 0)) return; // end-of-archive block
      const stored = tarOctal(header, 148, 8, "checksum");
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i];
      if (sum !== stored) throw new Error(`tar: header checksum ${stored}, computed ${sum} (corrupt archive)`);
      const size = tarOctal(header, 124, 12, "size");
      const flag = String.fromCharCode(header[156]);
      let name = tarString(header, 0, 100);
      if (tarString(header, 257, 5) === "ustar") {
        const prefix = tarString(header, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      const padded = Math.ceil(size / 512) * 512;
      if (!(await need(padded))) throw new Error(`tar: ${name} truncated (${size} bytes expected)`);
      const type = flag === "0" || flag === "\0" ? "file" : flag === "5" ? "dir" : "other";
      yield { name, type, data: take(padded, type === "file" ? size : 0) };
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Extracts the regular files and folders of a tar stream under `dest`.
 * Absolute paths and `..` components are refused.
 */
export async function extractTar(stream: ReadableStream<Uint8Array>, dest: string): Promise<number> {
  await Deno.mkdir(dest, { recursive: true });
  let files = 0;
  for await (const e of readTar(stream)) {
    const parts = e.name.split("/").filter((p) => p !== "" && p !== ".");
    if (e.name.startsWith("/") || parts.includes("..")) throw new Error(`tar: unsafe path ${e.name}`);
    if (e.type === "other" || parts.length === 0) continue;
    const path = `${dest}/${parts.join("/")}`;
    if (e.type === "dir") await Deno.mkdir(path, { recursive: true });
    else {
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(path, e.data);
      files++;
    }
  }
  return files;
}
