// AssemblyScript, not Deno TypeScript: compiled by `deno task build-simd` into kernels.wasm, which
// lib/backends/wasm/simd/mod.ts runs on the wasm backend's own (shared) memory.
//
// Matrix products and convolutions on 128-bit SIMD with fused multiply-add (relaxed SIMD's
// f32x4.relaxed_madd), about twice the arithmetic per cycle of XNNPACK's separate multiply and add.
// Every pointer is a byte offset into that memory, handed in by the caller; there is no allocation,
// no global and no data segment, so instantiating the module writes nothing into the backend's heap.
//
// The shape of it: B (the weights) is packed into panels of NR = 8 columns, [K][8] each; rows of A are
// taken MR = 6 at a time, read in place when they are a plain matrix with unit column stride, else
// gathered into a [6][K] scratch tile (convolution patches, transposed operands, the last partial
// tile); a micro-kernel keeps the 6 x 8 block of C in 12 registers over all of K. Threads share the
// work in chunks of row tiles or of panels (see the exports at the end).

const MR = 6;
const NR = 8;
// Panels per block: where A's rows are read in place, the block's packed B (K x 8 x NB floats) should
// stay in a 512 KiB L2; where they are gathered (convolution patches), each gather should serve many
// panels, so blocks are larger (B from L3).
const BLOCK_BYTES = 393216;
const GATHERED_BLOCK_BYTES = 4194304;

function panelsPerBlock(k: i32, bytes: i32): i32 {
  return max(1, bytes / (k * NR * 4));
}

// Short runs (a convolution tap's channels) are copied in registers: memory.copy and memory.fill
// call out of the generated code, which costs more than the copy at these sizes.

// @ts-ignore: decorator
@inline
function copy(d: usize, s: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(d + <usize>i * 4, v128.load(s + <usize>i * 4));
  for (; i < n; i++) store<f32>(d + <usize>i * 4, load<f32>(s + <usize>i * 4));
}

// @ts-ignore: decorator
@inline
function zero(d: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(d + <usize>i * 4, f32x4.splat(0));
  for (; i < n; i++) store<f32>(d + <usize>i * 4, 0);
}

/**
 * Packs B (K x N; element (k, n) at b + 4 (k rs + n cs)) into panels p0 <= p < p1 of 8 columns at dst:
 * panel p is [K][8] at dst + 32 K p, columns past N zero.
 */
function packRange(b: usize, k: i32, n: i32, rs: i32, cs: i32, dst: usize, p0: i32, p1: i32): void {
  for (let p = p0; p < p1; p++) {
    let d = dst + <usize>p * <usize>k * 32;
    const c0 = p * NR;
    const cols = min(NR, n - c0);
    if (cs == 1 && cols == NR) {
      for (let kk = 0; kk < k; kk++) {
        const s = b + (<usize>kk * <usize>rs + <usize>c0) * 4;
        v128.store(d, v128.load(s));
        v128.store(d, v128.load(s, 16), 16);
        d += 32;
      }
    } else {
      for (let kk = 0; kk < k; kk++) {
        const s = b + (<usize>kk * <usize>rs + <usize>c0 * <usize>cs) * 4;
        for (let c = 0; c < NR; c++) {
          store<f32>(d + <usize>c * 4, c < cols ? load<f32>(s + <usize>c * <usize>cs * 4) : 0);
        }
        d += 32;
      }
    }
  }
}

/**
 * The 6 x 8 block C = A B over k steps: A's rows at a, a + lda, ... (bytes), B one packed panel at
 * bp; C's rows at c, c + ldc, ... (bytes).
 */
