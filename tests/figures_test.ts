import assert from "node:assert/strict";
import { fmtNum, fmtPct, markdownTable } from "../lib/report/table.ts";
import { toPng, toSvg, type VegaLiteSpec, writeFigure, writeJsonAtomic } from "../lib/report/vega.ts";

/** A 2×2 faceted histogram like the paper's Figure 1, on tiny data. */
function tinyHistogram(): VegaLiteSpec {
  const values = [];
  for (const model of ["natural", "adversarial"]) {
    for (const example of ["a", "b"]) {
      for (let i = 0; i < 12; i++) {
        values.push({
          model,
          example,
          loss: (i % 5) + (model === "natural" ? 10 : 0),
        });
      }
    }
  }
  return {
    data: { values },
    facet: {
      row: { field: "model", sort: ["natural", "adversarial"] },
      column: { field: "example" },
    },
    spec: {
      width: 80,
      height: 50,
      mark: "bar",
      encoding: {
        x: { field: "loss", bin: { maxbins: 10 }, title: "Loss value" },
        y: { aggregate: "count", title: "Count" },
        color: {
          field: "model",
          scale: {
            domain: ["natural", "adversarial"],
            range: ["#1f77b4", "#d62728"],
          },
          legend: null,
        },
      },
    },
    resolve: { scale: { x: "independent" } },
  };
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function svgSize(svg: string): { width: number; height: number } {
  const m = svg.match(/<svg[^>]*\swidth="(\d+)"[^>]*\sheight="(\d+)"/);
  assert.ok(m, "svg root has width and height");
  return { width: Number(m[1]), height: Number(m[2]) };
}

Deno.test("toSvg renders axis titles and facet labels, the same each call", async () => {
  const svg = await toSvg(tinyHistogram());
  assert.ok(svg.startsWith("<svg"), svg.slice(0, 40));
  for (const text of ["Loss value", "Count", "natural", "adversarial"]) {
    assert.ok(svg.includes(`>${text}</text>`), `svg lacks the text ${text}`);
  }
  assert.ok(svg.includes('fill="#d62728"'), "adversarial bars are red");
  assert.equal(await toSvg(tinyHistogram()), svg);
});

Deno.test("toSvg leaves the spec and its inline data untouched", async () => {
  const spec = tinyHistogram();
  const before = structuredClone(spec);
  await toSvg(spec);
  assert.deepEqual(spec, before); // deepEqual also compares symbol keys
});

Deno.test("toPng gives a PNG at twice the SVG size by default", async () => {
  const svg = await toSvg(tinyHistogram());
  const { width, height } = svgSize(svg);
  const png = await toPng(svg);
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
  const ihdr = new DataView(png.buffer, png.byteOffset + 16, 8);
  assert.equal(ihdr.getUint32(0), 2 * width);
  assert.equal(ihdr.getUint32(4), 2 * height);
  assert.ok(png.length > 2_000 && png.length < 500_000, `${png.length} bytes`);
  const small = await toPng(svg, { scale: 1 });
  assert.equal(
    new DataView(small.buffer, small.byteOffset + 16, 4).getUint32(0),
    width,
  );
  assert.deepEqual(await toPng(svg), png, "PNG bytes are deterministic");
  await assert.rejects(toPng(svg, { scale: 0 }), /scale must be/);
});

Deno.test("writeFigure writes spec, svg, png and markdown, and no .tmp files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "figures_test_" });
  try {
    const out = `${dir}/nested/figs`;
    const spec = tinyHistogram();
    const paths = await writeFigure(out, "fig1", spec, "# Figure 1\n");
    assert.deepEqual(paths, [
      `${out}/fig1.vl.json`,
      `${out}/fig1.svg`,
      `${out}/fig1.png`,
      `${out}/fig1.md`,
    ]);
    const names = [];
    for await (const e of Deno.readDir(out)) names.push(e.name);
    assert.deepEqual(names.sort(), [
      "fig1.md",
      "fig1.png",
      "fig1.svg",
      "fig1.vl.json",
    ]);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(paths[0])), spec);
    assert.ok((await Deno.readTextFile(paths[1])).startsWith("<svg"));
    const png = await Deno.readFile(paths[2]);
    assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
    assert.equal(await Deno.readTextFile(paths[3]), "# Figure 1\n");
    await assert.rejects(
      writeFigure(out, "../escape", spec, ""),
      /figure name/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeJsonAtomic round-trips pretty JSON with a trailing newline", async () => {
  const dir = await Deno.makeTempDir({ prefix: "figures_test_" });
  try {
    const path = `${dir}/results.json`;
    const value = {
      config: { eps: 0.3, steps: 40 },
      acc: [0.98, 0.89],
      ok: true,
    };
    await writeJsonAtomic(path, value);
    await writeJsonAtomic(path, value); // overwriting an existing file works
    const text = await Deno.readTextFile(path);
    assert.equal(text, JSON.stringify(value, null, 2) + "\n");
    assert.deepEqual(JSON.parse(text), value);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["results.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("markdownTable pads, aligns and escapes pipes", () => {
  const table = markdownTable(
    ["model", "nat acc", "adv | PGD"],
    [
      ["natural", fmtPct(0.9921), fmtPct(0.035)],
      ["adv. trained", fmtPct(0.984), fmtPct(0.891, 2)],
    ],
    ["l", "r", "c"],
  );
  assert.equal(
    table,
    [
      "| model        | nat acc | adv \\| PGD |",
      "| :----------- | ------: | :--------: |",
      "| natural      |   99.2% |    3.5%    |",
      "| adv. trained |   98.4% |   89.10%   |",
      "",
    ].join("\n"),
  );
  assert.equal(markdownTable(["a"], [[1]]), "| a   |\n| :-- |\n| 1   |\n");
  assert.throws(
    () => markdownTable(["a", "b"], [[1]]),
    /row 0 must have 2 cells/,
  );
});

Deno.test("number formatters", () => {
  assert.equal(fmtPct(0.971), "97.1%");
  assert.equal(fmtPct(1, 0), "100%");
  assert.equal(fmtNum(0.31415, 2), "0.31");
  assert.equal(fmtNum(3), "3.00");
  assert.equal(fmtNum(NaN), "NaN");
});
