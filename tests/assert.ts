/**
 * Assertions for the tests: `node:assert/strict` (jsr.io's @std/assert is not
 * reachable from every machine), with the few helpers the tests need.
 *
 * @module
 */
import assert from "node:assert/strict";
import { tf } from "../lib/core/tf.ts";

export { assert };
/** Deep strict equality. */
export function assertEquals<T>(actual: unknown, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** Asserts that `fn` throws an instance of `type` whose message includes `includes`. */
export function assertThrows(fn: () => unknown, type: new (...a: never[]) => Error, includes = ""): void {
  assert.throws(fn, (e: unknown) => e instanceof type && (e as Error).message.includes(includes));
}

/** Asserts that `fn` rejects with an instance of `type` whose message includes `includes`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  type: new (...a: never[]) => Error,
  includes = "",
): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    if (!(e instanceof type) || !(e as Error).message.includes(includes)) {
      throw new assert.AssertionError({ message: `unexpected error: ${(e as Error)?.message}` });
    }
    return true;
  });
}

/** Asserts |a - b| ≤ tol · max(1, |b|) elementwise. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4, what = "values"): void {
  assert.equal(a.length, b.length, `${what}: length ${a.length} vs ${b.length}`);
  let worst = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]));
    if (!(err <= worst) && (err > worst || Number.isNaN(err))) {
      worst = err;
      at = i;
    }
  }
  assert.ok(worst <= tol, `${what}: relative error ${worst} at ${at} (${a[at]} vs ${b[at]}) above ${tol}`);
}

/**
 * Compares `value` (as pretty JSON) with the committed snapshot `tests/snapshots/<name>`;
 * `UPDATE_SNAPSHOTS=1` rewrites the snapshot instead.
 */
export async function assertSnapshot(name: string, value: unknown): Promise<void> {
  const text = JSON.stringify(value, null, 2) + "\n";
  const path = new URL(`./snapshots/${name}`, import.meta.url);
  if (Deno.env.get("UPDATE_SNAPSHOTS")) await Deno.writeTextFile(path, text);
  assertEquals(text, await Deno.readTextFile(path));
}

/** max |a − b| / max |b|: the error relative to the reference's scale (the max error itself when b is all zeros). */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * Runs `f` on the `tested` backend and on the `reference` one (tidied), asserts that the outputs have
 * the same shapes, and returns the relative error ({@linkcode relError}) of each; `tested` is current
 * again afterwards.
 */
export async function errorsAgainst(
  tested: string,
  reference: string,
  f: () => tf.Tensor | tf.Tensor[],
): Promise<number[]> {
  const results: { shape: number[]; data: Float32Array }[][] = [];
  for (const backend of [tested, reference]) {
    await tf.setBackend(backend);
    const outs = tf.tidy(() => [f()].flat());
    results.push(outs.map((t) => ({ shape: t.shape, data: t.dataSync() as Float32Array })));
    tf.dispose(outs);
  }
  await tf.setBackend(tested);
  const [got, ref] = results;
  assert.equal(got.length, ref.length, "number of outputs");
  return got.map((g, i) => {
    assert.deepEqual(g.shape, ref[i].shape);
    return relError(g.data, ref[i].data);
  });
}

/**
 * The `deno` that the tests start children with: the one on the PATH, by its
 * path there (the test task may run only `deno`, `cc`, `mount`, `umount` and `ln`,
 * and Deno checks a command by that path), else this process's own.
 */
export const DENO: string = (() => {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir && Deno.statSync(`${dir}/deno`).isFile) return `${dir}/deno`;
    } catch {
      // not in this folder
    }
  }
  return Deno.execPath();
})();

/** Makes `path` a symbolic link to `target` with `ln -s` (Deno.symlink needs unscoped write permission). */
export async function symlink(target: string, path: string): Promise<void> {
  const { success, stderr } = await new Deno.Command("ln", { args: ["-s", target, path], stderr: "piped" }).output();
  if (!success) throw new Error(`ln -s ${target} ${path}: ${new TextDecoder().decode(stderr)}`);
}