// @ts-ignore: decorator
@inline
function micro(a: usize, lda: usize, bp: usize, k: i32, c: usize, ldc: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let c40 = f32x4.splat(0), c41 = f32x4.splat(0), c50 = f32x4.splat(0), c51 = f32x4.splat(0);
  let a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
  for (let kk = 0; kk < k; kk++) {
    const b0 = v128.load(bp), b1 = v128.load(bp, 16);
    let s: v128;
    s = v128.load32_splat(a);
    c00 = f32x4.relaxed_madd(s, b0, c00);
    c01 = f32x4.relaxed_madd(s, b1, c01);
    s = v128.load32_splat(a1);
    c10 = f32x4.relaxed_madd(s, b0, c10);
    c11 = f32x4.relaxed_madd(s, b1, c11);
    s = v128.load32_splat(a2);
    c20 = f32x4.relaxed_madd(s, b0, c20);
    c21 = f32x4.relaxed_madd(s, b1, c21);
    s = v128.load32_splat(a3);
    c30 = f32x4.relaxed_madd(s, b0, c30);
    c31 = f32x4.relaxed_madd(s, b1, c31);
    s = v128.load32_splat(a4);
    c40 = f32x4.relaxed_madd(s, b0, c40);
    c41 = f32x4.relaxed_madd(s, b1, c41);
    s = v128.load32_splat(a5);
    c50 = f32x4.relaxed_madd(s, b0, c50);
    c51 = f32x4.relaxed_madd(s, b1, c51);
    a += 4; a1 += 4; a2 += 4; a3 += 4; a4 += 4; a5 += 4;
    bp += 32;
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  c += ldc;
  v128.store(c, c10);
  v128.store(c, c11, 16);
  c += ldc;
  v128.store(c, c20);
  v128.store(c, c21, 16);
  c += ldc;
  v128.store(c, c30);
  v128.store(c, c31, 16);
  c += ldc;
  v128.store(c, c40);
  v128.store(c, c41, 16);
  c += ldc;
  v128.store(c, c50);
  v128.store(c, c51, 16);
}

/**
 * One 6 x 8 block of the output at row tile t, panel p: written in place when whole, else through the
 * 48-float tile at `tile` and copied for the rows below m and columns below n.
 */
// @ts-ignore: decorator
@inline
function block(
  a: usize, lda: usize, bp: usize, k: i32, out: usize, ldo: i32, m: i32, n: i32, t: i32, p: i32, tile: usize,
): void {
  const r0 = t * MR, c0 = p * NR;
  const rows = min(MR, m - r0), cols = min(NR, n - c0);
  const panel = bp + <usize>p * <usize>k * 32;
  const dst = out + (<usize>r0 * <usize>ldo + <usize>c0) * 4;
  if (rows == MR && cols == NR) {
    micro(a, lda, panel, k, dst, <usize>ldo * 4);
    return;
  }
  micro(a, lda, panel, k, tile, 32);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      store<f32>(dst + (<usize>r * <usize>ldo + <usize>c) * 4, load<f32>(tile + <usize>(r * NR + c) * 4));
    }
  }
}

/**
 * out (M x N, row stride ldo floats) = A B, for row tiles t0 <= t < t1 and panels p0 <= p < p1.
 * A's element (m, k) is at a + 4 (m ars + k acs); bp holds B packed by packB. scratch: 6 K + 48 floats.
 */
function matmulRange(
  a: usize, m: i32, k: i32, ars: i32, acs: i32, bp: usize, n: i32, out: usize, ldo: i32,
  t0: i32, t1: i32, p0: i32, p1: i32, scratch: usize,
): void {
  const tile = scratch + <usize>(MR * k) * 4;
  const nb = panelsPerBlock(k, BLOCK_BYTES);
  for (let q0 = p0; q0 < p1; q0 += nb) {
    const q1 = min(p1, q0 + nb);
    for (let t = t0; t < t1; t++) {
      const r0 = t * MR;
      const rows = min(MR, m - r0);
      let rowsAt = a + <usize>r0 * <usize>ars * 4;
      let lda = <usize>ars * 4;
      if (acs != 1 || rows < MR) {
        // Gather the tile's rows into scratch, zero rows past M.
        for (let r = 0; r < MR; r++) {
          const d = scratch + <usize>(r * k) * 4;
          if (r >= rows) {
            zero(d, k);
          } else if (acs == 1) {
            copy(d, rowsAt + <usize>r * lda, k);
          } else {
            const s = rowsAt + <usize>r * lda;
            for (let kk = 0; kk < k; kk++) {
              store<f32>(d + <usize>kk * 4, load<f32>(s + <usize>kk * <usize>acs * 4));
            }
          }
        }
        rowsAt = scratch;
        lda = <usize>k * 4;
      }
      for (let p = q0; p < q1; p++) block(rowsAt, lda, bp, k, out, ldo, m, n, t, p, tile);
    }
  }
}

