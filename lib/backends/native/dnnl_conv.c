/*
 * 2-D convolutions of the native backend through oneDNN (Debian libdnnl2,
 * headers from libdnnl-dev), compiled on first use with the system C compiler
 * (see lib/backends/native/_cc.ts). Where it does not compile or load, the native backend keeps
 * its im2col + OpenBLAS convolutions; tests compare both with the cpu backend.
 *
 * Tensors stay in TF.js layouts: activations NHWC, which oneDNN's AVX2 and
 * AVX-512 kernels read and write directly, and filters HWIO, which are reordered
 * to and from the blocked layout oneDNN picks ("any") around each call. Each distinct (direction, shape) keeps its primitives
 * and scratch buffers in a small cache, so a training loop builds each once.
 */
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

enum { FWD = 0, BWD_DATA = 1, BWD_WEIGHTS = 2 };
enum { NP = 17 }; /* H W C OH OW KH KW sh sw dh dw pt pl (im2col's, lib/backends/native/native_kernels.c), then N OC pb pr */

/* One argument of the convolution: the caller's plain tensor, oneDNN's chosen
 * layout of it, and the reorder between them when they differ. */
typedef struct {
  dnnl_memory_t user, inner;
  dnnl_primitive_t reorder; /* user -> inner for inputs, inner -> user for the output; NULL when same */
  void *buffer;
} arg_t;

typedef struct {
  int kind, p[NP];
  dnnl_primitive_t conv;
  arg_t in0, in1, out;
  int in0Arg, in1Arg, outArg;
} entry_t;

enum { CACHE = 96 };
static entry_t cache[CACHE];
static int cached = 0, next = 0;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void release(arg_t *a) {
  if (a->reorder) dnnl_primitive_destroy(a->reorder);
  if (a->inner && a->inner != a->user) dnnl_memory_destroy(a->inner);
  if (a->user) dnnl_memory_destroy(a->user);
  free(a->buffer);
  memset(a, 0, sizeof *a);
}

static void drop(entry_t *e) {
  if (e->conv) dnnl_primitive_destroy(e->conv);
  release(&e->in0);
  release(&e->in1);
  release(&e->out);
  memset(e, 0, sizeof *e);
}

/* Wraps the caller's plain tensor (desc `plain`) for the layout `chosen`; `input` says which way to reorder. */
static int bind(arg_t *a, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *chosen, int input) {
  if (dnnl_memory_create(&a->user, plain, engine, DNNL_MEMORY_NONE)) return 1;
  if (dnnl_memory_desc_equal(plain, chosen)) {
    a->inner = a->user;
    return 0;
  }
  size_t size = dnnl_memory_desc_get_size(chosen);
  if (posix_memalign(&a->buffer, 64, size ? size : 64)) return 1;
  if (dnnl_memory_create(&a->inner, chosen, engine, a->buffer)) return 1;
  dnnl_primitive_desc_t rpd;
  const dnnl_memory_desc_t *from = input ? plain : chosen, *to = input ? chosen : plain;
  if (dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL)) return 1;
  int bad = dnnl_primitive_create(&a->reorder, rpd) != dnnl_success;
  dnnl_primitive_desc_destroy(rpd);
  return bad;
}

static void reorder(arg_t *a, int input) {
  if (!a->reorder) return;
  dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, input ? a->user : a->inner}, {DNNL_ARG_TO, input ? a->inner : a->user}};
  dnnl_primitive_execute(a->reorder, stream, 2, args);
}

