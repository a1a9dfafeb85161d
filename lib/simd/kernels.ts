// AssemblyScript, not Deno TypeScript: compiled by `deno task build-simd` into kernels.wasm, which
// lib/simd.ts runs on the wasm backend's own (shared) memory.
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
// Panels per block: the block's packed B (K x 8 x NB floats) should stay in a 512 KiB L2.
const BLOCK_BYTES = 393216;

function panelsPerBlock(k: i32): i32 {
  return max(1, BLOCK_BYTES / (k * NR * 4));
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
  const nb = panelsPerBlock(k);
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
  const panels = panelsPerBlock(k);
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
