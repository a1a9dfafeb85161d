/*
 * Memory-bound loops of the native backend, compiled on first use with the
 * system C compiler (see lib/backends/native/_cc.ts). Each has a TypeScript twin in
 * lib/backends/native/ (the _*.ts kernels) that runs when no compiler is available; tests check both.
 * Layout: NHWC float32, im2col rows ordered (kh, kw, c). Built with -fopenmp
 * where the compiler has it: the batch-norm loops then use every core.
 */
#include <dlfcn.h>
#include <math.h>
#include <string.h>

/* Keeps a shared library loaded until the process ends (its threads may be parked in it at exit); 0 on success. */
int adv_pin(const char *path) { return dlopen(path, RTLD_NOW | RTLD_NODELETE) ? 0 : 1; }

typedef struct {
  int H, W, C, OH, OW, KH, KW, sh, sw, dh, dw, pt, pl;
} conv_t;

static conv_t info(const int *p) {
  conv_t c = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12]};
  return c;
}

/* col[(b-b0)*OH*OW + oh*OW + ow][(kh*KW + kw)*C + c] = x[b][ih][iw][c] or 0 outside. */
void adv_im2col(const float *x, float *col, int b0, int nb, const int *params) {
  conv_t ci = info(params);
  const int rowLen = ci.KW * ci.C;
  float *p = col;
  for (int b = b0; b < b0 + nb; b++) {
    const float *xb = x + (long)b * ci.H * ci.W * ci.C;
    for (int oh = 0; oh < ci.OH; oh++) {
      const int ih0 = oh * ci.sh - ci.pt;
      for (int ow = 0; ow < ci.OW; ow++) {
        const int iw0 = ow * ci.sw - ci.pl;
        const int inside = ci.dw == 1 && iw0 >= 0 && iw0 + ci.KW <= ci.W;
        for (int kh = 0; kh < ci.KH; kh++) {
          const int ih = ih0 + kh * ci.dh;
          if (ih < 0 || ih >= ci.H) {
            memset(p, 0, sizeof(float) * rowLen);
            p += rowLen;
            continue;
          }
          const float *xr = xb + (long)ih * ci.W * ci.C;
          if (inside) {
            memcpy(p, xr + (long)iw0 * ci.C, sizeof(float) * rowLen);
            p += rowLen;
            continue;
          }
          for (int kw = 0; kw < ci.KW; kw++) {
            const int iw = iw0 + kw * ci.dw;
            if (iw < 0 || iw >= ci.W) memset(p, 0, sizeof(float) * ci.C);
            else memcpy(p, xr + (long)iw * ci.C, sizeof(float) * ci.C);
            p += ci.C;
          }
        }
      }
    }
  }
}

/* The adjoint of adv_im2col: adds the rows of col back into dx. */
void adv_col2im(const float *col, float *dx, int b0, int nb, const int *params) {
  conv_t ci = info(params);
  const int rowLen = ci.KW * ci.C;
  const float *p = col;
  for (int b = b0; b < b0 + nb; b++) {
    float *xb = dx + (long)b * ci.H * ci.W * ci.C;
    for (int oh = 0; oh < ci.OH; oh++) {
      const int ih0 = oh * ci.sh - ci.pt;
      for (int ow = 0; ow < ci.OW; ow++) {
        const int iw0 = ow * ci.sw - ci.pl;
        const int inside = ci.dw == 1 && iw0 >= 0 && iw0 + ci.KW <= ci.W;
        for (int kh = 0; kh < ci.KH; kh++) {
          const int ih = ih0 + kh * ci.dh;
          if (ih < 0 || ih >= ci.H) {
            p += rowLen;
            continue;
          }
          float *xr = xb + (long)ih * ci.W * ci.C;
          if (inside) {
            float *d = xr + (long)iw0 * ci.C;
            for (int i = 0; i < rowLen; i++) d[i] += p[i];
            p += rowLen;
            continue;
          }
          for (int kw = 0; kw < ci.KW; kw++) {
            const int iw = iw0 + kw * ci.dw;
            if (iw >= 0 && iw < ci.W) {
              float *d = xr + (long)iw * ci.C;
              for (int c = 0; c < ci.C; c++) d[c] += p[c];
            }
            p += ci.C;
          }
        }
      }
    }
  }
}