/**
 * out [N, HO, WO, CO] = the convolution of x [N, H, W, CI] (NHWC) with a filter [KH, KW, CI, CO] packed
 * by packB as a (KH KW CI) x CO matrix; strides sh, sw, dilations dh, dw, top and left padding pt, pl.
 * Row tiles t0 <= t < t1 of the N HO WO output pixels, panels p0 <= p < p1. scratch: 6 K + 48 floats.
 */
function conv2dRange(
  x: usize, nb: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32,
  pt: i32, pl: i32, ho: i32, wo: i32, bp: usize, co: i32, out: usize,
  t0: i32, t1: i32, p0: i32, p1: i32, scratch: usize,
): void {
  const k = kh * kw * ci;
  const m = nb * ho * wo;
  const tile = scratch + <usize>(MR * k) * 4;
  const run = <usize>ci * 4;
  const panels = panelsPerBlock(k, GATHERED_BLOCK_BYTES);
  for (let q0 = p0; q0 < p1; q0 += panels) {
    const q1 = min(p1, q0 + panels);
    for (let t = t0; t < t1; t++) {
      for (let r = 0; r < MR; r++) {
        const row = t * MR + r;
        let d = scratch + <usize>(r * k) * 4;
        if (row >= m) {
          zero(d, k);
          continue;
        }
        const b = row / (ho * wo), yx = row - b * (ho * wo);
        const oy = yx / wo, ox = yx - oy * wo;
        for (let i = 0; i < kh; i++) {
          const iy = oy * sh - pt + i * dh;
          for (let j = 0; j < kw; j++) {
            const ix = ox * sw - pl + j * dw;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
              zero(d, ci);
            } else {
              copy(d, x + ((<usize>(b * h + iy) * <usize>w + <usize>ix) * <usize>ci) * 4, ci);
            }
            d += run;
          }
        }
      }
      for (let p = q0; p < q1; p++) block(scratch, <usize>k * 4, bp, k, out, co, m, co, t, p, tile);
    }
  }
}

// Work sharing: every thread calls the same export with the same arguments, and each takes the next
// `chunk` units (row tiles when byTiles, else panels) from the counter at `counter` (an i32 in shared
// memory, zeroed by the caller) until none are left. Uneven cores (a shared machine) then even out.

// @ts-ignore: decorator
@inline
function next(counter: usize, chunk: i32): i32 {
  return atomic.add<i32>(counter, chunk);
}

/** packB's panels for all threads: see packRange. */
export function packB(b: usize, k: i32, n: i32, rs: i32, cs: i32, dst: usize, chunk: i32, counter: usize): void {
  const panels = (n + NR - 1) / NR;
  for (let u = next(counter, chunk); u < panels; u = next(counter, chunk)) {
    packRange(b, k, n, rs, cs, dst, u, min(panels, u + chunk));
  }
}

/** matmulRange for all threads, each with its own scratch. */
export function matmul(
  a: usize, m: i32, k: i32, ars: i32, acs: i32, bp: usize, n: i32, out: usize, ldo: i32,
  byTiles: bool, chunk: i32, counter: usize, scratch: usize,
): void {
  const tiles = (m + MR - 1) / MR, panels = (n + NR - 1) / NR;
  const units = byTiles ? tiles : panels;
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const v = min(units, u + chunk);
    if (byTiles) matmulRange(a, m, k, ars, acs, bp, n, out, ldo, u, v, 0, panels, scratch);
    else matmulRange(a, m, k, ars, acs, bp, n, out, ldo, 0, tiles, u, v, scratch);
  }
}

/** conv2dRange for all threads, each with its own scratch. */
export function conv2d(
  x: usize, nb: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32,
  pt: i32, pl: i32, ho: i32, wo: i32, bp: usize, co: i32, out: usize,
  byTiles: bool, chunk: i32, counter: usize, scratch: usize,
): void {
  const tiles = (nb * ho * wo + MR - 1) / MR, panels = (co + NR - 1) / NR;
  const units = byTiles ? tiles : panels;
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const v = min(units, u + chunk);
    if (byTiles) conv2dRange(x, nb, h, w, ci, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, bp, co, out, u, v, 0, panels, scratch);
    else conv2dRange(x, nb, h, w, ci, kh, kw, sh, sw, dh, dw, pt, pl, ho, wo, bp, co, out, 0, tiles, u, v, scratch);
  }
}