static int build(entry_t *e) {
  const int *p = e->p;
  const dnnl_dims_t src = {p[13], p[2], p[0], p[1]}, dst = {p[13], p[14], p[3], p[4]};
  const dnnl_dims_t wei = {p[14], p[2], p[5], p[6]};
  const dnnl_dims_t strides = {p[7], p[8]}, dilates = {p[9] - 1, p[10] - 1};
  const dnnl_dims_t padL = {p[11], p[12]}, padR = {p[15], p[16]};
  dnnl_memory_desc_t srcPlain, dstPlain, weiPlain, weiAny;
  if (dnnl_memory_desc_init_by_tag(&srcPlain, 4, src, dnnl_f32, dnnl_nhwc) ||
      dnnl_memory_desc_init_by_tag(&dstPlain, 4, dst, dnnl_f32, dnnl_nhwc) ||
      dnnl_memory_desc_init_by_tag(&weiPlain, 4, wei, dnnl_f32, dnnl_hwio) ||
      dnnl_memory_desc_init_by_tag(&weiAny, 4, wei, dnnl_f32, dnnl_format_tag_any))
    return 1;
  dnnl_convolution_desc_t fd, d;
  if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &srcPlain,
                                                 &weiAny, NULL, &dstPlain, strides, dilates, padL, padR))
    return 1;
  dnnl_primitive_desc_t fpd, pd;
  if (dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL)) return 1;
  int bad = 0;
  if (e->kind == FWD) {
    pd = fpd;
    fpd = NULL;
  } else {
    if (e->kind == BWD_DATA)
      bad = dnnl_dilated_convolution_backward_data_desc_init(&d, dnnl_convolution_direct, &srcPlain, &weiAny,
                                                             &dstPlain, strides, dilates, padL, padR) != 0;
    else
      bad = dnnl_dilated_convolution_backward_weights_desc_init(&d, dnnl_convolution_direct, &srcPlain, &weiAny,
                                                                NULL, &dstPlain, strides, dilates, padL, padR) != 0;
    if (!bad) bad = dnnl_primitive_desc_create(&pd, &d, NULL, engine, fpd) != 0;
    dnnl_primitive_desc_destroy(fpd);
    if (bad) return 1;
  }
  const dnnl_memory_desc_t *srcMd = dnnl_primitive_desc_query_md(
      pd, e->kind == BWD_DATA ? dnnl_query_diff_src_md : dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *weiMd = dnnl_primitive_desc_query_md(
      pd, e->kind == BWD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *dstMd = dnnl_primitive_desc_query_md(
      pd, e->kind == FWD ? dnnl_query_dst_md : dnnl_query_diff_dst_md, 0);
  if (e->kind == FWD) {
    bad = bind(&e->in0, &srcPlain, srcMd, 1) || bind(&e->in1, &weiPlain, weiMd, 1) ||
          bind(&e->out, &dstPlain, dstMd, 0);
    e->in0Arg = DNNL_ARG_SRC, e->in1Arg = DNNL_ARG_WEIGHTS, e->outArg = DNNL_ARG_DST;
  } else if (e->kind == BWD_DATA) {
    bad = bind(&e->in0, &dstPlain, dstMd, 1) || bind(&e->in1, &weiPlain, weiMd, 1) ||
          bind(&e->out, &srcPlain, srcMd, 0);
    e->in0Arg = DNNL_ARG_DIFF_DST, e->in1Arg = DNNL_ARG_WEIGHTS, e->outArg = DNNL_ARG_DIFF_SRC;
  } else {
    bad = bind(&e->in0, &srcPlain, srcMd, 1) || bind(&e->in1, &dstPlain, dstMd, 1) ||
          bind(&e->out, &weiPlain, weiMd, 0);
    e->in0Arg = DNNL_ARG_SRC, e->in1Arg = DNNL_ARG_DIFF_DST, e->outArg = DNNL_ARG_DIFF_WEIGHTS;
  }
  if (!bad) bad = dnnl_primitive_create(&e->conv, pd) != 0;
  dnnl_primitive_desc_destroy(pd);
  return bad;
}

static entry_t *lookup(int kind, const int *p) {
  for (int i = 0; i < cached; i++)
    if (cache[i].kind == kind && !memcmp(cache[i].p, p, sizeof(int) * NP)) return &cache[i];
  entry_t *e;
  if (cached < CACHE) e = &cache[cached++];
  else {
    e = &cache[next];
    next = (next + 1) % CACHE;
    drop(e);
  }
  e->kind = kind;
  memcpy(e->p, p, sizeof(int) * NP);
  if (build(e)) {
    drop(e);
    e->kind = -1;
    return NULL;
  }
  return e;
}

/* Creates the engine and stream; 0 on success. */
int adv_dnnl_init(void) {
  if (engine) return 0;
  if (dnnl_engine_create(&engine, dnnl_cpu, 0)) return 1;
  return dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != 0;
}

/*
 * kind 0: out = conv(a = x [N,H,W,C], b = w [KH,KW,C,OC]) [N,OH,OW,OC];
 * kind 1: out = dx [N,H,W,C] from a = dy [N,OH,OW,OC], b = w;
 * kind 2: out = dw [KH,KW,C,OC] from a = x, b = dy.
 * p: H W C OH OW KH KW strideH strideW dilationH dilationW padTop padLeft, then N OC padBottom padRight
 * (dilations as TF counts them, 1 = none). Returns 0 on success.
 */
int adv_dnnl_conv(int kind, const int *p, float *a, float *b, float *out) {
  if (adv_dnnl_init()) return 1;
  entry_t *e = lookup(kind, p);
  if (!e) return 2;
  dnnl_memory_set_data_handle(e->in0.user, a);
  dnnl_memory_set_data_handle(e->in1.user, b);
  dnnl_memory_set_data_handle(e->out.user, out);
  reorder(&e->in0, 1);
  reorder(&e->in1, 1);
  dnnl_exec_arg_t args[3] = {{e->in0Arg, e->in0.inner}, {e->in1Arg, e->in1.inner}, {e->outArg, e->out.inner}};
  if (dnnl_primitive_execute(e->conv, stream, 3, args)) return 3;
  reorder(&e->out, 0);
  return dnnl_stream_wait(stream) ? 4 : 0;
}