/* o = leaky(r·mul + add) over one row of C channels. */
static inline void leaky_row(const float *restrict r, float *restrict o, const float *restrict mul,
                             const float *restrict add, int C, float alpha) {
  for (int c = 0; c < C; c++) {
    const float z = r[c] * mul[c] + add[c];
    o[c] = (z > 0.0f ? z : 0.0f) + alpha * (z < 0.0f ? z : 0.0f);
  }
}

/* Rows per block of the batch-norm loops: sums run in float within a block (vectorised), in double across blocks. */
enum { BN_BLOCK = 64 };

/*
 * Per-channel sums s1[c], s2[c] (double[C]) over rows i < n, where ROW adds row i's terms into fs[c], fq[c]:
 * in float within blocks of BN_BLOCK rows (vectorised), in double across blocks; the blocks split across threads.
 */
#define ADV_BLOCK_SUMS(n, C, s1, s2, ROW)                                                        \
  do {                                                                                           \
    const long blocks_ = ((long)(n) + BN_BLOCK - 1) / BN_BLOCK;                                  \
    for (int c = 0; c < (C); c++) (s1)[c] = (s2)[c] = 0;                                         \
    _Pragma("omp parallel") {                                                                    \
      double ls[C], lq[C];                                                                       \
      float fs[C], fq[C];                                                                        \
      for (int c = 0; c < (C); c++) ls[c] = lq[c] = 0;                                           \
      _Pragma("omp for schedule(static)") for (long b = 0; b < blocks_; b++) {                   \
        const long i0 = b * BN_BLOCK, i1 = i0 + BN_BLOCK < (n) ? i0 + BN_BLOCK : (n);            \
        for (int c = 0; c < (C); c++) fs[c] = fq[c] = 0;                                         \
        for (long i = i0; i < i1; i++) ROW;                                                      \
        for (int c = 0; c < (C); c++) ls[c] += fs[c], lq[c] += fq[c];                            \
      }                                                                                          \
      _Pragma("omp critical") for (int c = 0; c < (C); c++) (s1)[c] += ls[c], (s2)[c] += lq[c]; \
    }                                                                                            \
  } while (0)

/* One row of the batch statistics: running sums of x and x². */
static inline void sum_row(const float *restrict r, float *restrict fs, float *restrict fq, int C) {
  for (int c = 0; c < C; c++) {
    fs[c] += r[c];
    fq[c] += r[c] * r[c];
  }
}

/* Batch norm with batch statistics followed by leaky ReLU, over n rows of C channels. */
void adv_bn_act_train(const float *x, float *y, const float *gamma, const float *beta, float *mean, float *var,
                      int n, int C, float eps, float alpha) {
  double sum[C], sq[C];
  float mul[C], add[C];
  ADV_BLOCK_SUMS(n, C, sum, sq, sum_row(x + i * C, fs, fq, C));
  for (int c = 0; c < C; c++) {
    const double m = n ? sum[c] / n : 0;
    double v = n ? sq[c] / n - m * m : 0;
    if (v < 0) v = 0;
    mean[c] = (float)m;
    var[c] = (float)v;
    mul[c] = gamma[c] / sqrtf((float)v + eps);
    add[c] = beta[c] - (float)m * mul[c];
  }
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) leaky_row(x + i * C, y + i * C, mul, add, C, alpha);
}