// The taps t of a window that fall inside the image, 0 <= o + t d < size (o: the window's first
// position, out * stride - pad), are first <= t < end: the direct loops below then need no test per tap.

// @ts-ignore: decorator
@inline
function firstTap(o: i32, d: i32): i32 {
  return o >= 0 ? 0 : (d - 1 - o) / d;
}

// @ts-ignore: decorator
@inline
function endTap(o: i32, d: i32, k: i32, size: i32): i32 {
  return o >= size ? 0 : min(k, (size - 1 - o) / d + 1);
}

/**
 * The convolution for one output channel (co = 1: the input gradient of a one-channel first layer):
 * out[b, y, x] = sum over taps in the image of x[b, y', x', :] . f[i, j, :], f as [KH, KW, CI] (contiguous
 * CI per tap). Units: output rows (b, y).
 */
export function conv2dOneOut(
  x: usize, nb: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32,
  pt: i32, pl: i32, ho: i32, wo: i32, f: usize, out: usize, chunk: i32, counter: usize,
): void {
  const units = nb * ho;
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const v = min(units, u + chunk);
    for (let row = u; row < v; row++) {
      const b = row / ho, oy = row - b * ho;
      const o = out + <usize>(row * wo) * 4;
      let ox = 0;
      while (ox < wo) {
        const x0 = ox * sw - pl;
        if ((ci & 7) == 0 && ox + 4 <= wo && x0 >= 0 && x0 + 3 * sw + (kw - 1) * dw < w) {
          fourPixels(x, b, h, w, ci, kh, kw, sh, sw, dh, dw, pt, oy, x0, f, o + <usize>ox * 4);
          ox += 4;
        } else {
          store<f32>(o + <usize>ox * 4, onePixel(x, b, h, w, ci, kh, kw, sh, dh, dw, pt, oy, x0, f));
          ox++;
        }
      }
    }
  }
}

/** conv2dOneOut at one pixel (its window starting at column x0). */
// @ts-ignore: decorator
@inline
function onePixel(
  x: usize, b: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, dh: i32, dw: i32, pt: i32, oy: i32,
  x0: i32, f: usize,
): f32 {
  // Four accumulators: one would chain every multiply-add on the one before.
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let tail: f32 = 0;
  const ci4 = ci & ~3, ci16 = ci & ~15;
  const y0 = oy * sh - pt;
  const i1 = endTap(y0, dh, kh, h), j0 = firstTap(x0, dw), j1 = endTap(x0, dw, kw, w);
  for (let i = firstTap(y0, dh); i < i1; i++) {
    const rowAt = x + (<usize>(b * h + y0 + i * dh) * <usize>w) * <usize>ci * 4;
    for (let j = j0; j < j1; j++) {
      const s = rowAt + <usize>((x0 + j * dw) * ci) * 4;
      const t = f + <usize>((i * kw + j) * ci) * 4;
      let c = 0;
      for (; c < ci16; c += 16) {
        const o = <usize>c * 4;
        a0 = f32x4.relaxed_madd(v128.load(s + o), v128.load(t + o), a0);
        a1 = f32x4.relaxed_madd(v128.load(s + o, 16), v128.load(t + o, 16), a1);
        a2 = f32x4.relaxed_madd(v128.load(s + o, 32), v128.load(t + o, 32), a2);
        a3 = f32x4.relaxed_madd(v128.load(s + o, 48), v128.load(t + o, 48), a3);
      }
      for (; c < ci4; c += 4) {
        a0 = f32x4.relaxed_madd(v128.load(s + <usize>c * 4), v128.load(t + <usize>c * 4), a0);
      }
      for (; c < ci; c++) tail += load<f32>(s + <usize>c * 4) * load<f32>(t + <usize>c * 4);
    }
  }
  return lanesSum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3))) + tail;
}

/**
 * conv2dOneOut at four pixels in a row whose windows (from column x0, sw apart) lie inside the image
 * columns, CI a multiple of 8: each filter vector is loaded once for the four; two accumulators each.
 */
