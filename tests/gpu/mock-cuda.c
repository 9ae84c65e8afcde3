/* The launchers of oftcore/cuda/cuda-kernels.h that the GPU models use, on the CPU over host memory,
 * built with the module's model code (cuda-model.c, cuda-unet.c, cuda-vae.c, cuda-module.c) into a stand-in
 * module. It checks that model code's wiring (buffer sizes, layouts, transposes, adapters, taps, errors)
 * against the golden data on machines without a GPU; the real kernels are checked by the kernel tests.
 *
 * bf16 storage is emulated: every launcher reads its operands as fp32 and rounds what it writes to bf16
 * (round to nearest even), which is what the device kernels do around their fp32 arithmetic, so the
 * mock's bf16 error is a guide to the GPU's (not a bound: accumulation orders differ).
 *
 * OFT_CUDA_MOCK_MEMORY=BYTES caps the "device" memory, to test out-of-memory errors. */
#include "../../oftcore/cuda/cuda-kernels.h"
#include "oft/nn.h"
#include "oft/tensor.h"
#include "oft/adapters.h"
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err_msg[512];
static gboolean has_err;
static GHashTable *sizes;   /* pointer → bytes */
static size_t in_use, peak;
static gboolean in_graph;   /* a graph body is running (oftcu_graph_launch) */

static void
fail (const char *msg)
{
  if (!has_err)
    g_strlcpy (err_msg, msg, sizeof err_msg);
  has_err = TRUE;
}

int
oftcu_init (int ordinal, char *name, size_t name_len)
{
  if (!sizes)
    sizes = g_hash_table_new (NULL, NULL);
  g_strlcpy (name, "CPU mock of the CUDA launchers", name_len);
  return 0;
}

const char *oftcu_error (void) { return has_err ? err_msg : NULL; }
void oftcu_clear_error (void) { has_err = FALSE; }
static gboolean
refuse_in_graph (const char *what)
{
  if (!in_graph)
    return FALSE;
  char *m = g_strdup_printf ("%s inside a CUDA graph capture (not capturable)", what);
  fail (m);
  g_free (m);
  return TRUE;
}

int oftcu_sync (void) { return refuse_in_graph ("oftcu_sync") || has_err ? -1 : 0; }
size_t oftcu_dtype_size (OftCuDtype dt) { return dt == OFTCU_BF16 ? 2 : 4; }
void oftcu_set_tf32 (bool on) { }
size_t oftcu_peak_bytes (void) { return peak; }
void oftcu_reset_peak (void) { peak = in_use; }

void *
oftcu_alloc (size_t bytes)
{
  /* read at every allocation, so that a test can lower and lift it */
  if (refuse_in_graph ("oftcu_alloc"))
    return NULL;
  const char *lim = g_getenv ("OFT_CUDA_MOCK_MEMORY");
  size_t limit = lim ? g_ascii_strtoull (lim, NULL, 10) : 0;
  if (limit && in_use + bytes > limit)
    {
      fail ("out of memory (OFT_CUDA_MOCK_MEMORY)");
      return NULL;
    }
  void *p = NULL;
  if (posix_memalign (&p, 256, MAX (bytes, 1)) != 0)
    {
      fail ("out of memory");
      return NULL;
    }
  memset (p, 0xff, MAX (bytes, 1));  /* NaN-filled in both storage types: uninitialised reads show */
  g_hash_table_insert (sizes, p, GSIZE_TO_POINTER (bytes));
  in_use += bytes;
  peak = MAX (peak, in_use);
  return p;
}

void
oftcu_free (void *p)
{
  if (!p)
    return;
  in_use -= GPOINTER_TO_SIZE (g_hash_table_lookup (sizes, p));
  g_hash_table_remove (sizes, p);
  free (p);
}

/* Graphs: the stand-in keeps the body and runs it at every launch (capture launches nothing, as on the
 * GPU), so the model code's graph path, fixed input/output buffers included, is exercised on the CPU.
 * While it runs, allocations and host round trips fail as they would inside a real capture. */
struct OftCuGraph {
  void (*body) (void *);
  void *data;
};

OftCuGraph *
oftcu_graph_capture (void (*body) (void *data), void *data)
{
  OftCuGraph *g = g_new (OftCuGraph, 1);
  g->body = body;
  g->data = data;
  return g;
}

int
oftcu_graph_launch (OftCuGraph *g)
{
  in_graph = TRUE;
  g->body (g->data);
  in_graph = FALSE;
  return has_err ? -1 : 0;
}