/* One row of the gradient's first pass: o = dy · leaky'(z), and the running sums of o and o · x̂. */
static inline void leaky_grad_row(const float *restrict r, const float *restrict g, float *restrict o,
                                  const float *restrict mean, const float *restrict inv,
                                  const float *restrict gamma, const float *restrict beta, float *restrict fs,
                                  float *restrict fq, int C, float alpha) {
  for (int c = 0; c < C; c++) {
    const float xh = (r[c] - mean[c]) * inv[c];
    const float z = gamma[c] * xh + beta[c];
    const float d = z < 0.0f ? g[c] * alpha : g[c];
    o[c] = d;
    fs[c] += d;
    fq[c] += d * xh;
  }
}

/* One row of the second pass: o = k · (o − m1 − x̂ · m2). */
static inline void bn_grad_row(const float *restrict r, float *restrict o, const float *restrict mean,
                               const float *restrict inv, const float *restrict k, const float *restrict m1,
                               const float *restrict m2, int C) {
  for (int c = 0; c < C; c++) {
    const float xh = (r[c] - mean[c]) * inv[c];
    o[c] = k[c] * (o[c] - m1[c] - xh * m2[c]);
  }
}

/* Gradients of adv_bn_act_train with respect to x, gamma and beta. */
void adv_bn_act_grad(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                     const float *var, float *dx, float *dgamma, float *dbeta, int n, int C, float eps, float alpha) {
  float inv[C], k[C], m1[C], m2[C];
  for (int c = 0; c < C; c++) inv[c] = 1.0f / sqrtf(var[c] + eps);
  /* pass 1: d = dy · leaky'(z) into dx; per-channel Σd and Σd·x̂ */
  double sdz[C], sdzx[C];
  ADV_BLOCK_SUMS(n, C, sdz, sdzx, leaky_grad_row(x + i * C, dy + i * C, dx + i * C, mean, inv, gamma, beta, fs, fq, C, alpha));
  for (int c = 0; c < C; c++) {
    dgamma[c] = (float)sdzx[c];
    dbeta[c] = (float)sdz[c];
    k[c] = gamma[c] * inv[c];
    m1[c] = n ? (float)(sdz[c] / n) : 0;
    m2[c] = n ? (float)(sdzx[c] / n) : 0;
  }
  /* pass 2: dx = γ/σ · (d − mean(d) − x̂ · mean(d·x̂)) */
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) bn_grad_row(x + i * C, dx + i * C, mean, inv, k, m1, m2, C);
}

/* Inference batch norm (moving statistics folded into mul, add) followed by leaky ReLU. */
void adv_bn_act_infer(const float *x, float *y, const float *mul, const float *add, int n, int C, float alpha) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) leaky_row(x + i * C, y + i * C, mul, add, C, alpha);
}

/* One row of the inference gradient: o = d · mul with d = dy · leaky'(z); running sums of d and d · x̂. */
static inline void infer_grad_row(const float *restrict r, const float *restrict g, float *restrict o,
                                  const float *restrict mul, const float *restrict add,
                                  const float *restrict mean, const float *restrict inv, float *restrict fs,
                                  float *restrict fq, int C, float alpha) {
  for (int c = 0; c < C; c++) {
    const float z = r[c] * mul[c] + add[c];
    const float d = z < 0.0f ? g[c] * alpha : g[c];
    o[c] = d * mul[c];
    fs[c] += d;
    fq[c] += d * (r[c] - mean[c]) * inv[c];
  }
}

/* Gradients of adv_bn_act_infer with respect to x, gamma and beta (the statistics are constants). */
void adv_bn_act_infer_grad(const float *dy, const float *x, const float *mul, const float *add, const float *mean,
                           const float *inv, float *dx, float *dgamma, float *dbeta, int n, int C, float alpha) {
  double sd[C], sdx[C];
  ADV_BLOCK_SUMS(n, C, sd, sdx, infer_grad_row(x + i * C, dy + i * C, dx + i * C, mul, add, mean, inv, fs, fq, C, alpha));
  for (int c = 0; c < C; c++) dgamma[c] = (float)sdx[c], dbeta[c] = (float)sd[c];
}