// @ts-ignore: decorator
@inline
function fourPixels(
  x: usize, b: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32, pt: i32,
  oy: i32, x0: i32, f: usize, o: usize,
): void {
  let p0 = f32x4.splat(0), p1 = f32x4.splat(0), p2 = f32x4.splat(0), p3 = f32x4.splat(0);
  let q0 = f32x4.splat(0), q1 = f32x4.splat(0), q2 = f32x4.splat(0), q3 = f32x4.splat(0);
  const step = <usize>(sw * ci) * 4; // bytes from one pixel's window to the next's
  const y0 = oy * sh - pt;
  const i1 = endTap(y0, dh, kh, h);
  for (let i = firstTap(y0, dh); i < i1; i++) {
    const rowAt = x + (<usize>(b * h + y0 + i * dh) * <usize>w) * <usize>ci * 4;
    for (let j = 0; j < kw; j++) {
      const s = rowAt + <usize>((x0 + j * dw) * ci) * 4;
      const t = f + <usize>((i * kw + j) * ci) * 4;
      for (let c = 0; c < ci; c += 8) {
        const k = <usize>c * 4;
        const f0 = v128.load(t + k), f1 = v128.load(t + k, 16);
        const s0 = s + k, s1 = s0 + step, s2 = s1 + step, s3 = s2 + step;
        p0 = f32x4.relaxed_madd(v128.load(s0), f0, p0);
        q0 = f32x4.relaxed_madd(v128.load(s0, 16), f1, q0);
        p1 = f32x4.relaxed_madd(v128.load(s1), f0, p1);
        q1 = f32x4.relaxed_madd(v128.load(s1, 16), f1, q1);
        p2 = f32x4.relaxed_madd(v128.load(s2), f0, p2);
        q2 = f32x4.relaxed_madd(v128.load(s2, 16), f1, q2);
        p3 = f32x4.relaxed_madd(v128.load(s3), f0, p3);
        q3 = f32x4.relaxed_madd(v128.load(s3, 16), f1, q3);
      }
    }
  }
  store<f32>(o, lanesSum(f32x4.add(p0, q0)));
  store<f32>(o, lanesSum(f32x4.add(p1, q1)), 4);
  store<f32>(o, lanesSum(f32x4.add(p2, q2)), 8);
  store<f32>(o, lanesSum(f32x4.add(p3, q3)), 12);
}

// @ts-ignore: decorator
@inline
function lanesSum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) +
    f32x4.extract_lane(v, 3);
}

/**
 * A convolution with few inputs per output (KH KW CI small, CO a multiple of 4: a first layer) without
 * gathering: accumulators over the taps in the image for two neighbouring pixels and 16 channels at a
 * time (CO a multiple of 16, windows inside the image columns), else for one pixel and 4 channels; f as
 * [KH, KW, CI, CO]. Units: output rows (b, y).
 */
export function conv2dNarrow(
  x: usize, nb: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32,
  pt: i32, pl: i32, ho: i32, wo: i32, f: usize, co: i32, out: usize, chunk: i32, counter: usize,
): void {
  const units = nb * ho;
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const end = min(units, u + chunk);
    for (let row = u; row < end; row++) {
      const b = row / ho, oy = row - b * ho;
      for (let ox = 0; ox < wo; ox++) {
        const o = out + (<usize>(row * wo + ox) * <usize>co) * 4;
        const x0 = ox * sw - pl;
        if ((co & 15) == 0) {
          if (ox + 2 <= wo && x0 >= 0 && x0 + sw + (kw - 1) * dw < w) {
            // Two pixels whose windows lie inside the image columns.
            for (let g = 0; g < co; g += 16) narrow16(x, b, h, w, ci, kh, kw, sh, sw, dh, dw, pt, oy, x0, f, co, g, o, true);
            ox++;
          } else {
            for (let g = 0; g < co; g += 16) narrow16(x, b, h, w, ci, kh, kw, sh, sw, dh, dw, pt, oy, x0, f, co, g, o, false);
          }
          continue;
        }
        for (let g = 0; g < co; g += 4) narrow4(x, b, h, w, ci, kh, kw, sh, sw, dh, dw, pt, pl, oy, ox, f, co, g, o);
      }
    }
  }
}

/**
 * conv2dNarrow's 16 output channels from g on, at the pixel whose window starts at column x0 (output at
 * o) and, when `two`, at its right neighbour too (window at x0 + sw, output after o's), whose window
 * must then lie inside the image columns: four accumulators a pixel, each filter vector loaded once.
 */
