/**
 * Where the wasm backend's binaries are: the installed npm package's dist/ folder.
 *
 * @module
 */

const BINARY = "tfjs-backend-wasm-simd.wasm";

/** The package's dist/ folder (with a trailing slash), as a file system path. */
export function wasmDistDir(): string {
  const candidates: URL[] = [];
  try {
    const entry = new URL(import.meta.resolve("@tensorflow/tfjs-backend-wasm"));
    if (entry.protocol === "file:") candidates.push(new URL("./", entry));
  } catch {
    // Not resolvable to a file (no node_modules): try the project layout below.
  }
  candidates.push(
    new URL(
      "../../../node_modules/@tensorflow/tfjs-backend-wasm/dist/",
      import.meta.url,
    ),
  );
  for (const dir of candidates) {
    try {
      if (Deno.statSync(new URL(BINARY, dir)).isFile) {
        const path = decodeURIComponent(dir.pathname);
        // Windows: "/C:/x/" -> "C:/x/".
        return /^\/[A-Za-z]:/.test(path) ? path.slice(1) : path;
      }
    } catch {
      // Missing or unreadable: try the next candidate.
    }
  }
  throw new Error(
    `expected ${BINARY} of @tensorflow/tfjs-backend-wasm in one of ` +
      `${candidates.map((u) => u.href).join(", ")}, found none ` +
      `(is "nodeModulesDir": "auto" set and --allow-read given?)`,
  );
}