/* y = a op b for n elements where b repeats with period p (p = n: same shape; p = 1: a scalar);
 * with swap, y = b op a. op: 0 add, 1 subtract, 2 multiply, 3 divide. */
#define ADV_BINARY_LOOP(EXPR)                                                      \
  if (p == n) {                                                                    \
    _Pragma("omp parallel for schedule(static)") for (long i = 0; i < n; i++) {   \
      const float u = a[i], w = b[i];                                              \
      y[i] = EXPR;                                                                 \
    }                                                                              \
  } else {                                                                         \
    _Pragma("omp parallel for schedule(static)") for (long r = 0; r < n / p; r++) { \
      const float *ar = a + r * p;                                                 \
      float *yr = y + r * p;                                                       \
      for (long j = 0; j < p; j++) {                                               \
        const float u = ar[j], w = b[j];                                           \
        yr[j] = EXPR;                                                              \
      }                                                                            \
    }                                                                              \
  }

void adv_binary(int op, const float *restrict a, const float *restrict b, long n, long p, float *restrict y,
                int swap) {
  if (p <= 0 || n % p) return;
  switch (op * 2 + (swap != 0)) {
  case 0: case 1: ADV_BINARY_LOOP(u + w); break;
  case 2: ADV_BINARY_LOOP(u - w); break;
  case 3: ADV_BINARY_LOOP(w - u); break;
  case 4: case 5: ADV_BINARY_LOOP(u * w); break;
  case 6: ADV_BINARY_LOOP(u / w); break;
  case 7: ADV_BINARY_LOOP(w / u); break;
  }
}

/* Mean of m values and of their squared deviations from it, in float lanes (vectorised), as two passes. */
static inline void mean_var(const float *restrict x, long m, float *mean, float *var) {
  float s = 0, q = 0;
#pragma omp simd reduction(+ : s)
  for (long j = 0; j < m; j++) s += x[j];
  const float mu = s / (float)m;
#pragma omp simd reduction(+ : q)
  for (long j = 0; j < m; j++) q += (x[j] - mu) * (x[j] - mu);
  *mean = mu;
  *var = q / (float)m;
}

/*
 * Per-image standardisation of n images of m values: y = (x − μ)·r with r = 1/√max(σ², 1/m);
 * writes y and each image's μ and r.
 */
void adv_standardize(const float *x, float *y, float *mean, float *rstd, int n, long m) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    const float *restrict xi = x + i * m;
    float *restrict yi = y + i * m;
    float mu, v;
    mean_var(xi, m, &mu, &v);
    const float r = 1.0f / sqrtf(v < 1.0f / (float)m ? 1.0f / (float)m : v);
    for (long j = 0; j < m; j++) yi[j] = (xi[j] - mu) * r;
    mean[i] = mu;
    rstd[i] = r;
  }
}

/*
 * Gradient of adv_standardize: dx = r · (dy − mean(dy) − y · mean(dy · y)), without the last term
 * for an image whose σ² was below 1/m (there r does not depend on x).
 */
void adv_standardize_grad(const float *dy, const float *x, const float *mean, const float *rstd, float *dx, int n,
                          long m) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    const float *restrict xi = x + i * m, *restrict gi = dy + i * m;
    float *restrict oi = dx + i * m;
    const float mu = mean[i], r = rstd[i];
    float mu2, v;
    mean_var(xi, m, &mu2, &v);
    float sg = 0, sgy = 0;
#pragma omp simd reduction(+ : sg, sgy)
    for (long j = 0; j < m; j++) {
      sg += gi[j];
      sgy += gi[j] * (xi[j] - mu) * r;
    }
    const float mg = sg / (float)m, mgy = v < 1.0f / (float)m ? 0.0f : sgy / (float)m;
    for (long j = 0; j < m; j++) oi[j] = r * (gi[j] - mg - (xi[j] - mu) * r * mgy);
  }
}

