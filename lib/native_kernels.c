/*
 * Memory-bound loops of the native backend, compiled on first use with the
 * system C compiler (see lib/cc.ts). Each has a TypeScript twin in
 * lib/native.ts that runs when no compiler is available; tests check both.
 * Layout: NHWC float32, im2col rows ordered (kh, kw, c).
 */
#include <math.h>
#include <string.h>

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

/* Batch norm with batch statistics followed by leaky ReLU, over n rows of C channels. */
void adv_bn_act_train(const float *x, float *y, const float *gamma, const float *beta, float *mean, float *var,
                      int n, int C, float eps, float alpha) {
  double sum[C], sq[C];
  float mul[C], add[C];
  for (int c = 0; c < C; c++) sum[c] = sq[c] = 0;
  for (long i = 0; i < (long)n * C; i += C)
    for (int c = 0; c < C; c++) {
      const double v = x[i + c];
      sum[c] += v;
      sq[c] += v * v;
    }
  for (int c = 0; c < C; c++) {
    const double m = sum[c] / n;
    double v = sq[c] / n - m * m;
    if (v < 0) v = 0;
    mean[c] = (float)m;
    var[c] = (float)v;
    mul[c] = gamma[c] / sqrtf((float)v + eps);
    add[c] = beta[c] - (float)m * mul[c];
  }
  for (long i = 0; i < (long)n * C; i += C)
    for (int c = 0; c < C; c++) {
      const float z = x[i + c] * mul[c] + add[c];
      y[i + c] = z < 0 ? z * alpha : z;
    }
}

/* Gradients of adv_bn_act_train with respect to x, gamma and beta. */
void adv_bn_act_grad(const float *dy, const float *x, const float *gamma, const float *beta, const float *mean,
                     const float *var, float *dx, float *dgamma, float *dbeta, int n, int C, float eps, float alpha) {
  float inv[C], k[C], m1[C], m2[C];
  double sdz[C], sdzx[C];
  for (int c = 0; c < C; c++) {
    inv[c] = 1.0f / sqrtf(var[c] + eps);
    sdz[c] = sdzx[c] = 0;
  }
  for (long i = 0; i < (long)n * C; i += C)
    for (int c = 0; c < C; c++) {
      const float xh = (x[i + c] - mean[c]) * inv[c];
      const float z = gamma[c] * xh + beta[c];
      const float d = z < 0 ? dy[i + c] * alpha : dy[i + c];
      dx[i + c] = d;
      sdz[c] += d;
      sdzx[c] += d * xh;
    }
  for (int c = 0; c < C; c++) {
    dgamma[c] = (float)sdzx[c];
    dbeta[c] = (float)sdz[c];
    k[c] = gamma[c] * inv[c];
    m1[c] = (float)(sdz[c] / n);
    m2[c] = (float)(sdzx[c] / n);
  }
  for (long i = 0; i < (long)n * C; i += C)
    for (int c = 0; c < C; c++) {
      const float xh = (x[i + c] - mean[c]) * inv[c];
      dx[i + c] = k[c] * (dx[i + c] - m1[c] - xh * m2[c]);
    }
}