void oftcu_graph_destroy (OftCuGraph *g) { g_free (g); }

/* no GPU time to measure: profiling is a no-op with an empty report */
void oftcu_prof_enable (bool on) { }
void oftcu_prof_begin (const char *label) { }
void oftcu_prof_end (void) { }
int oftcu_prof_report (char *buf, size_t len) { if (len) buf[0] = 0; return 0; }

int
oftcu_upload (void *dst, const void *src, size_t bytes)
{
  if (refuse_in_graph ("oftcu_upload"))
    return -1;
  memcpy (dst, src, bytes);
  return has_err ? -1 : 0;
}

int
oftcu_download (void *dst, const void *src, size_t bytes)
{
  if (refuse_in_graph ("oftcu_download"))
    return -1;
  memcpy (dst, src, bytes);
  return has_err ? -1 : 0;
}
void oftcu_memset0 (void *p, size_t bytes) { memset (p, 0, bytes); }
void oftcu_copy (void *dst, const void *src, size_t bytes) { memmove (dst, src, bytes); }

/* fp32 copy of n elements (g_free) */
static float *
rd (OftCuDtype dt, const void *p, int64_t n)
{
  if (!p)
    return NULL;
  float *f = g_new (float, MAX (n, 1));
  if (dt == OFTCU_F32)
    memcpy (f, p, (size_t) n * sizeof (float));
  else
    oft_convert_to_f32 (f, p, OFT_DTYPE_BF16, (size_t) n);
  return f;
}

/* stores n fp32 values as dt and frees them */
static void
wr (OftCuDtype dt, void *dst, float *f, int64_t n)
{
  if (dt == OFTCU_F32)
    memcpy (dst, f, (size_t) n * sizeof (float));
  else
    oft_convert_from_f32 (dst, OFT_DTYPE_BF16, f, (size_t) n);
  g_free (f);
}

void
oftcu_convert (void *dst, OftCuDtype dd, const void *src, OftCuDtype sd, int64_t n)
{
  wr (dd, dst, rd (sd, src, n), n);
}

void
oftcu_gemm (OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha, const void *A, int lda, int64_t sA,
            const void *B, int ldb, int64_t sB, float beta, void *C, int ldc, int64_t sC, int batch)
{
  size_t es = oftcu_dtype_size (dt);
  for (int b = 0; b < batch; b++)
    {
      /* each operand spans its rows up to the last one's leading dimension */
      int64_t na = (int64_t) ((ta ? K : M) - 1) * lda + (ta ? M : K), nb = (int64_t) ((tb ? N : K) - 1) * ldb + (tb ? K : N);
      int64_t nc = (int64_t) (M - 1) * ldc + N;
      float *a = rd (dt, (const char *) A + b * sA * es, na), *bb = rd (dt, (const char *) B + b * sB * es, nb);
      float *c = rd (dt, (char *) C + b * sC * es, nc);
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
          {
            double s = 0;
            for (int k = 0; k < K; k++)
              s += (double) a[ta ? (int64_t) k * lda + i : (int64_t) i * lda + k] *
                   bb[tb ? (int64_t) j * ldb + k : (int64_t) k * ldb + j];
            float prev = beta != 0 ? c[(int64_t) i * ldc + j] : 0;
            c[(int64_t) i * ldc + j] = (float) (alpha * s) + beta * prev;
          }
      wr (dt, (char *) C + b * sC * es, c, nc);
      g_free (a);
      g_free (bb);
    }
}

void
oftcu_linear_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias, int64_t N,
                      int C, int OC)
{
  float *x = rd (dt, inp, N * C), *w = rd (dt, weight, (int64_t) OC * C), *b = rd (dt, bias, OC);
  float *y = g_new (float, N * OC);
  oft_linear_forward (y, x, w, b, N, C, OC);
  wr (dt, out, y, N * OC);
  g_free (x);
  g_free (w);
  g_free (b);
}

static OftConv2dShape
conv_shape (const OftCuConvShape *s)
{
  return (OftConv2dShape) { .B = s->B, .C = s->C, .H = s->H, .W = s->W, .OC = s->OC, .kh = s->kh, .kw = s->kw,
                            .stride = s->stride, .pad = s->pad };
}