/*
 * The update of an L-inf PGD step over n values, in float as the TF.js ops do it:
 * y = clip(min(max(x + step * sign(g), x0 - eps), x0 + eps), lo, hi).
 */
void adv_pgd_update(const float *restrict x, const float *restrict g, const float *restrict x0, float *restrict y,
                    long n, float step, float eps, float lo, float hi) {
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    const float s = g[i] > 0.0f ? step : g[i] < 0.0f ? -step : 0.0f * g[i];
    float v = x[i] + s;
    const float a = x0[i] - eps, b = x0[i] + eps;
    v = v > a ? v : a;
    v = v < b ? v : b;
    v = v > lo ? v : lo;
    y[i] = v < hi ? v : hi;
  }
}

/* The input rows (or columns) [lo, hi) that output position o's pooling window covers, padding excluded. */
static inline void window(int o, int stride, int pad, int k, int size, int *lo, int *hi) {
  const int start = o * stride - pad;
  *lo = start < 0 ? 0 : start;
  *hi = start + k < size ? start + k : size;
}

/*
 * Average pooling over NHWC images b < n (params as adv_im2col's; the window's pixels inside the image only, as
 * TensorFlow): forward y from x, or with grad != 0 its adjoint, dx (zeroed here) from dy.
 */
void adv_avg_pool(const float *in, float *out, int n, const int *params, int grad) {
  conv_t ci = info(params);
  const long xImage = (long)ci.H * ci.W * ci.C, yImage = (long)ci.OH * ci.OW * ci.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; b++) {
    const float *src = in + b * (grad ? yImage : xImage);
    float *dst = out + b * (grad ? xImage : yImage);
    if (grad) memset(dst, 0, sizeof(float) * xImage);
    for (int oh = 0; oh < ci.OH; oh++) {
      int r0, r1;
      window(oh, ci.sh, ci.pt, ci.KH, ci.H, &r0, &r1);
      for (int ow = 0; ow < ci.OW; ow++) {
        int c0, c1;
        window(ow, ci.sw, ci.pl, ci.KW, ci.W, &c0, &c1);
        const float inv = 1.0f / (float)((r1 - r0) * (c1 - c0));
        const long o = ((long)oh * ci.OW + ow) * ci.C;
        if (!grad) {
          float *restrict yo = dst + o;
          for (int c = 0; c < ci.C; c++) yo[c] = 0;
          for (int ih = r0; ih < r1; ih++)
            for (int iw = c0; iw < c1; iw++) {
              const float *restrict xs = src + ((long)ih * ci.W + iw) * ci.C;
              for (int c = 0; c < ci.C; c++) yo[c] += xs[c];
            }
          for (int c = 0; c < ci.C; c++) yo[c] *= inv;
        } else {
          const float *restrict g = src + o;
          for (int ih = r0; ih < r1; ih++)
            for (int iw = c0; iw < c1; iw++) {
              float *restrict xd = dst + ((long)ih * ci.W + iw) * ci.C;
              for (int c = 0; c < ci.C; c++) xd[c] += g[c] * inv;
            }
        }
      }
    }
  }
}

/* A float's bits as an int that orders like the float (non-NaN values); its own inverse (lib/backends/native/_helpers.ts orderKey). */
static inline int order_key(int v) { return v ^ ((v >> 31) & 0x7fffffff); }
#define KEY_NEG_INF ((int)0x807fffff) /* order_key(bits of -inf) */

/*
 * Max pooling over NHWC images b < n (params as adv_im2col's), on order keys as lib/backends/native/_pool.ts's twin: NaNs with the
 * sign bit set are ignored, a NaN with it clear wins its window.
 */
