/* CPU emulation runtime (tools/cuda-emu/run.sh): blocks run one after another, each block's threads are real
 * threads (a block barrier for __syncthreads, per-warp barriers for shuffles and fragment exchanges); device
 * memory is host memory (fresh allocations and shared memory start as garbage / NaN, so reads of unwritten
 * data show). Implements the runtime half of cuda-kernels.h, oftcu_gemm as a double loop, and a host
 * attention forward for the lse contract test. */
#include "cuda-common.cuh"
#include <algorithm>
#include <barrier>
#include <thread>
#include <vector>
#include <memory>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <cstdarg>
#include <cstring>
#include <string>
#include <cmath>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
struct BlockCtx {
  std::barrier<> *bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
  std::vector<double> shfl;  /* [warps][32] */
  std::vector<std::vector<unsigned char>> xbuf;  /* per warp: 32 lanes' gathered bytes */
  std::vector<unsigned char> dyn;
};
static thread_local BlockCtx *ctx;
static thread_local int lin;
static std::string err;
static int max_dyn = 48 * 1024;

void __syncthreads () { ctx->bar->arrive_and_wait (); }
double emu_shfl (double v, int o)
{
  int w = lin / 32, l = lin % 32;
  ctx->shfl[w * 32 + l] = v;
  ctx->warp_bar[w]->arrive_and_wait ();
  double r = ctx->shfl[w * 32 + (l ^ o)];
  ctx->warp_bar[w]->arrive_and_wait ();
  return r;
}
void *emu_dyn_smem () { return ctx->dyn.data (); }
int emu_lane () { return lin % 32; }
void emu_warp_gather (const void *mine, size_t bytes, void *all)
{
  int w = lin / 32, l = lin % 32;
  auto &buf = ctx->xbuf[w];
  ctx->warp_bar[w]->arrive_and_wait ();   /* earlier readers are done */
  memcpy (buf.data () + l * bytes, mine, bytes);
  ctx->warp_bar[w]->arrive_and_wait ();
  memcpy (all, buf.data (), 32 * bytes);
  ctx->warp_bar[w]->arrive_and_wait ();
}
void emu_set_max_dyn (int v) { max_dyn = v; }

void oftcu_set_error (const char *fmt, ...)
{
  if (!err.empty ()) return;
  char b[1024]; va_list ap; va_start (ap, fmt); vsnprintf (b, sizeof b, fmt, ap); va_end (ap);
  err = b;
}
bool emu_check_launch (const char *what) { return err.empty (); }
cudaStream_t oftcu_stream (void) { return nullptr; }