size_t
oftcu_conv2d_scratch_bytes (OftCuDtype dt, const OftCuConvShape *s)
{
  OftConv2dShape cs = conv_shape (s);
  return oft_conv2d_scratch_floats (&cs) * oftcu_dtype_size (dt);
}

void
oftcu_conv2d_forward (OftCuDtype dt, void *out, const void *inp, const void *weight, const void *bias,
                      const OftCuConvShape *s, void *scratch)
{
  OftConv2dShape cs = conv_shape (s);
  int64_t nin = (int64_t) s->B * s->C * s->H * s->W, nw = (int64_t) s->OC * s->C * s->kh * s->kw;
  int64_t nout = (int64_t) s->B * s->OC * oft_conv2d_out_h (&cs) * oft_conv2d_out_w (&cs);
  size_t ns = oft_conv2d_scratch_floats (&cs);
  if (ns && !scratch)
    fail ("conv2d: no scratch given where oftcu_conv2d_scratch_bytes asked for some");
  float *x = rd (dt, inp, nin), *w = rd (dt, weight, nw), *b = rd (dt, bias, s->OC), *y = g_new (float, nout);
  float *sc = ns ? g_new (float, ns) : NULL;
  oft_conv2d_forward (y, x, w, b, &cs, sc);
  wr (dt, out, y, nout);
  g_free (x);
  g_free (w);
  g_free (b);
  g_free (sc);
}

void
oftcu_groupnorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                         const float *bias, int B, int C, int64_t HW, int G, float eps)
{
  int64_t n = (int64_t) B * C * HW;
  float *x = rd (dt, inp, n), *y = g_new (float, n);
  oft_groupnorm_forward (y, mean, rstd, x, weight, bias, B, C, HW, G, eps);
  wr (dt, out, y, n);
  g_free (x);
}

void
oftcu_groupnorm_silu_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp,
                              const float *weight, const float *bias, int B, int C, int64_t HW, int G, float eps)
{
  int64_t n = (int64_t) B * C * HW;
  float *x = rd (dt, inp, n), *y = g_new (float, n);
  oft_groupnorm_forward (y, mean, rstd, x, weight, bias, B, C, HW, G, eps);
  oft_silu_forward (y, y, n);  /* in place, one rounding to dt as the device kernel */
  wr (dt, out, y, n);
  g_free (x);
}

void
oftcu_layernorm_forward (OftCuDtype dt, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                         const float *bias, int64_t N, int C, float eps)
{
  float *x = rd (dt, inp, N * C), *y = g_new (float, N * C);
  oft_layernorm_forward (y, mean, rstd, x, weight, bias, N, C, eps);
  wr (dt, out, y, N * C);
  g_free (x);
}

void
oftcu_silu_forward (OftCuDtype dt, void *out, const void *inp, int64_t n)
{
  float *x = rd (dt, inp, n), *y = g_new (float, n);
  oft_silu_forward (y, x, n);
  wr (dt, out, y, n);
  g_free (x);
}

void
oftcu_geglu_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C)
{
  float *x = rd (dt, inp, N * 2 * C), *y = g_new (float, N * C);
  oft_geglu_forward (y, x, N, C);
  wr (dt, out, y, N * C);
  g_free (x);
}

void
oftcu_softmax_forward (OftCuDtype dt, void *out, const void *inp, int64_t N, int C)
{
  float *x = rd (dt, inp, N * C), *y = g_new (float, N * C);
  oft_softmax_forward (y, x, N, C);
  wr (dt, out, y, N * C);
  g_free (x);
}

void
oftcu_attention_forward (OftCuDtype dt, void *out, float *lse, const void *q, const void *k, const void *v, int B,
                         int Tq, int Tk, int H, int D, bool causal)
{
  int64_t nq = (int64_t) B * Tq * H * D, nk = (int64_t) B * Tk * H * D;
  float *qf = rd (dt, q, nq), *kf = rd (dt, k, nk), *vf = rd (dt, v, nk), *o = g_new (float, nq);
  float *att = g_new (float, (int64_t) B * H * Tq * Tk);
  oft_attention_forward (o, att, qf, kf, vf, B, Tq, Tk, H, D, causal);
  wr (dt, out, o, nq);
  g_free (qf);
  g_free (kf);
  g_free (vf);
  g_free (att);
}

void
oftcu_upsample2x_forward (OftCuDtype dt, void *out, const void *inp, int64_t BC, int H, int W)
{
  int64_t n = BC * H * W;
  float *x = rd (dt, inp, n), *y = g_new (float, 4 * n);
  oft_upsample2x_forward (y, x, BC, H, W);
  wr (dt, out, y, 4 * n);
  g_free (x);
}

