/*
 * Memory-bound loops of the native backend, compiled on first use with the
 * system C compiler (see lib/cc.ts). Each has a TypeScript twin in
 * lib/native.ts that runs when no compiler is available; tests check both.
 * Layout: NHWC float32, im2col rows ordered (kh, kw, c).
 */
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
