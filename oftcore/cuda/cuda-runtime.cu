/* Device, stream, sticky error, memory and GEMM of the CUDA backend. One device and one stream per process;
 * everything is enqueued on that stream, so work is ordered without events. Memory comes from the stream-
 * ordered allocator (cudaMallocAsync) with a pool that keeps freed blocks, which makes per-step buffers
 * cheap; live and peak byte counts are kept here since the pool does not say what the caller asked for. */
#include "cuda-common.cuh"
#include <cublas_v2.h>
#include <mutex>
#include <unordered_map>
#include <vector>
#include <map>
#include <string>
#include <algorithm>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int g_device = -1;
static cudaStream_t g_stream;
static cublasHandle_t g_blas;
static void *g_blas_workspace;
static const size_t BLAS_WORKSPACE = 32u << 20;   /* cuBLAS's recommendation for Hopper */
static bool g_tf32 = true;
static char g_name[256];

static std::mutex g_error_lock;
static char g_error[1024];
static bool g_has_error;

/* true while oftcu_graph_capture runs its body: host round trips and allocations are refused then */
static bool g_capturing;

static bool
refuse_in_capture (const char *what)
{
  if (!g_capturing)
    return false;
  oftcu_set_error ("%s inside a CUDA graph capture (not capturable)", what);
  return true;
}

static std::mutex g_mem_lock;
static std::unordered_map<void *, size_t> *g_sizes;
static size_t g_live, g_peak;

void
oftcu_set_error (const char *fmt, ...)
{
  std::lock_guard<std::mutex> hold (g_error_lock);
  if (g_has_error)
    return;
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (g_error, sizeof g_error, fmt, ap);
  va_end (ap);
  g_has_error = true;
}

bool
oftcu_check (cudaError_t e, const char *what, const char *file, int line)
{
  if (e == cudaSuccess)
    return true;
  oftcu_set_error ("%s:%d: %s: %s (%s)", file, line, what, cudaGetErrorName (e), cudaGetErrorString (e));
  return false;
}

static bool
blas_check (cublasStatus_t s, const char *what, int line)
{
  if (s == CUBLAS_STATUS_SUCCESS)
    return true;
  oftcu_set_error ("cuda-runtime.cu:%d: %s: %s (cuBLAS status %d)", line, what, cublasGetStatusString (s), (int) s);
  return false;
}

extern "C" const char *
oftcu_error (void)
{
  std::lock_guard<std::mutex> hold (g_error_lock);
  return g_has_error ? g_error : NULL;
}

extern "C" void
oftcu_clear_error (void)
{
  std::lock_guard<std::mutex> hold (g_error_lock);
  g_has_error = false;
  g_error[0] = 0;
}

cudaStream_t
oftcu_stream (void)
{
  return g_stream;
}