void
oftcu_concat_forward (OftCuDtype dt, void *out, const void *a, const void *b, int B, int Ca, int Cb, int64_t HW)
{
  float *af = rd (dt, a, (int64_t) B * Ca * HW), *bf = rd (dt, b, (int64_t) B * Cb * HW);
  float *y = g_new (float, (int64_t) B * (Ca + Cb) * HW);
  oft_concat_forward (y, af, bf, B, Ca, Cb, HW);
  wr (dt, out, y, (int64_t) B * (Ca + Cb) * HW);
  g_free (af);
  g_free (bf);
}

void
oftcu_add_forward (OftCuDtype dt, void *out, const void *a, const void *b, int64_t n)
{
  float *af = rd (dt, a, n), *bf = rd (dt, b, n);
  oft_add_forward (af, af, bf, n);
  wr (dt, out, af, n);
  g_free (bf);
}

void
oftcu_scale_forward (OftCuDtype dt, void *out, const void *inp, float s, int64_t n)
{
  float *x = rd (dt, inp, n);
  oft_scale_forward (x, x, s, n);
  wr (dt, out, x, n);
}

void
oftcu_add_channel_forward (OftCuDtype dt, void *x, const void *v, int B, int C, int64_t HW)
{
  float *xf = rd (dt, x, (int64_t) B * C * HW), *vf = rd (dt, v, (int64_t) B * C);
  for (int64_t bc = 0; bc < (int64_t) B * C; bc++)
    for (int64_t i = 0; i < HW; i++)
      xf[bc * HW + i] += vf[bc];
  wr (dt, x, xf, (int64_t) B * C * HW);
  g_free (vf);
}

void
oftcu_transpose_forward (OftCuDtype dt, void *out, const void *inp, int B, int C, int64_t HW)
{
  int64_t n = (int64_t) B * C * HW;
  float *x = rd (dt, inp, n), *y = g_new (float, n);
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int64_t i = 0; i < HW; i++)
        y[((int64_t) b * HW + i) * C + c] = x[((int64_t) b * C + c) * HW + i];
  wr (dt, out, y, n);
  g_free (x);
}

void
oftcu_timestep_embedding (OftCuDtype dt, void *out, const float *timesteps, int N, int dim, bool flip, float shift)
{
  float *y = g_new (float, (int64_t) N * dim);
  oft_timestep_embedding (y, timesteps, N, dim, flip, shift, 10000.0f);
  wr (dt, out, y, (int64_t) N * dim);
}

void
oftcu_block_rotate_forward (OftCuDtype dt, void *out, const void *inp, const float *R, int64_t N, int nb, int b)
{
  int64_t n = N * nb * b;
  OftSpec s = { .d = nb * b, .b = b, .n_blocks = nb };
  float *x = rd (dt, inp, n), *y = g_new (float, n);
  oft_rotate_input_forward (y, x, R, N, &s);
  wr (dt, out, y, n);
  g_free (x);
}

/* ---- the backward launchers the GPU training step uses (cuda-unet-train.c) ---- */

/* dst (dt, n) += add (fp32, n); frees add */
static void
acc (OftCuDtype dt, void *dst, float *add, int64_t n)
{
  if (!dst)
    {
      g_free (add);
      return;
    }
  float *d = rd (dt, dst, n);
  for (int64_t i = 0; i < n; i++)
    d[i] += add[i];
  g_free (add);
  wr (dt, dst, d, n);
}

void
oftcu_linear_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                       const void *weight, int64_t N, int C, int OC)
{
  if (dweight || dbias)
    fail ("mock: linear weight gradients are not emulated");
  float *dy = rd (dt, dout, N * OC), *w = rd (dt, weight, (int64_t) OC * C), *dx = g_new0 (float, N * C);
  oft_linear_backward (dx, NULL, NULL, dy, NULL, w, N, C, OC);
  acc (dt, dinp, dx, N * C);
  g_free (dy);
  g_free (w);
}