void emu_launch (dim3 g, dim3 b, size_t smem, const char *name, std::function<void ()> f)
{
  unsigned nt = b.x * b.y * b.z;
  if (nt == 0 || nt > 1024 || g.y > 65535 || g.z > 65535 || g.x == 0 || g.y == 0 || g.z == 0)
    { oftcu_set_error ("emu: bad launch config of %s: grid %u,%u,%u block %u,%u,%u", name, g.x, g.y, g.z, b.x, b.y, b.z); return; }
  if (smem > 48 * 1024 && (int) smem > max_dyn)
    { oftcu_set_error ("emu: %s asks %zu bytes of dynamic smem without the attribute", name, smem); return; }
  if (smem > 232448)
    { oftcu_set_error ("emu: %s asks %zu bytes of dynamic smem", name, smem); return; }
  for (unsigned bz = 0; bz < g.z; bz++)
    for (unsigned by = 0; by < g.y; by++)
      for (unsigned bx = 0; bx < g.x; bx++)
        {
          BlockCtx c;
          std::barrier<> bar (nt);
          c.bar = &bar;
          const unsigned nw = (nt + 31) / 32;   /* the last warp may be partial (a block of 2·b threads) */
          for (unsigned w = 0; w < nw; w++)
            c.warp_bar.emplace_back (new std::barrier<> (std::min (32u, nt - 32 * w)));
          c.shfl.assign (32 * nw, 0.0);
          c.xbuf.assign (nw, std::vector<unsigned char> (32 * 64));
          c.dyn.resize (smem + 16);
          float nanv = NAN;   /* uninitialised shared memory reads as NaN */
          for (size_t i = 0; i + 4 <= c.dyn.size (); i += 4) memcpy (&c.dyn[i], &nanv, 4);
          std::vector<std::thread> th;
          th.reserve (nt);
          for (unsigned t = 0; t < nt; t++)
            th.emplace_back ([&, t] {
              ctx = &c; lin = t;
              threadIdx = dim3 (t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
              blockIdx = dim3 (bx, by, bz); blockDim = b; gridDim = g;
              f ();
            });
          for (auto &x : th) x.join ();
        }
}

/* ---- runtime ---- */
extern "C" {
int oftcu_init (int ordinal, char *name, size_t name_len) { snprintf (name, name_len, "CPU emulation"); return 0; }
const char *oftcu_error (void) { return err.empty () ? nullptr : err.c_str (); }
void oftcu_clear_error (void) { err.clear (); }
int oftcu_sync (void) { return err.empty () ? 0 : -1; }
size_t oftcu_dtype_size (OftCuDtype dt) { return dt == OFTCU_BF16 ? 2 : 4; }
void oftcu_set_tf32 (bool on) {}
void *oftcu_alloc (size_t bytes)
{
  void *p = malloc (bytes);
  memset (p, 0x7f, bytes);   /* garbage */
  return p;
}
void oftcu_free (void *p) { free (p); }
int oftcu_upload (void *dst, const void *src, size_t bytes) { memcpy (dst, src, bytes); return 0; }
int oftcu_download (void *dst, const void *src, size_t bytes) { memcpy (dst, src, bytes); return 0; }
void oftcu_memset0 (void *p, size_t bytes) { memset (p, 0, bytes); }
void oftcu_copy (void *dst, const void *src, size_t bytes) { memmove (dst, src, bytes); }
size_t oftcu_peak_bytes (void) { return 0; }
void oftcu_reset_peak (void) {}

static float ldv (OftCuDtype dt, const void *p, int64_t i)
{
  if (dt == OFTCU_F32) return ((const float *) p)[i];
  return __bfloat162float (((const __nv_bfloat16 *) p)[i]);
}
static void stv (OftCuDtype dt, void *p, int64_t i, float v)
{
  if (dt == OFTCU_F32) ((float *) p)[i] = v;
  else ((__nv_bfloat16 *) p)[i] = __float2bfloat16_rn (v);
}
void oftcu_gemm (OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha,
                 const void *A, int lda, int64_t sA, const void *B, int ldb, int64_t sB,
                 float beta, void *C, int ldc, int64_t sC, int batch)
{
  if ((!ta && lda < K) || (ta && lda < M) || (!tb && ldb < N) || (tb && ldb < K) || ldc < N)
    { oftcu_set_error ("emu gemm: bad leading dims M%d N%d K%d lda%d ldb%d ldc%d", M, N, K, lda, ldb, ldc); return; }
  for (int z = 0; z < batch; z++)
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++)
        {
          double s = 0;
          for (int k = 0; k < K; k++)
            {
              double a = ldv (dt, A, z * sA + (ta ? (int64_t) k * lda + m : (int64_t) m * lda + k));
              double b = ldv (dt, B, z * sB + (tb ? (int64_t) n * ldb + k : (int64_t) k * ldb + n));
              s += a * b;
            }
          int64_t o = z * sC + (int64_t) m * ldc + n;
          float c = beta != 0.0f ? ldv (dt, C, o) : 0.0f;
          stv (dt, C, o, (float) (alpha * s + (double) beta * c));
        }
}
/* EMU_CONV_SCRATCH: batch (all images), image (one), pixels (a third of an image's pixels) */
size_t oftcu_conv2d_scratch_bytes (OftCuDtype dt, const OftCuConvShape *s)
{
  if (s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0) return 0;
  size_t OH = (s->H + 2 * s->pad - s->kh) / s->stride + 1, OW = (s->W + 2 * s->pad - s->kw) / s->stride + 1;
  size_t K = (size_t) s->C * s->kh * s->kw, P = OH * OW, es = oftcu_dtype_size (dt);
  const char *m = getenv ("EMU_CONV_SCRATCH");
  if (m && !strcmp (m, "batch")) return (size_t) s->B * K * P * es;
  if (m && !strcmp (m, "pixels")) return K * (P / 3 + 1) * es;
  return K * P * es;
}
/* host attention forward writing out and lse (for the lse contract test only) */
void oftcu_attention_forward (OftCuDtype dt, void *out, float *lse, const void *q, const void *k, const void *v,
                              int B, int Tq, int Tk, int H, int D, bool causal)
{
  const int HD = H * D;
  std::vector<double> s (Tk);
  for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int i = 0; i < Tq; i++)
    {
      int valid = causal ? i + 1 : Tk; double mx = -INFINITY;
      for (int j = 0; j < valid; j++)
        {
          double d = 0;
          for (int c = 0; c < D; c++)
            d += (double) ldv (dt, q, ((int64_t) b * Tq + i) * HD + h * D + c) * ldv (dt, k, ((int64_t) b * Tk + j) * HD + h * D + c);
          s[j] = d * (double) (1.0f / sqrtf ((float) D)); mx = fmax (mx, s[j]);
        }
      double sum = 0;
      for (int j = 0; j < valid; j++) sum += exp (s[j] - mx);
      if (lse) lse[((int64_t) b * H + h) * Tq + i] = (float) (mx + log (sum));
      for (int c = 0; c < D; c++)
        {
          double o = 0;
          for (int j = 0; j < valid; j++) o += exp (s[j] - mx) / sum * ldv (dt, v, ((int64_t) b * Tk + j) * HD + h * D + c);
          stv (dt, out, ((int64_t) b * Tq + i) * HD + h * D + c, (float) o);
        }
    }
}
}