extern "C" int
oftcu_init (int ordinal, char *name, size_t name_len)
{
  if (g_device >= 0)
    {
      if (name && name_len)
        snprintf (name, name_len, "%s", g_name);
      return 0;
    }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount (&count);
  if (e != cudaSuccess)
    {
      oftcu_set_error ("no usable CUDA device: %s (%s)", cudaGetErrorString (e), cudaGetErrorName (e));
      return -1;
    }
  if (ordinal < 0 || ordinal >= count)
    {
      oftcu_set_error ("CUDA device %d requested, but %d device%s present", ordinal, count, count == 1 ? " is" : "s are");
      return -1;
    }
  cudaDeviceProp prop;
  if (!OFTCU_CHECK (cudaGetDeviceProperties (&prop, ordinal)))
    return -1;
  /* the module carries sm_90 code and compute_90 PTX, which older GPUs cannot run */
  if (prop.major < 9)
    {
      oftcu_set_error ("CUDA device %d (%s) has compute capability %d.%d; this build needs 9.0 or newer (H100, H200)",
                       ordinal, prop.name, prop.major, prop.minor);
      return -1;
    }
  if (!OFTCU_CHECK (cudaSetDevice (ordinal)) ||
      !OFTCU_CHECK (cudaStreamCreateWithFlags (&g_stream, cudaStreamNonBlocking)))
    return -1;
  /* keep freed blocks in the pool instead of returning them to the driver at every sync */
  cudaMemPool_t pool;
  uint64_t keep = UINT64_MAX;
  if (!OFTCU_CHECK (cudaDeviceGetDefaultMemPool (&pool, ordinal)) ||
      !OFTCU_CHECK (cudaMemPoolSetAttribute (pool, cudaMemPoolAttrReleaseThreshold, &keep)))
    return -1;
  if (!blas_check (cublasCreate (&g_blas), "cublasCreate", __LINE__) ||
      !blas_check (cublasSetStream (g_blas, g_stream), "cublasSetStream", __LINE__))
    return -1;
  /* fp32 accumulation everywhere, also inside split-K reductions of bf16 GEMMs (the contract's promise) */
  if (!blas_check (cublasSetMathMode (g_blas, (cublasMath_t) (CUBLAS_DEFAULT_MATH |
                                                               CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
                   "cublasSetMathMode", __LINE__))
    return -1;
  if (!OFTCU_CHECK (cudaMalloc (&g_blas_workspace, BLAS_WORKSPACE)) ||
      !blas_check (cublasSetWorkspace (g_blas, g_blas_workspace, BLAS_WORKSPACE), "cublasSetWorkspace", __LINE__))
    return -1;
  g_sizes = new std::unordered_map<void *, size_t> ();
  snprintf (g_name, sizeof g_name, "%.200s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
            prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
  if (name && name_len)
    snprintf (name, name_len, "%s", g_name);
  g_device = ordinal;
  return 0;
}

extern "C" int
oftcu_sync (void)
{
  if (g_device < 0)
    {
      oftcu_set_error ("oftcu_sync: oftcu_init has not succeeded");
      return -1;
    }
  if (refuse_in_capture ("oftcu_sync"))
    return -1;
  OFTCU_CHECK (cudaStreamSynchronize (g_stream));
  OFTCU_CHECK (cudaGetLastError ());
  return oftcu_error () ? -1 : 0;
}

extern "C" size_t
oftcu_dtype_size (OftCuDtype dt)
{
  return dt == OFTCU_BF16 ? 2 : 4;
}

extern "C" void
oftcu_set_tf32 (bool on)
{
  g_tf32 = on;
}

/* ---- memory ---- */

extern "C" void *
oftcu_alloc (size_t bytes)
{
  if (g_device < 0)
    {
      oftcu_set_error ("oftcu_alloc: oftcu_init has not succeeded");
      return NULL;
    }
  if (refuse_in_capture ("oftcu_alloc"))
    return NULL;
  void *p = NULL;
  /* a zero-byte request still gets a distinct pointer, so NULL always means failure */
  cudaError_t e = cudaMallocAsync (&p, bytes ? bytes : 1, g_stream);
  if (e != cudaSuccess)
    {
      size_t free_b = 0, total_b = 0;
      cudaGetLastError ();  /* clear the non-sticky out-of-memory */
      cudaMemGetInfo (&free_b, &total_b);
      oftcu_set_error ("out of GPU memory allocating %zu bytes (%.1f MiB; %.1f MiB live through oftcu_alloc, "
                       "%.1f of %.1f MiB free on the device): %s", bytes, bytes / 1048576.0, g_live / 1048576.0,
                       free_b / 1048576.0, total_b / 1048576.0, cudaGetErrorString (e));
      return NULL;
    }
  std::lock_guard<std::mutex> hold (g_mem_lock);
  (*g_sizes)[p] = bytes;
  g_live += bytes;
  if (g_live > g_peak)
    g_peak = g_live;
  return p;
}

extern "C" void
oftcu_free (void *p)
{
  if (!p || g_device < 0)
    return;
  {
    std::lock_guard<std::mutex> hold (g_mem_lock);
    auto it = g_sizes->find (p);
    if (it == g_sizes->end ())
      {
        oftcu_set_error ("oftcu_free: %p was not allocated by oftcu_alloc (or freed twice)", p);
        return;
      }
    g_live -= it->second;
    g_sizes->erase (it);
  }
  OFTCU_CHECK (cudaFreeAsync (p, g_stream));
}

extern "C" size_t
oftcu_peak_bytes (void)
{
  std::lock_guard<std::mutex> hold (g_mem_lock);
  return g_peak;
}

extern "C" void
oftcu_reset_peak (void)
{
  std::lock_guard<std::mutex> hold (g_mem_lock);
  g_peak = g_live;
}

extern "C" int
oftcu_upload (void *dst, const void *src, size_t bytes)
{
  if (!bytes)
    return 0;
  if (refuse_in_capture ("oftcu_upload"))
    return -1;
  if (!OFTCU_CHECK (cudaMemcpyAsync (dst, src, bytes, cudaMemcpyHostToDevice, g_stream)) ||
      !OFTCU_CHECK (cudaStreamSynchronize (g_stream)))
    return -1;
  return 0;
}

extern "C" int
oftcu_download (void *dst, const void *src, size_t bytes)
{
  if (!bytes)
    return 0;
  if (refuse_in_capture ("oftcu_download"))
    return -1;
  if (!OFTCU_CHECK (cudaMemcpyAsync (dst, src, bytes, cudaMemcpyDeviceToHost, g_stream)) ||
      !OFTCU_CHECK (cudaStreamSynchronize (g_stream)))
    return -1;
  return 0;
}

extern "C" void
oftcu_memset0 (void *p, size_t bytes)
{
  if (bytes)
    OFTCU_CHECK (cudaMemsetAsync (p, 0, bytes, g_stream));
}

extern "C" void
oftcu_copy (void *dst, const void *src, size_t bytes)
{
  if (bytes && dst != src)
    OFTCU_CHECK (cudaMemcpyAsync (dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream));
}

template <typename D, typename S>
__global__ void
convert_kernel (D *dst, const S *src, int64_t n)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
    dst[i] = oftcu_to<D> (oftcu_f (src[i]));
}

extern "C" void
oftcu_convert (void *dst, OftCuDtype dd, const void *src, OftCuDtype sd, int64_t n)
{
  if (n <= 0)
    return;
  if (dd == sd)
    {
      oftcu_copy (dst, src, (size_t) n * oftcu_dtype_size (dd));
      return;
    }
  if (dd == OFTCU_BF16 && sd == OFTCU_F32)
    convert_kernel<<<oftcu_grid (n, 256), 256, 0, g_stream>>> ((__nv_bfloat16 *) dst, (const float *) src, n);
  else if (dd == OFTCU_F32 && sd == OFTCU_BF16)
    convert_kernel<<<oftcu_grid (n, 256), 256, 0, g_stream>>> ((float *) dst, (const __nv_bfloat16 *) src, n);
  else
    oftcu_set_error ("oftcu_convert: unknown dtypes %d → %d", (int) sd, (int) dd);
  OFTCU_CHECK_LAUNCH ("oftcu_convert");
}

/* ---- CUDA graphs ----
 * Thread-local capture mode: only calls from this thread that would break the capture fail; cuBLAS is
 * capturable since it has a workspace of its own (cublasSetWorkspace), so it never allocates inside. */
struct OftCuGraph {
  cudaGraphExec_t exec;
};

extern "C" OftCuGraph *
oftcu_graph_capture (void (*body) (void *data), void *data)
{
  if (g_device < 0)
    {
      oftcu_set_error ("oftcu_graph_capture: oftcu_init has not succeeded");
      return NULL;
    }
  if (!OFTCU_CHECK (cudaStreamBeginCapture (g_stream, cudaStreamCaptureModeThreadLocal)))
    return NULL;
  g_capturing = true;
  body (data);
  g_capturing = false;
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture (g_stream, &graph);
  if (e != cudaSuccess || !graph)
    {
      cudaGetLastError ();  /* capture errors are not sticky; clear them so later launches check clean */
      oftcu_set_error ("CUDA graph capture failed: %s (%s)", cudaGetErrorName (e), cudaGetErrorString (e));
      if (graph)
        cudaGraphDestroy (graph);
      return NULL;
    }
  if (oftcu_error ())
    {
      cudaGraphDestroy (graph);
      return NULL;
    }
  cudaGraphExec_t exec;
  e = cudaGraphInstantiate (&exec, graph, 0);
  cudaGraphDestroy (graph);
  if (!OFTCU_CHECK (e))
    return NULL;
  OftCuGraph *g = new OftCuGraph;
  g->exec = exec;
  return g;
}

extern "C" int
oftcu_graph_launch (OftCuGraph *g)
{
  if (!g)
    {
      oftcu_set_error ("oftcu_graph_launch: no graph");
      return -1;
    }
  return OFTCU_CHECK (cudaGraphLaunch (g->exec, g_stream)) ? 0 : -1;
}

extern "C" void
oftcu_graph_destroy (OftCuGraph *g)
{
  if (!g)
    return;
  /* replays still queued finish first: the stream is drained before the executable goes */
  cudaStreamSynchronize (g_stream);
  cudaGraphExecDestroy (g->exec);
  delete g;
}

/* ---- profiling: event pairs on the stream, read back at the report ---- */
static bool g_prof;
static std::vector<cudaEvent_t> g_prof_events;   /* created on demand, reused after each report */
static std::vector<const char *> g_prof_labels;  /* one per begin */
static size_t g_prof_used;                       /* events recorded since the last report */

static cudaEvent_t
prof_event (void)
{
  if (g_prof_used == g_prof_events.size ())
    {
      cudaEvent_t e;
      if (!OFTCU_CHECK (cudaEventCreate (&e)))
        return NULL;
      g_prof_events.push_back (e);
    }
  return g_prof_events[g_prof_used++];
}

extern "C" void
oftcu_prof_enable (bool on)
{
  g_prof = on;
}

extern "C" void
oftcu_prof_begin (const char *label)
{
  if (!g_prof || g_capturing || g_device < 0 || g_prof_used % 2)
    return;
  cudaEvent_t e = prof_event ();
  if (!e)
    return;
  g_prof_labels.push_back (label);
  OFTCU_CHECK (cudaEventRecord (e, g_stream));
}

extern "C" void
oftcu_prof_end (void)
{
  if (!g_prof || g_capturing || g_device < 0 || g_prof_used % 2 == 0)
    return;
  cudaEvent_t e = prof_event ();
  if (e)
    OFTCU_CHECK (cudaEventRecord (e, g_stream));
  else
    g_prof_used--;  /* drop the unmatched begin */
}

extern "C" int
oftcu_prof_report (char *buf, size_t len)
{
  if (len)
    buf[0] = 0;
  if (g_device < 0 || !OFTCU_CHECK (cudaStreamSynchronize (g_stream)))
    return -1;
  std::map<std::string, std::pair<double, int>> sum;
  double total = 0;
  for (size_t i = 0; i + 1 < g_prof_used; i += 2)
    {
      float ms = 0;
      if (!OFTCU_CHECK (cudaEventElapsedTime (&ms, g_prof_events[i], g_prof_events[i + 1])))
        break;
      auto &s = sum[g_prof_labels[i / 2]];
      s.first += ms;
      s.second++;
      total += ms;
    }
  g_prof_used = 0;
  g_prof_labels.clear ();
  std::vector<std::pair<std::string, std::pair<double, int>>> v (sum.begin (), sum.end ());
  std::sort (v.begin (), v.end (), [] (const auto &a, const auto &b) { return a.second.first > b.second.first; });
  size_t at = 0;
  for (auto &x : v)
    if (at < len)
      at += snprintf (buf + at, len - at, "%-16s %8.3f ms %5d calls\n", x.first.c_str (), x.second.first,
                      x.second.second);
  if (at < len)
    snprintf (buf + at, len - at, "%-16s %8.3f ms (kernels only; the rest of the wall time is gaps)\n", "total",
              total);
  return oftcu_error () ? -1 : 0;
}

/* ---- GEMM ----
 * Row-major C[M,N] = op(A)·op(B) is column-major Cᵀ[N,M] = op(B)ᵀ·op(A)ᵀ, and a row-major buffer read as
 * column-major is the transpose; so cuBLAS gets (B, A) swapped, m = N, n = M, and each operand transposed
 * exactly when the caller asked for it. */
extern "C" void
oftcu_gemm (OftCuDtype dt, bool ta, bool tb, int M, int N, int K, float alpha,
            const void *A, int lda, int64_t sA, const void *B, int ldb, int64_t sB,
            float beta, void *C, int ldc, int64_t sC, int batch)
{
  if (M <= 0 || N <= 0 || batch <= 0)
    return;
  if (K <= 0)
    {
      /* an empty sum: cuBLAS may reject k = 0; C = beta·C is all that is left */
      if (beta == 0.0f && ldc == N && (batch == 1 || sC == (int64_t) M * N))
        oftcu_memset0 (C, (size_t) M * N * batch * oftcu_dtype_size (dt));
      else if (beta != 1.0f)
        oftcu_set_error ("oftcu_gemm: K = 0 with beta = %g and strided C is not supported", beta);
      return;
    }
  cudaDataType_t type = dt == OFTCU_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  cublasComputeType_t compute = dt == OFTCU_F32 && g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  cublasOperation_t opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t s;
  if (batch == 1)
    s = cublasGemmEx (g_blas, opB, opA, N, M, K, &alpha, B, type, ldb, A, type, lda, &beta, C, type, ldc,
                      compute, CUBLAS_GEMM_DEFAULT);
  else
    s = cublasGemmStridedBatchedEx (g_blas, opB, opA, N, M, K, &alpha, B, type, ldb, sB, A, type, lda, sA,
                                    &beta, C, type, ldc, sC, batch, compute, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    oftcu_set_error ("oftcu_gemm (%s, ta=%d tb=%d, M=%d N=%d K=%d, lda=%d ldb=%d ldc=%d, batch=%d): %s (cuBLAS status %d)",
                     dt == OFTCU_BF16 ? "bf16" : "fp32", ta, tb, M, N, K, lda, ldb, ldc, batch,
                     cublasGetStatusString (s), (int) s);
}