void
oftcu_conv2d_backward (OftCuDtype dt, void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                       const void *weight, const OftCuConvShape *s, void *scratch)
{
  if (dweight || dbias)
    fail ("mock: conv2d weight gradients are not emulated");
  OftConv2dShape cs = conv_shape (s);
  int64_t nin = (int64_t) s->B * s->C * s->H * s->W, nw = (int64_t) s->OC * s->C * s->kh * s->kw;
  int64_t nout = (int64_t) s->B * s->OC * oft_conv2d_out_h (&cs) * oft_conv2d_out_w (&cs);
  size_t ns = oft_conv2d_scratch_floats (&cs);
  if (ns && !scratch)
    fail ("conv2d backward: no scratch given where oftcu_conv2d_scratch_bytes asked for some");
  float *dy = rd (dt, dout, nout), *w = rd (dt, weight, nw), *dx = g_new0 (float, nin);
  float *sc = ns ? g_new (float, ns) : NULL;
  oft_conv2d_backward (dx, NULL, NULL, dy, NULL, w, &cs, sc);
  acc (dt, dinp, dx, nin);
  g_free (dy);
  g_free (w);
  g_free (sc);
}

void
oftcu_groupnorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                          const float *mean, const float *rstd, const float *weight, int B, int C, int64_t HW, int G)
{
  int64_t n = (int64_t) B * C * HW;
  float *dy = rd (dt, dout, n), *x = rd (dt, inp, n), *dx = g_new0 (float, n);
  oft_groupnorm_backward (dx, dweight, dbias, dy, x, weight, mean, rstd, B, C, HW, G);
  acc (dt, dinp, dx, n);
  g_free (dy);
  g_free (x);
}

void
oftcu_layernorm_backward (OftCuDtype dt, void *dinp, float *dweight, float *dbias, const void *dout, const void *inp,
                          const float *mean, const float *rstd, const float *weight, int64_t N, int C)
{
  float *dy = rd (dt, dout, N * C), *x = rd (dt, inp, N * C), *dx = g_new0 (float, N * C);
  oft_layernorm_backward (dx, dweight, dbias, dy, x, weight, mean, rstd, N, C);
  acc (dt, dinp, dx, N * C);
  g_free (dy);
  g_free (x);
}

void
oftcu_silu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t n)
{
  float *dy = rd (dt, dout, n), *x = rd (dt, inp, n), *dx = g_new0 (float, n);
  oft_silu_backward (dx, dy, x, n);
  acc (dt, dinp, dx, n);
  g_free (dy);
  g_free (x);
}

void
oftcu_geglu_backward (OftCuDtype dt, void *dinp, const void *dout, const void *inp, int64_t N, int C)
{
  float *dy = rd (dt, dout, N * C), *x = rd (dt, inp, N * 2 * C), *dx = g_new0 (float, N * 2 * C);
  oft_geglu_backward (dx, dy, x, N, C);
  acc (dt, dinp, dx, N * 2 * C);
  g_free (dy);
  g_free (x);
}

/* the probabilities are recomputed from q and k (the mock's forward keeps no lse) */
void
oftcu_attention_backward (OftCuDtype dt, void *dq, void *dk, void *dv, const void *dout, const void *out,
                          const float *lse, const void *q, const void *k, const void *v, int B, int Tq, int Tk,
                          int H, int D, bool causal)
{
  int64_t nq = (int64_t) B * Tq * H * D, nk = (int64_t) B * Tk * H * D;
  float *qf = rd (dt, q, nq), *kf = rd (dt, k, nk), *vf = rd (dt, v, nk), *o = g_new (float, nq);
  float *dy = rd (dt, dout, nq), *att = g_new (float, (int64_t) B * H * Tq * Tk);
  float *sc = g_new (float, MAX (oft_attention_scratch_floats (B, Tq, Tk, H, D), 1));
  float *dqf = g_new0 (float, nq), *dkf = g_new0 (float, nk), *dvf = g_new0 (float, nk);
  oft_attention_forward (o, att, qf, kf, vf, B, Tq, Tk, H, D, causal);
  oft_attention_backward (dqf, dkf, dvf, dy, att, qf, kf, vf, B, Tq, Tk, H, D, sc);
  acc (dt, dq, dqf, nq);
  acc (dt, dk, dkf, nk);
  acc (dt, dv, dvf, nk);
  g_free (qf);
  g_free (kf);
  g_free (vf);
  g_free (o);
  g_free (dy);
  g_free (att);
  g_free (sc);
}

void
oftcu_upsample2x_backward (OftCuDtype dt, void *dinp, const void *dout, int64_t BC, int H, int W)
{
  int64_t n = BC * H * W;
  float *dy = rd (dt, dout, 4 * n), *dx = g_new0 (float, n);
  oft_upsample2x_backward (dx, dy, BC, H, W);
  acc (dt, dinp, dx, n);
  g_free (dy);
}

