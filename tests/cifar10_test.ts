/**
 * CIFAR-10 loader on tiny fixture files in the binary format (written here),
 * the folder search and its errors, the check of each file against known
 * digests and its verdict cache, file-system errors as one-line messages, the
 * download path's pieces (md5, tar, digest check) against a local server, the
 * ε-scale check and augmentation.
 */
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  checkEpsScale,
  CIFAR10_ARCHIVE,
  CIFAR10_FILES,
  CIFAR10_SHA256,
  cifar10VerdictFile,
  extractTar,
  findCifar10Dir,
  loadCifar10,
  Md5,
  parseCifarBatch,
  readTar,
} from "../lib/data/cifar10.ts";
import { augmentBatch } from "../lib/data/augment.ts";
import { UserError } from "../lib/core/errors.ts";
import { Rng } from "../lib/core/rng.ts";
import { chmodStopsReads, withMode } from "./fixtures/fs_permissions.ts";

const R = 3073;

/** Record i of fixture file `f`: label (f + i) % 10, pixel p of channel c = (f·40 + i·7 + c·80 + p) % 256. */
function pixel(f: number, i: number, c: number, p: number): number {
  return (f * 40 + i * 7 + c * 80 + p) % 256;
}

function fixtureFile(f: number, records: number): Uint8Array {
  const bytes = new Uint8Array(records * R);
  for (let i = 0; i < records; i++) {
    bytes[i * R] = (f + i) % 10;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) bytes[i * R + 1 + c * 1024 + p] = pixel(f, i, c, p);
    }
  }
  return bytes;
}

/** Writes the six files (test_batch is file 0, data_batch_k is file k) with `records` records each. */
async function fixtureDir(dir: string, records: number): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const names = [...CIFAR10_FILES.test, ...CIFAR10_FILES.train];
  for (let f = 0; f < names.length; f++) await Deno.writeFile(`${dir}/${names[f]}`, fixtureFile(f, records));
  return dir;
}

/** Runs `fn` with CIFAR10_DIR set to `value` (or unset), restoring it afterwards. */
async function withEnv<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const old = Deno.env.get("CIFAR10_DIR");
  if (value === undefined) Deno.env.delete("CIFAR10_DIR");
  else Deno.env.set("CIFAR10_DIR", value);
  try {
    return await fn();
  } finally {
    if (old === undefined) Deno.env.delete("CIFAR10_DIR");
    else Deno.env.set("CIFAR10_DIR", old);
  }
}

Deno.test("parseCifarBatch interleaves the R, G, B planes into NHWC channels and reads the labels", () => {
  const { images, labels, n } = parseCifarBatch(fixtureFile(2, 3), "f", { records: 3 });
  assertEquals(n, 3);
  assertEquals(Array.from(labels), [2, 3, 4]);
  assertEquals(images.length, 3 * 32 * 32 * 3);
  for (const [i, y, x, c] of [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2], [1, 5, 7, 2], [2, 31, 31, 1]]) {
    assertEquals(images[i * 3072 + (y * 32 + x) * 3 + c], pixel(2, i, c, y * 32 + x), `pixel ${[i, y, x, c]}`);
  }
});

Deno.test("parseCifarBatch rejects truncated files, wrong record counts and bad labels, naming the file", () => {
  const good = fixtureFile(0, 2);
  assertThrows(() => parseCifarBatch(good.subarray(0, R + 100), "data_batch_9.bin", { records: 2 }), UserError, "");
  assertThrows(
    () => parseCifarBatch(good.subarray(0, R + 100), "data_batch_9.bin", { records: "any" }),
    UserError,
    "data_batch_9.bin: expected a multiple of 3073 bytes",
  );
  // The standard files must hold exactly 10,000 records.
  assertThrows(
    () => parseCifarBatch(good, "test_batch.bin"),
    UserError,
    "test_batch.bin: expected 30730000 bytes (10000 records of 3073), found 6146 (truncated or corrupt file)",
  );
  assertEquals(parseCifarBatch(good, "x", { records: "any" }).n, 2);
  const bad = good.slice();
  bad[R] = 12;
  assertThrows(() => parseCifarBatch(bad, "b.bin", { records: 2 }), UserError, "b.bin: record 1 has label 12");
});

