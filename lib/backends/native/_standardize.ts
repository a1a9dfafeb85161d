/**
 * Per-image standardisation and its gradient (the first layer of lib/nn/resnet.ts).
 *
 * @module
 */
import { type Info, type Kernel } from "./_backend.ts";
import { output, values } from "./_helpers.ts";
import { compiled } from "./_libs.ts";

/** Mean and the mean squared deviation of x[o .. o + m), as two passes (the C loop's order). */
function meanVar(x: Float32Array, o: number, m: number): [number, number] {
  let s = 0, q = 0;
  for (let j = 0; j < m; j++) s += x[o + j];
  const mu = s / m;
  for (let j = 0; j < m; j++) q += (x[o + j] - mu) ** 2;
  return [mu, q / m];
}

/** Per-image standardisation: y = (x − μ)·r, r = 1/√max(σ², 1/m) per image of m values; returns y, μ, r. */
export const standardize: Kernel = (args) => {
  const { x } = args.inputs as { x: Info };
  const b = args.backend, xv = values(b, x);
  const n = x.shape[0], m = xv.length / Math.max(n, 1);
  const y = b.alloc(xv.length), mean = new Float32Array(n), rstd = new Float32Array(n);
  if (compiled) compiled.standardize(xv, y, mean, rstd, n, m);
  else {
    for (let i = 0; i < n; i++) {
      const [mu, v] = meanVar(xv, i * m, m);
      const r = 1 / Math.sqrt(Math.max(v, 1 / m));
      for (let j = i * m; j < (i + 1) * m; j++) y[j] = (xv[j] - mu) * r;
      mean[i] = mu;
      rstd[i] = r;
    }
  }
  return [output(b, x.shape, y), output(b, [n], mean), output(b, [n], rstd)];
};

/** Gradient of {@link standardize}: dx = r·(dy − mean(dy) − y·mean(dy·y)), the last term only where σ² ≥ 1/m. */
export const standardizeGrad: Kernel = (args) => {
  const { dy, x, mean, rstd } = args.inputs as Record<string, Info>;
  const b = args.backend, xv = values(b, x), gv = values(b, dy), mv = values(b, mean), rv = values(b, rstd);
  const n = x.shape[0], m = xv.length / Math.max(n, 1);
  const dx = b.alloc(xv.length);
  if (compiled) compiled.standardizeGrad(gv, xv, mv, rv, dx, n, m);
  else {
    for (let i = 0; i < n; i++) {
      const [, v] = meanVar(xv, i * m, m);
      const mu = mv[i], r = rv[i];
      let sg = 0, sgy = 0;
      for (let j = i * m; j < (i + 1) * m; j++) {
        sg += gv[j];
        sgy += gv[j] * (xv[j] - mu) * r;
      }
      const mg = sg / m, mgy = v < 1 / m ? 0 : sgy / m;
      for (let j = i * m; j < (i + 1) * m; j++) dx[j] = r * (gv[j] - mg - (xv[j] - mu) * r * mgy);
    }
  }
  return output(b, x.shape, dx);
};