void
oftcu_concat_backward (OftCuDtype dt, void *da, void *db, const void *dout, int B, int Ca, int Cb, int64_t HW)
{
  float *dy = rd (dt, dout, (int64_t) B * (Ca + Cb) * HW);
  float *daf = g_new0 (float, (int64_t) B * Ca * HW), *dbf = g_new0 (float, (int64_t) B * Cb * HW);
  oft_concat_backward (daf, dbf, dy, B, Ca, Cb, HW);
  acc (dt, da, daf, (int64_t) B * Ca * HW);
  acc (dt, db, dbf, (int64_t) B * Cb * HW);
  g_free (dy);
}

void
oftcu_block_rotate_backward (OftCuDtype dt, void *dinp, float *dR, const void *dout, const void *inp, const float *R,
                             int64_t N, int nb, int b)
{
  int64_t n = N * nb * b;
  OftSpec s = { .d = nb * b, .b = b, .n_blocks = nb };
  float *dy = rd (dt, dout, n), *x = rd (dt, inp, n), *dx = g_new0 (float, n);
  oft_rotate_input_backward (dx, dR, dy, x, R, N, &s);
  acc (dt, dinp, dx, n);
  g_free (dy);
  g_free (x);
}

void
oftcu_cayley_forward (float *R, float *Ainv, const float *packed, int rows, int reps, int b)
{
  if (b < 1 || b > OFTCU_CAYLEY_MAX_B || reps < 1)
    {
      fail ("cayley forward: block size out of range");
      return;
    }
  size_t bb = (size_t) b * b;
  OftSpec s = { .d = rows * b, .b = b, .n_blocks = rows };
  float *Rr = g_new (float, MAX (rows, 1) * bb);
  oft_rotation_forward (Rr, Ainv, packed, &s);
  for (int r = 0; r < rows; r++)
    for (int q = 0; q < reps; q++)
      memcpy (R + ((size_t) r * reps + q) * bb, Rr + r * bb, bb * sizeof (float));
  g_free (Rr);
}

/* dQ = −2·Aᵀ·G·Aᵀ (the CPU's oft_cayley_backward_d), G summed over the reps; in double */
void
oftcu_cayley_backward (float *dpacked, const float *dR, const float *Ainv, int rows, int reps, int b)
{
  if (b < 1 || b > OFTCU_CAYLEY_MAX_B || reps < 1)
    {
      fail ("cayley backward: block size out of range");
      return;
    }
  size_t bb = (size_t) b * b;
  double *G = g_new (double, 3 * bb), *T = G + bb, *dQ = T + bb;
  for (int r = 0; r < rows; r++)
    {
      const float *A = Ainv + r * bb;
      for (size_t e = 0; e < bb; e++)
        {
          G[e] = 0;
          for (int q = 0; q < reps; q++)
            G[e] += dR[((size_t) r * reps + q) * bb + e];
        }
      for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
          {
            double t = 0;
            for (int k = 0; k < b; k++)
              t += (double) A[k * b + i] * G[k * b + j];
            T[i * b + j] = t;
          }
      for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
          {
            double t = 0;
            for (int k = 0; k < b; k++)
              t += T[i * b + k] * A[j * b + k];
            dQ[i * b + j] = -2 * t;
          }
      float *d = dpacked + (size_t) r * b * (b - 1) / 2;
      for (int i = 0, k = 0; i < b; i++)
        for (int j = i + 1; j < b; j++, k++)
          d[k] += (float) (dQ[i * b + j] - dQ[j * b + i]);
    }
  g_free (G);
}

void
oftcu_mse_forward (OftCuDtype dt, float *loss, const void *pred, const void *target, int64_t n)
{
  float *p = rd (dt, pred, n), *t = rd (dt, target, n);
  loss[0] = oft_mse_forward (p, t, n);
  g_free (p);
  g_free (t);
}

void
oftcu_mse_backward (OftCuDtype dt, void *dpred, const void *pred, const void *target, int64_t n, float dloss)
{
  float *p = rd (dt, pred, n), *t = rd (dt, target, n), *d = g_new0 (float, n);
  oft_mse_backward (d, p, t, n, dloss);
  acc (dt, dpred, d, n);
  g_free (p);
  g_free (t);
}