Deno.test("loadCifar10 reads data_batch_1..5 in order for train and test_batch for test", async () => {
  const dir = await fixtureDir(await Deno.makeTempDir(), 3);
  try {
    const train = await loadCifar10("train", { dataDir: dir, records: 3, verify: false });
    assertEquals([train.name, train.n, train.shape, train.range], ["cifar10", 15, [32, 32, 3], [0, 255]]);
    assertEquals(Array.from(train.labels), [1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6, 5, 6, 7]);
    // Example 7 is record 1 of data_batch_3 (file 3); its pixel (0, 1), blue channel.
    assertEquals(train.images[7 * 3072 + 1 * 3 + 2], pixel(3, 1, 2, 1));
    const test = await loadCifar10("test", { dataDir: dir, records: 3, limit: 2, verify: false });
    assertEquals([test.n, Array.from(test.labels), test.images.length], [2, [0, 1], 2 * 3072]);
    assertEquals(test.images[3072 + 3 * 40 + 1], pixel(0, 1, 1, 40));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCifar10 with a limit reads only the files it needs; a corrupt file it needs is an error naming it", async () => {
  const dir = await fixtureDir(await Deno.makeTempDir(), 3);
  try {
    await Deno.writeFile(`${dir}/data_batch_3.bin`, fixtureFile(3, 3).subarray(0, 5000));
    const part = await loadCifar10("train", { dataDir: dir, records: 3, limit: 6, verify: false });
    assertEquals(Array.from(part.labels), [1, 2, 3, 2, 3, 4]);
    await assertRejects(
      () => loadCifar10("train", { dataDir: dir, records: 3, limit: 7, verify: false }),
      UserError,
      `${dir}/data_batch_3.bin: expected 9219 bytes (3 records of 3073), found 5000 (truncated or corrupt file)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("findCifar10Dir: --data-dir, then CIFAR10_DIR, then the cache; a given folder without the files is an error", async () => {
  const root = await Deno.makeTempDir();
  try {
    const a = await fixtureDir(`${root}/a`, 1);
    const b = await fixtureDir(`${root}/b`, 1);
    const cache = `${root}/cache`;
    await fixtureDir(`${cache}/cifar10/cifar-10-batches-bin`, 1);
    await withEnv(b, async () => {
      assertEquals(await findCifar10Dir(a, { cacheDir: cache }), a);
      assertEquals(await findCifar10Dir(undefined, { cacheDir: cache }), b);
      // A --data-dir that lacks the files does not fall through to CIFAR10_DIR.
      await assertRejects(
        () => findCifar10Dir(`${root}/nowhere`, { cacheDir: cache }),
        UserError,
        `--data-dir ${root}/nowhere is not a CIFAR-10 binary folder: missing test_batch.bin, data_batch_1.bin`,
      );
    });
    await Deno.remove(`${a}/data_batch_4.bin`);
    await withEnv(a, async () => {
      await assertRejects(() => findCifar10Dir(undefined, { cacheDir: cache }), UserError, "missing data_batch_4.bin");
      await assertRejects(() => findCifar10Dir(undefined, { cacheDir: cache }), UserError, `CIFAR10_DIR ${a}`);
    });
    await withEnv(undefined, async () => {
      assertEquals(await findCifar10Dir(undefined, { cacheDir: cache }), `${cache}/cifar10/cifar-10-batches-bin`);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** The SHA-256 of each file in `dir`, by name: the digests a fixture folder is verified against. */
async function digestsOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of [...CIFAR10_FILES.test, ...CIFAR10_FILES.train]) {
    out[name] = createHash("sha256").update(await Deno.readFile(`${dir}/${name}`)).digest("hex");
  }
  return out;
}

/** Flips one bit of byte `at` of `path`, keeping its size; its mtime is set to `mtime` (the old one restored if given). */
async function flipByte(path: string, at: number, mtime: Date): Promise<void> {
  const bytes = await Deno.readFile(path);
  bytes[at] ^= 1;
  await Deno.writeFile(path, bytes);
  await Deno.utime(path, mtime, mtime);
}

Deno.test("loadCifar10 refuses a one-byte change in a file of the right size, naming it and how to get the official one", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = await fixtureDir(`${root}/data`, 3);
    const digests = await digestsOf(dir);
    const opts = { dataDir: dir, records: 3, digests, cacheDir: `${root}/cache` };
    assertEquals(Array.from((await loadCifar10("test", opts)).labels), [0, 1, 2]);
    // A pixel of the last record changes; the size stays right and the label valid; a new mtime.
    const path = `${dir}/test_batch.bin`;
    await flipByte(path, 2 * R + 500, new Date((await Deno.stat(path)).mtime!.getTime() + 10_000));
    const err = await loadCifar10("test", opts).then(() => null, (e) => e);
    assert.ok(err instanceof UserError, String(err));
    for (
      const part of [
        `${path}: expected the official test_batch.bin (SHA-256 ${digests["test_batch.bin"]}), ` +
        "found a modified or corrupt copy of the right size",
        CIFAR10_ARCHIVE.url,
        "--data-dir",
        "verify: false",
      ]
    ) assert.ok(err.message.includes(part), `"${part}" missing from: ${err.message}`);
    assert.ok(!err.message.includes("\n"), "one line");
    // The verdict is per whole file: a limit that stops before the changed record does not hide it.
    await assertRejects(() => loadCifar10("test", { ...opts, limit: 1 }), UserError, `${path}: expected the official`);
    // verify: false is for data that is meant to differ.
    assertEquals((await loadCifar10("test", { ...opts, verify: false })).n, 3);
    // By default the known digests are the official files': the fixtures are not those.
    await assertRejects(
      () => loadCifar10("train", { dataDir: dir, records: 3, limit: 1, cacheDir: opts.cacheDir }),
      UserError,
      `${dir}/data_batch_1.bin: expected the official data_batch_1.bin (SHA-256 ${CIFAR10_SHA256["data_batch_1.bin"]})`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the verdict cache is used the second time: a change with size and mtime restored goes unseen, a new mtime is hashed again", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = await fixtureDir(`${root}/data`, 3);
    const cacheDir = `${root}/cache`;
    const opts = { dataDir: dir, records: 3, digests: await digestsOf(dir), cacheDir };
    await loadCifar10("train", { ...opts, limit: 4 }); // data_batch_1 and _2
    const path = `${dir}/data_batch_2.bin`;
    const verdicts = JSON.parse(await Deno.readTextFile(cifar10VerdictFile(cacheDir))).files;
    assertEquals(Object.keys(verdicts).sort(), [
      await Deno.realPath(`${dir}/data_batch_1.bin`),
      await Deno.realPath(path),
    ]);
    assertEquals(verdicts[await Deno.realPath(path)].sha256, opts.digests["data_batch_2.bin"]);
    // Same size, same mtime: the cached verdict stands, so the file was not hashed again.
    const mtime = (await Deno.stat(path)).mtime!;
    await flipByte(path, 5, mtime);
    assertEquals((await loadCifar10("train", { ...opts, limit: 4 })).n, 4);
    // A new mtime: hashed again, and refused.
    await Deno.utime(path, mtime, new Date(mtime.getTime() + 1000));
    await assertRejects(() => loadCifar10("train", { ...opts, limit: 4 }), UserError, `${path}: expected the official`);
    // A cache that cannot be written keeps nothing and does not stop the load.
    const noCache = `${root}/a-file/cache`;
    await Deno.writeTextFile(`${root}/a-file`, "");
    assertEquals((await loadCifar10("test", { ...opts, cacheDir: noCache })).n, 3);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("--cache-dir is honoured: the data is looked for and the verdicts kept under cacheDir, never ./.cache", async () => {
  const root = await Deno.makeTempDir();
  const cwd = Deno.cwd();
  try {
    // A complete ./.cache in the working folder, and an empty cacheDir elsewhere.
    const work = `${root}/work`;
    await fixtureDir(`${work}/.cache/cifar10/cifar-10-batches-bin`, 2);
    const cacheDir = `${root}/cache`;
    Deno.chdir(work);
    await withEnv(undefined, async () => {
      await assertRejects(
        () => findCifar10Dir(undefined, { cacheDir, download: false }),
        UserError,
        `nothing in ${cacheDir}/cifar10/cifar-10-batches-bin`,
      );
      const data = await fixtureDir(`${cacheDir}/cifar10/cifar-10-batches-bin`, 2);
      assertEquals(await findCifar10Dir(undefined, { cacheDir, download: false }), data);
      const test = await loadCifar10("test", { cacheDir, records: 2, digests: await digestsOf(data), download: false });
      assertEquals(test.n, 2);
      assertEquals(Object.keys(JSON.parse(await Deno.readTextFile(`${cacheDir}/cifar10/verified.json`)).files), [
        await Deno.realPath(`${data}/test_batch.bin`),
      ]);
      await assertRejects(() => Deno.stat(`${work}/.cache/cifar10/verified.json`), Deno.errors.NotFound);
    });
  } finally {
    Deno.chdir(cwd);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a data folder that is a file, a path through a file, and a batch file that is a folder are one-line errors naming the path", async () => {
  const root = await Deno.makeTempDir();
  try {
    const file = `${root}/a-file`;
    await Deno.writeTextFile(file, "");
    const folder = "a readable cifar-10-batches-bin folder (holding test_batch.bin and data_batch_1..5.bin)";
    await assertRejects(() => findCifar10Dir(file), UserError, `--data-dir ${file}: expected ${folder}, found a file`);
    await withEnv(file, async () => {
      await assertRejects(
        () => findCifar10Dir(undefined),
        UserError,
        `CIFAR10_DIR ${file}: expected ${folder}, found a file`,
      );
    });
    await assertRejects(
      () => loadCifar10("test", { dataDir: `${file}/sub` }),
      UserError,
      `--data-dir ${file}/sub: expected ${folder}, found a file where a folder is expected on the path`,
    );
    const dir = await fixtureDir(`${root}/data`, 1);
    await Deno.remove(`${dir}/data_batch_2.bin`);
    await Deno.mkdir(`${dir}/data_batch_2.bin`);
    await assertRejects(
      () => loadCifar10("train", { dataDir: dir, records: 1 }),
      UserError,
      `--data-dir ${dir} is not a CIFAR-10 binary folder: data_batch_2.bin is a folder, expected a file`,
    );
    // The same in the cache: named, not downloaded over.
    const cacheDir = `${root}/cache`;
    await Deno.mkdir(`${cacheDir}/cifar10`, { recursive: true });
    await Deno.rename(dir, `${cacheDir}/cifar10/cifar-10-batches-bin`);
    await withEnv(undefined, async () => {
      await assertRejects(
        () => findCifar10Dir(undefined, { cacheDir, download: false }),
        UserError,
        `cache folder ${cacheDir}/cifar10/cifar-10-batches-bin is not a CIFAR-10 binary folder: ` +
          "data_batch_2.bin is a folder, expected a file; remove it to download again",
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "a data folder or a batch file without read permission is a one-line error naming it " +
    "(skipped when running as root, where chmod 000 does not stop reads)",
  ignore: !chmodStopsReads(),
  fn: async () => {
    const root = await Deno.makeTempDir();
    try {
      const dir = await fixtureDir(`${root}/data`, 1);
      await withMode(dir, 0o000, async () => {
        await assertRejects(
          () => loadCifar10("test", { dataDir: dir, records: 1, verify: false }),
          UserError,
          `--data-dir ${dir}: expected a readable cifar-10-batches-bin folder (holding test_batch.bin and ` +
            "data_batch_1..5.bin), found no permission to read it (permission denied)",
        );
      });
      await withMode(`${dir}/data_batch_1.bin`, 0o000, async () => {
        await assertRejects(
          () => loadCifar10("train", { dataDir: dir, records: 1, verify: false }),
          UserError,
          `${dir}/data_batch_1.bin: expected a readable CIFAR-10 batch file (1 records of 3073 bytes), ` +
            "found no permission to read it (permission denied)",
        );
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("with no data and no network, one error says where to download it and where to put it", async () => {
  const root = await Deno.makeTempDir();
  try {
    await withEnv(undefined, async () => {
      for (
        const opts of [{ download: false }, { archive: { ...CIFAR10_ARCHIVE, url: "http://127.0.0.1:9/x.tar.gz" } }]
      ) {
        const err = await findCifar10Dir(undefined, { cacheDir: root, ...opts }).then(() => null, (e) => e);
        assert.ok(err instanceof UserError, String(err));
        for (
          const part of [
            "CIFAR-10 not found",
            CIFAR10_ARCHIVE.url,
            CIFAR10_ARCHIVE.md5,
            "--data-dir",
            "CIFAR10_DIR",
            `${root}/cifar10/cifar-10-batches-bin`,
          ]
        ) assert.ok(err.message.includes(part), `"${part}" missing from: ${err.message}`);
        if ("archive" in opts) assert.ok(err.message.includes("download failed"), err.message);
      }
      // A server that accepts the connection but never answers: fails after the timeout, not later.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const conns: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const c of listener) conns.push(c);
      })();
      const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/x.tar.gz`;
      const t0 = performance.now();
      await assertRejects(
        () => findCifar10Dir(undefined, { cacheDir: root, archive: { ...CIFAR10_ARCHIVE, url }, timeoutSeconds: 0.3 }),
        UserError,
        "no answer within 0.3 s",
      );
      assert.ok(performance.now() - t0 < 5000);
      listener.close();
      for (const c of conns) c.close();
      await accepting.catch(() => {});
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("Md5 matches the RFC 1321 test vectors and node:crypto on chunked input", () => {
  const vectors: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
    ["1234567890".repeat(8), "57edf4a22be3c955ac49da2e2107b67a"],
  ];
  for (const [text, hex] of vectors) assertEquals(new Md5().update(new TextEncoder().encode(text)).hex(), hex, text);
  const rng = new Rng(1);
  for (const len of [55, 56, 63, 64, 65, 119, 120, 1000, 4099]) {
    const bytes = Uint8Array.from({ length: len }, () => rng.int(256));
    const md5 = new Md5();
    for (let at = 0; at < len;) {
      const k = 1 + rng.int(130);
      md5.update(bytes.subarray(at, at + k));
      at += k;
    }
    assertEquals(md5.hex(), createHash("md5").update(bytes).digest("hex"), `length ${len}`);
  }
});

/** A ustar archive of `entries` (a name ending in "/" is a folder), with end blocks. */
function tar(entries: [string, Uint8Array | null][], prefix = ""): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const [name, data] of entries) {
    const h = new Uint8Array(512);
    const put = (at: number, text: string) => h.set(enc.encode(text), at);
    put(0, name);
    put(100, "0000644\0");
    put(108, "0000000\0");
    put(116, "0000000\0");
    put(124, `${(data?.length ?? 0).toString(8).padStart(11, "0")}\0`);
    put(136, "00000000000\0");
    h[156] = (data ? "0" : "5").charCodeAt(0);
    put(257, "ustar\x0000");
    put(345, prefix);
    h.fill(32, 148, 156);
    const sum = h.reduce((a, b) => a + b, 0);
    put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
    blocks.push(h);
    if (data) {
      const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
      padded.set(data);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((s, b) => s + b.length, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/** `bytes` as a stream of chunks of `size` bytes. */
function chunked(bytes: Uint8Array, size = 700): ReadableStream<Uint8Array<ArrayBuffer>> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await new Response(chunked(bytes).pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
}

Deno.test("readTar reads ustar folders and files (prefix joined, sizes not multiples of 512) and checks headers", async () => {
  const big = Uint8Array.from({ length: 1500 }, (_, i) => i % 251);
  const archive = tar([["d/", null], ["d/a.txt", new TextEncoder().encode("hello")], ["b.bin", big]], "top");
  const stream = new Response(await gzip(archive)).body!.pipeThrough(new DecompressionStream("gzip"));
  const entries = [];
  for await (const e of readTar(stream)) entries.push(e);
  assertEquals(entries.map((e) => [e.name, e.type, e.data.length]), [
    ["top/d/", "dir", 0],
    ["top/d/a.txt", "file", 5],
    ["top/b.bin", "file", 1500],
  ]);
  assertEquals(new TextDecoder().decode(entries[1].data), "hello");
  assertEquals(entries[2].data, big);

  const corrupt = archive.slice();
  corrupt[10] ^= 1;
  await assert.rejects(async () => {
    for await (const _ of readTar(chunked(corrupt)));
  }, /checksum/);
  await assert.rejects(async () => {
    for await (const _ of readTar(chunked(archive.subarray(0, 1200))));
  }, /truncated/);
  const dest = await Deno.makeTempDir();
  try {
    await assert.rejects(() => extractTar(chunked(tar([["../evil", new Uint8Array(1)]])), dest), /unsafe path/);
  } finally {
    await Deno.remove(dest, { recursive: true });
  }
});

Deno.test("the download verifies size and md5, extracts into the cache, and deletes only its temporary files", async () => {
  const root = await Deno.makeTempDir();
  const names = [...CIFAR10_FILES.test, ...CIFAR10_FILES.train];
  const entries: [string, Uint8Array | null][] = [["cifar-10-batches-bin/", null]];
  names.forEach((name, f) => entries.push([`cifar-10-batches-bin/${name}`, fixtureFile(f, 2)]));
  const body = await gzip(tar(entries));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response(body));
  const url = `http://127.0.0.1:${server.addr.port}/cifar-10-binary.tar.gz`;
  const md5 = new Md5().update(body).hex();
  try {
    await withEnv(undefined, async () => {
      const cache = `${root}/bad`;
      await assertRejects(
        () => findCifar10Dir(undefined, { cacheDir: cache, archive: { url, size: body.length, md5: "0".repeat(32) } }),
        UserError,
        `md5 ${md5}, expected ${"0".repeat(32)} (corrupt download, deleted)`,
      );
      await assertRejects(
        () => findCifar10Dir(undefined, { cacheDir: cache, archive: { url, size: body.length + 1, md5 } }),
        UserError,
        `expected ${body.length + 1} bytes, received ${body.length}`,
      );
      assertEquals(Array.from(Deno.readDirSync(`${cache}/cifar10`)), []);

      const good = `${root}/good`;
      const dir = await findCifar10Dir(undefined, { cacheDir: good, archive: { url, size: body.length, md5 } });
      assertEquals(dir, `${good}/cifar10/cifar-10-batches-bin`);
      assertEquals(Array.from(Deno.readDirSync(`${good}/cifar10`), (e) => e.name), ["cifar-10-batches-bin"]);
      const test = await loadCifar10("test", { cacheDir: good, records: 2, download: false, verify: false });
      assertEquals(Array.from(test.labels), [0, 1]);
    });
  } finally {
    await server.shutdown();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("checkEpsScale refuses an ε on the wrong pixel scale", () => {
  checkEpsScale(8, [0, 255]);
  checkEpsScale(0.3, [0, 1], "MNIST");
  assertThrows(
    () => checkEpsScale(0.03, [0, 255]),
    UserError,
    "eps 0.03 looks like a [0,1]-scale value; CIFAR-10 pixels here are in [0, 255], the paper's ε is 8",
  );
  assertThrows(() => checkEpsScale(8, [0, 1], "MNIST"), UserError, "eps 8 is larger than the whole pixel range");
  assertThrows(() => checkEpsScale(0, [0, 255]), UserError, "eps must be a positive number, got 0");
  assertThrows(() => checkEpsScale(NaN, [0, 255]), UserError, "got NaN");
});

Deno.test("augmentBatch: pad-4 crop + flip keeps shape and range, is deterministic for a seed, varies per image", () => {
  const n = 6, shape: [number, number, number] = [32, 32, 3];
  const images = Float32Array.from({ length: n * 3072 }, (_, i) => 1 + (i * 37) % 255);
  const a = augmentBatch(images, n, shape, new Rng(5));
  const b = augmentBatch(images, n, shape, new Rng(5));
  assertEquals(a.length, images.length);
  assertEquals(a, b);
  assert.notDeepStrictEqual(a, augmentBatch(images, n, shape, new Rng(6)));
  assert.ok(a.every((v) => v >= 0 && v <= 255));
  // Each output is a shifted (and maybe flipped) copy of its input: its nonzero pixels are the input's pixels,
  // and the zero border covers at most 4 rows and 4 columns.
  const rng = new Rng(5);
  for (let i = 0; i < n; i++) {
    const dy = rng.int(9) - 4, dx = rng.int(9) - 4, flip = rng.next() < 0.5;
    for (const [y, x, c] of [[10, 12, 0], [20, 3, 2], [31, 31, 1], [0, 0, 0]]) {
      const sy = y + dy, sx = (flip ? 31 - x : x) + dx;
      const want = sy < 0 || sy > 31 || sx < 0 || sx > 31 ? 0 : images[i * 3072 + (sy * 32 + sx) * 3 + c];
      assertEquals(a[i * 3072 + (y * 32 + x) * 3 + c], want, `image ${i} pixel ${[y, x, c]}`);
    }
  }
  // A 1x1 pad-0 identity: no crop offset is possible, only flips.
  const one = augmentBatch(Float32Array.of(7, 8, 9), 1, [1, 1, 3], new Rng(0), 0);
  assertEquals(Array.from(one), [7, 8, 9]);
});