void adv_max_pool(const float *x, float *y, int n, const int *params) {
  conv_t ci = info(params);
  const long xImage = (long)ci.H * ci.W * ci.C, yImage = (long)ci.OH * ci.OW * ci.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; b++) {
    const int *xi = (const int *)x + b * xImage;
    int *yi = (int *)y + b * yImage;
    for (int oh = 0; oh < ci.OH; oh++) {
      int r0, r1;
      window(oh, ci.sh, ci.pt, ci.KH, ci.H, &r0, &r1);
      for (int ow = 0; ow < ci.OW; ow++) {
        int c0, c1;
        window(ow, ci.sw, ci.pl, ci.KW, ci.W, &c0, &c1);
        int *restrict yo = yi + ((long)oh * ci.OW + ow) * ci.C;
        for (int c = 0; c < ci.C; c++) yo[c] = KEY_NEG_INF;
        for (int ih = r0; ih < r1; ih++)
          for (int iw = c0; iw < c1; iw++) {
            const int *restrict xs = xi + ((long)ih * ci.W + iw) * ci.C;
            for (int c = 0; c < ci.C; c++) {
              const int k = order_key(xs[c]);
              yo[c] = k > yo[c] ? k : yo[c];
            }
          }
        for (int c = 0; c < ci.C; c++) yo[c] = order_key(yo[c]);
      }
    }
  }
}

/*
 * The gradient of adv_max_pool: dx (zeroed here) gets each window's dy at the first maximum in scan order (ties,
 * e.g. windows of ReLU zeros, go to the top-left one), as the cpu kernel and lib/backends/native/_pool.ts's twin do.
 */
void adv_max_pool_grad(const float *x, const float *dy, float *dx, int n, const int *params) {
  conv_t ci = info(params);
  const long xImage = (long)ci.H * ci.W * ci.C, yImage = (long)ci.OH * ci.OW * ci.C;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < n; b++) {
    const int *xi = (const int *)x + b * xImage;
    const float *g = dy + b * yImage;
    float *d = dx + b * xImage;
    int best[ci.C];
    long at[ci.C];
    memset(d, 0, sizeof(float) * xImage);
    for (int oh = 0; oh < ci.OH; oh++) {
      int r0, r1;
      window(oh, ci.sh, ci.pt, ci.KH, ci.H, &r0, &r1);
      for (int ow = 0; ow < ci.OW; ow++) {
        int c0, c1;
        window(ow, ci.sw, ci.pl, ci.KW, ci.W, &c0, &c1);
        for (int c = 0; c < ci.C; c++) best[c] = KEY_NEG_INF, at[c] = -1;
        /* Strictly greater moves: the first position of the maximum in scan order stays. A window with nothing above
           -inf routes to its first -inf, and one of ignored NaNs only routes nowhere, as the TypeScript twin. */
        for (int ih = r0; ih < r1; ih++)
          for (int iw = c0; iw < c1; iw++) {
            const long s = ((long)ih * ci.W + iw) * ci.C;
            for (int c = 0; c < ci.C; c++) {
              const int k = order_key(xi[s + c]);
              const int take = k > best[c] || (k == best[c] && at[c] < 0);
              best[c] = take ? k : best[c];
              at[c] = take ? s + c : at[c];
            }
          }
        const float *restrict go = g + ((long)oh * ci.OW + ow) * ci.C;
        for (int c = 0; c < ci.C; c++)
          if (at[c] >= 0) d[at[c]] += go[c];
      }
    }
  }
}

/* relu on the bits (NaN stays NaN), and its gradient step: 1 where x > 0, alpha where x <= 0, NaN stays NaN. */
void adv_relu_step(const float *x, float *y, long n, int step, float alpha) {
  const int *xi = (const int *)x;
  int *yi = (int *)y;
  union { float f; int i; } one = {1.0f}, a = {alpha};
  const int diff = one.i ^ a.i;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    const int v = xi[i];
    const int nan = (0x7f800000 - (v & 0x7fffffff)) >> 31;
    if (step) {
      const int notPositive = (int)((unsigned)(v | (v - 1)) >> 31);
      const int out = one.i ^ (diff & -notPositive);
      yi[i] = (out & ~nan) | (v & nan);
    } else {
      yi[i] = v & ~((v >> 31) & ~nan);
    }
  }
}