// @ts-ignore: decorator
@inline
function narrow16(
  x: usize, b: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32, pt: i32,
  oy: i32, x0: i32, f: usize, co: i32, g: i32, o: usize, two: bool,
): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const gap = <usize>(sw * ci) * 4; // bytes from the first window to the second
  const y0 = oy * sh - pt;
  const i1 = endTap(y0, dh, kh, h), j0 = firstTap(x0, dw), j1 = endTap(x0, dw, kw, w);
  for (let i = firstTap(y0, dh); i < i1; i++) {
    const rowAt = x + (<usize>(b * h + y0 + i * dh) * <usize>w) * <usize>ci * 4;
    for (let j = j0; j < j1; j++) {
      let s = rowAt + <usize>((x0 + j * dw) * ci) * 4;
      let t = f + (<usize>((i * kw + j) * ci) * <usize>co + <usize>g) * 4;
      for (let c = 0; c < ci; c++) {
        const f0 = v128.load(t), f1 = v128.load(t, 16), f2 = v128.load(t, 32), f3 = v128.load(t, 48);
        const xa = v128.load32_splat(s);
        a0 = f32x4.relaxed_madd(xa, f0, a0);
        a1 = f32x4.relaxed_madd(xa, f1, a1);
        a2 = f32x4.relaxed_madd(xa, f2, a2);
        a3 = f32x4.relaxed_madd(xa, f3, a3);
        if (two) {
          const xb = v128.load32_splat(s + gap);
          b0 = f32x4.relaxed_madd(xb, f0, b0);
          b1 = f32x4.relaxed_madd(xb, f1, b1);
          b2 = f32x4.relaxed_madd(xb, f2, b2);
          b3 = f32x4.relaxed_madd(xb, f3, b3);
        }
        s += 4;
        t += <usize>co * 4;
      }
    }
  }
  const d = o + <usize>g * 4;
  v128.store(d, a0);
  v128.store(d, a1, 16);
  v128.store(d, a2, 32);
  v128.store(d, a3, 48);
  if (two) {
    const e = d + <usize>co * 4;
    v128.store(e, b0);
    v128.store(e, b1, 16);
    v128.store(e, b2, 32);
    v128.store(e, b3, 48);
  }
}

/** conv2dNarrow's 4 output channels from g on, at one pixel. */
// @ts-ignore: decorator
@inline
function narrow4(
  x: usize, b: i32, h: i32, w: i32, ci: i32, kh: i32, kw: i32, sh: i32, sw: i32, dh: i32, dw: i32,
  pt: i32, pl: i32, oy: i32, ox: i32, f: usize, co: i32, g: i32, o: usize,
): void {
  let a0 = f32x4.splat(0);
  const y0 = oy * sh - pt, x0 = ox * sw - pl;
  const i1 = endTap(y0, dh, kh, h), j0 = firstTap(x0, dw), j1 = endTap(x0, dw, kw, w);
  for (let i = firstTap(y0, dh); i < i1; i++) {
    const rowAt = x + (<usize>(b * h + y0 + i * dh) * <usize>w) * <usize>ci * 4;
    for (let j = j0; j < j1; j++) {
      let s = rowAt + <usize>((x0 + j * dw) * ci) * 4;
      let t = f + (<usize>((i * kw + j) * ci) * <usize>co + <usize>g) * 4;
      for (let c = 0; c < ci; c++) {
        a0 = f32x4.relaxed_madd(v128.load32_splat(s), v128.load(t), a0);
        s += 4;
        t += <usize>co * 4;
      }
    }
  }
  v128.store(o + <usize>g * 4, a0);
}

/**
 * The max-pool gradient for 2 x 2 windows at stride 2 inside the image (x, dx [N, H, W, C], dy
 * [N, HO, WO, C], 2 HO <= H, 2 WO <= W): each window's dy goes to its first maximum in row-major order
 * (NaN never wins; a window of NaN and -Infinity sends nothing), as the cpu backend does. Windows do not
 * overlap, so dx is written, not added to; pixels outside every window get 0. Units: window rows (b, oy).
 */