/* No fused multiply-adds in the optimiser updates: they then round as their TypeScript twins do, bit for bit. */
#if defined(__clang__)
#define NO_FMA
#define NO_FMA_BODY _Pragma("clang fp contract(off)")
#else
#define NO_FMA __attribute__((optimize("fp-contract=off")))
#define NO_FMA_BODY
#endif

/*
 * One Adam step over n values, in double as the TypeScript twin (lib/backends/native/_updates.ts adamUpdate) computes it:
 * m2 = b1 m + (1 - b1) g, v2 = b2 v + (1 - b2) g^2, w2 = w - step m2 / (sqrt(v2) + eps).
 */
NO_FMA void adv_adam_update(const float *restrict w, const float *restrict m, const float *restrict v,
                     const float *restrict g, float *restrict w2, float *restrict m2, float *restrict v2, long n,
                     double step, double beta1, double beta2, double eps) {
  NO_FMA_BODY
  const double c1 = 1 - beta1, c2 = 1 - beta2;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    const double gi = g[i];
    const double mi = beta1 * m[i] + c1 * gi;
    const double vi = beta2 * v[i] + c2 * gi * gi;
    m2[i] = (float)mi;
    v2[i] = (float)vi;
    w2[i] = (float)(w[i] - step * mi / (sqrt(vi) + eps));
  }
}

/* One step of SGD with momentum and L2 decay over n values, in double as the TypeScript twin: v2 = mu v + g + decay w,
   w2 = w - lr v2. */
NO_FMA void adv_momentum_update(const float *restrict w, const float *restrict v, const float *restrict g,
                         float *restrict w2, float *restrict v2, long n, double lr, double momentum, double decay) {
  NO_FMA_BODY
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) {
    const double vi = momentum * v[i] + g[i] + decay * w[i];
    v2[i] = (float)vi;
    w2[i] = (float)(w[i] - lr * vi);
  }
}

/* Eight float lanes (AVX's width; two NEON registers elsewhere); aligned(4) allows unaligned loads. */
typedef float v8f __attribute__((vector_size(32), aligned(4)));

/* The (kernel offset, dy index) pairs of the taps of a convolution that reach input index i along one axis. */
static int taps(int i, int pad, int K, int dil, int stride, int outSize, int *pairs) {
  int n = 0;
  for (int k = 0; k < K; k++) {
    const int t = i + pad - k * dil;
    if (t < 0 || t % stride || t / stride >= outSize) continue;
    pairs[2 * n] = k, pairs[2 * n + 1] = t / stride, n++;
  }
  return n;
}

/*
 * One image row r (of N·H) of adv_conv_input_grad_narrow's dx. NB > 0: OC = 8·NB output channels held in
 * NB vector accumulators (NB is a constant once inlined); NB = 0: any OC up to NARROW_OC, through memory.
 */