export function maxPoolGrad2x2(
  x: usize, dy: usize, dx: usize, nb: i32, h: i32, w: i32, c: i32, ho: i32, wo: i32, chunk: i32, counter: usize,
): void {
  const units = nb * ho;
  const row = <usize>w * <usize>c * 4; // bytes per image row
  const c4 = c & ~3;
  const low = f32x4.splat(-Infinity);
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const end = min(units, u + chunk);
    for (let r = u; r < end; r++) {
      const b = r / ho, oy = r - b * ho;
      const top = x + <usize>(b * h + 2 * oy) * row;
      const dtop = dx + <usize>(b * h + 2 * oy) * row;
      for (let ox = 0; ox < wo; ox++) {
        const p00 = <usize>(2 * ox * c) * 4, p01 = p00 + <usize>c * 4, p10 = p00 + row, p11 = p01 + row;
        const gp = dy + (<usize>(r * wo + ox) * <usize>c) * 4;
        let ch = 0;
        for (; ch < c4; ch += 4) {
          const o = <usize>ch * 4;
          const v00 = v128.load(top + p00 + o), v01 = v128.load(top + p01 + o);
          const v10 = v128.load(top + p10 + o), v11 = v128.load(top + p11 + o);
          // The running maximum after each candidate, and where a later candidate beat it.
          const m0 = f32x4.gt(v00, low);
          let best = v128.bitselect(v00, low, m0);
          const m1 = f32x4.gt(v01, best);
          best = v128.bitselect(v01, best, m1);
          const m2 = f32x4.gt(v10, best);
          best = v128.bitselect(v10, best, m2);
          const m3 = f32x4.gt(v11, best);
          // The winner is the last candidate that beat the running maximum.
          const w3 = m3;
          const w2 = v128.andnot(m2, m3);
          const w1 = v128.andnot(v128.andnot(m1, m2), m3);
          const w0 = v128.andnot(v128.andnot(v128.andnot(m0, m1), m2), m3);
          const g = v128.load(gp + o);
          v128.store(dtop + p00 + o, v128.and(g, w0));
          v128.store(dtop + p01 + o, v128.and(g, w1));
          v128.store(dtop + p10 + o, v128.and(g, w2));
          v128.store(dtop + p11 + o, v128.and(g, w3));
        }
        for (; ch < c; ch++) {
          const o = <usize>ch * 4;
          let best: f32 = -Infinity;
          let at: usize = 0;
          let found = false;
          let v = load<f32>(top + p00 + o);
          if (v > best) { best = v; at = p00; found = true; }
          v = load<f32>(top + p01 + o);
          if (v > best) { best = v; at = p01; found = true; }
          v = load<f32>(top + p10 + o);
          if (v > best) { best = v; at = p10; found = true; }
          v = load<f32>(top + p11 + o);
          if (v > best) { at = p11; found = true; }
          store<f32>(dtop + p00 + o, 0);
          store<f32>(dtop + p01 + o, 0);
          store<f32>(dtop + p10 + o, 0);
          store<f32>(dtop + p11 + o, 0);
          if (found) store<f32>(dtop + at + o, load<f32>(gp + o));
        }
      }
      // Columns right of the last window, in both rows; rows below the last window row.
      const done = <usize>(2 * wo * c) * 4;
      zero(dtop + done, <i32>((row - done) / 4));
      zero(dtop + row + done, <i32>((row - done) / 4));
      if (oy == ho - 1) {
        for (let y = 2 * ho; y < h; y++) zero(dx + <usize>(b * h + y) * row, w * c);
      }
    }
  }
}

/**
 * One Adam step over n values, with f32 operations in the order of the composed update in lib/train/optim.ts
 * (so the same floats): m2 = m b1 + g c1, v2 = v b2 + (g g) c2, w2 = w - (m2 step) / (sqrt(v2) + eps).
 * Units: blocks of 1024 values.
 */