enum { NARROW_OC = 1024, NARROW_K = 64 };
static inline __attribute__((always_inline)) void narrow_row(const int NB, const float *dy, const float *w, float *dx,
                                                             const conv_t ci, const int OC, const long r) {
  const long b = r / ci.H;
  int rows[2 * NARROW_K], cols[2 * NARROW_K];
  const int nrows = taps((int)(r % ci.H), ci.pt, ci.KH, ci.dh, ci.sh, ci.OH, rows);
  for (int x = 0; x < ci.W; x++) {
    const int ncols = taps(x, ci.pl, ci.KW, ci.dw, ci.sw, ci.OW, cols);
    float *out = dx + (r * ci.W + x) * ci.C;
    for (int c = 0; c < ci.C; c++) {
      v8f acc[8];
      float wide[NB ? 1 : NARROW_OC];
      for (int j = 0; j < NB; j++) acc[j] = (v8f){0};
      if (!NB)
        for (int o = 0; o < OC; o++) wide[o] = 0;
      for (int i = 0; i < nrows; i++) {
        const float *dyRow = dy + (b * ci.OH + rows[2 * i + 1]) * ci.OW * OC;
        const float *wRow = w + ((long)rows[2 * i] * ci.KW * ci.C + c) * OC;
        for (int k = 0; k < ncols; k++) {
          const float *restrict d = dyRow + (long)cols[2 * k + 1] * OC;
          const float *restrict q = wRow + (long)cols[2 * k] * ci.C * OC;
          for (int j = 0; j < NB; j++) acc[j] += *(const v8f *)(d + 8 * j) * *(const v8f *)(q + 8 * j);
          if (!NB)
            for (int o = 0; o < OC; o++) wide[o] += d[o] * q[o];
        }
      }
      float s = 0;
      if (NB) {
        for (int j = 1; j < NB; j++) acc[0] += acc[j];
        for (int l = 0; l < 8; l++) s += acc[0][l];
      } else {
#pragma omp simd reduction(+ : s)
        for (int o = 0; o < OC; o++) s += wide[o];
      }
      out[c] = s;
    }
  }
}

/*
 * Input gradient of a convolution with few input channels (the first layer of a net, where the whole PGD
 * attack's gradient ends): dx[b][h][w][c] = Σ over the taps (kh, kw) that reach (h, w) of
 * dy[b][oh][ow][:] · w[kh][kw][c][:], vectorised over the output channels, threaded over image rows.
 * p: im2col's 13 params, then N and OC (as adv_dnnl_conv's); returns 1 (computing nothing) where OC is over
 * NARROW_OC or a kernel side over NARROW_K. On model A's first layer at batch 100, oneDNN took 8 ms and im2col
 * + GEMM 5, this 3.4.
 */
int adv_conv_input_grad_narrow(const float *dy, const float *w, float *dx, const int *p) {
  const conv_t ci = info(p);
  const int N = p[13], OC = p[14];
  if (OC > NARROW_OC || ci.KH > NARROW_K || ci.KW > NARROW_K) return 1;
  const int NB = OC % 8 ? 0 : OC / 8;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)N * ci.H; r++) {
    switch (NB) {
    case 1: narrow_row(1, dy, w, dx, ci, OC, r); break;
    case 2: narrow_row(2, dy, w, dx, ci, OC, r); break;
    case 3: narrow_row(3, dy, w, dx, ci, OC, r); break;
    case 4: narrow_row(4, dy, w, dx, ci, OC, r); break;
    case 6: narrow_row(6, dy, w, dx, ci, OC, r); break;
    case 8: narrow_row(8, dy, w, dx, ci, OC, r); break;
    default: narrow_row(0, dy, w, dx, ci, OC, r); break;
    }
  }
  return 0;
}

/*
 * y[o][j] = scale · Σ_k x[o][k][j] for x of shape [outer, r, inner], in double, each sum in order of k
 * (as the TypeScript twin, so both give the same floats): threaded over outer and blocks of 8 columns.
 */
void adv_sum_middle(const float *x, float *y, long outer, long r, long inner, double scale) {
  const long blocks = (inner + 7) / 8;
#pragma omp parallel for collapse(2) schedule(static)
  for (long o = 0; o < outer; o++) {
    for (long q = 0; q < blocks; q++) {
      const long j0 = q * 8, m = inner - j0 < 8 ? inner - j0 : 8;
      double acc[8] = {0};
      const float *base = x + o * r * inner + j0;
      if (m == 8)
        for (long k = 0; k < r; k++)
          for (int j = 0; j < 8; j++) acc[j] += base[k * inner + j];
      else
        for (long k = 0; k < r; k++)
          for (int j = 0; j < m; j++) acc[j] += base[k * inner + j];
      for (int j = 0; j < m; j++) y[o * inner + j0 + j] = (float)(acc[j] * scale);
    }
  }
}