export function adam(
  w: usize, m: usize, v: usize, g: usize, w2: usize, m2: usize, v2: usize, n: i32,
  step: f32, b1: f32, c1: f32, b2: f32, c2: f32, eps: f32, chunk: i32, counter: usize,
): void {
  const units = (n + 1023) >> 10;
  const vb1 = f32x4.splat(b1), vc1 = f32x4.splat(c1), vb2 = f32x4.splat(b2), vc2 = f32x4.splat(c2);
  const vstep = f32x4.splat(step), veps = f32x4.splat(eps);
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const i0 = u << 10, i1 = min(n, (u + chunk) << 10);
    let i = i0;
    for (; i + 4 <= i1; i += 4) {
      const o = <usize>i * 4;
      const gi = v128.load(g + o);
      const mi = f32x4.add(f32x4.mul(v128.load(m + o), vb1), f32x4.mul(gi, vc1));
      const vi = f32x4.add(f32x4.mul(v128.load(v + o), vb2), f32x4.mul(f32x4.mul(gi, gi), vc2));
      v128.store(m2 + o, mi);
      v128.store(v2 + o, vi);
      v128.store(w2 + o, f32x4.sub(v128.load(w + o), f32x4.div(f32x4.mul(mi, vstep), f32x4.add(f32x4.sqrt(vi), veps))));
    }
    for (; i < i1; i++) {
      const o = <usize>i * 4;
      const gi = load<f32>(g + o);
      const mi = load<f32>(m + o) * b1 + gi * c1;
      const vi = load<f32>(v + o) * b2 + gi * gi * c2;
      store<f32>(m2 + o, mi);
      store<f32>(v2 + o, vi);
      store<f32>(w2 + o, load<f32>(w + o) - (mi * step) / (sqrt<f32>(vi) + eps));
    }
  }
}

/**
 * One step of SGD with momentum and L2 decay over n values, in f32 in the order of lib/train/optim.ts's
 * composed update: d = g + w decay (when decay != 0), v2 = v mu + d, w2 = w - v2 lr. Units: blocks of 1024.
 */
export function momentum(
  w: usize, v: usize, g: usize, w2: usize, v2: usize, n: i32, lr: f32, mu: f32, decay: f32,
  chunk: i32, counter: usize,
): void {
  const units = (n + 1023) >> 10;
  const vmu = f32x4.splat(mu), vlr = f32x4.splat(lr), vdecay = f32x4.splat(decay);
  const decays = decay != 0;
  for (let u = next(counter, chunk); u < units; u = next(counter, chunk)) {
    const i0 = u << 10, i1 = min(n, (u + chunk) << 10);
    let i = i0;
    for (; i + 4 <= i1; i += 4) {
      const o = <usize>i * 4;
      const wi = v128.load(w + o);
      let d = v128.load(g + o);
      if (decays) d = f32x4.add(d, f32x4.mul(wi, vdecay));
      const vi = f32x4.add(f32x4.mul(v128.load(v + o), vmu), d);
      v128.store(v2 + o, vi);
      v128.store(w2 + o, f32x4.sub(wi, f32x4.mul(vi, vlr)));
    }
    for (; i < i1; i++) {
      const o = <usize>i * 4;
      const wi = load<f32>(w + o);
      let d = load<f32>(g + o);
      if (decays) d += wi * decay;
      const vi = load<f32>(v + o) * mu + d;
      store<f32>(v2 + o, vi);
      store<f32>(w2 + o, wi - vi * lr);
    }
  }
}

/**
 * out[c] = the sum of x[r, c] over rows r < rows (x: rows x cols): a bias gradient, the sum of an
 * activation gradient over batch and image positions. Each block of 64 rows is summed on its own
 * and then added to the total, which keeps the rounding error of long sums down. part: cols floats.
 * One thread.
 */
export function sumRows(x: usize, rows: i32, cols: i32, out: usize, part: usize): void {
  const c4 = cols & ~3;
  zero(out, cols);
  for (let r0 = 0; r0 < rows; r0 += 64) {
    const r1 = min(rows, r0 + 64);
    zero(part, cols);
    for (let r = r0; r < r1; r++) {
      const s = x + <usize>r * <usize>cols * 4;
      let c = 0;
      for (; c < c4; c += 4) {
        const o = <usize>c * 4;
        v128.store(part + o, f32x4.add(v128.load(part + o), v128.load(s + o)));
      }
      for (; c < cols; c++) store<f32>(part + <usize>c * 4, load<f32>(part + <usize>c * 4) + load<f32>(s + <usize>c * 4));
    }
    let c = 0;
    for (; c < c4; c += 4) {
      const o = <usize>c * 4;
      v128.store(out + o, f32x4.add(v128.load(out + o), v128.load(part + o)));
    }
    for (; c < cols; c++) store<f32>(out + <usize>c * 4, load<f32>(out + <usize>c * 4) + load<f32>(part + <usize>c * 4));
  }
}
