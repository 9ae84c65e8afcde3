/* Training kernels of the CUDA backend: the OFT block rotation of inputs and its backward, the COFT
 * projection, the exact Cayley transform and its backward, the MSE loss, the AdamW step and the sum of
 * squares for gradient clipping (references: oft_rotate_input_forward/backward, oft_rotation_* and
 * oft_coft_project in oft/adapters.h, oft_mse_* in oft/nn.h, oft_adamw_step in oft/train.h).
 * Deterministic: every sum runs in a fixed order. */
#include "cuda-bwd-common.cuh"
#include <math.h>

/* ------------------------------------------------------------------------------------------------ */
/* block rotation: per block k a small GEMM over column slices, C_k (+)= op(A_k)·op(B_k), with mixed */
/* storage types (activations dt, R and dR fp32). R = I + (small rotation) must stay fp32 all the way: */
/* rounding it to bf16 or TF32 (2⁻⁹, 2⁻¹¹) would wipe out the adapter's effect near identity, so these */
/* are own fp32 SIMT kernels rather than cuBLAS calls.                                               */
/*                                                                                                   */
/* A(m, kk) = TA ? A[kk·lda + m] : A[m·lda + kk];  B(kk, n) = TB ? B[n·ldb + kk] : B[kk·ldb + n];       */
/* batch z offsets A, B, C by sA, sB, sC elements. Tile BM×BN, 256 threads as 16×16, micro-tile rows  */
/* ty + 16i, columns tx + 16j; K in steps of 16 through shared memory stored k-major.                */

#define RG_BK 16

template <typename TA, typename TB, typename TC, bool TRA, bool TRB, int BM, int BN>
__global__ void __launch_bounds__ (256)
k_block_gemm (TC *C, int ldc, int64_t sC, const TA *A, int lda, int64_t sA, const TB *B, int ldb, int64_t sB,
              int M, int N, int K, bool accumulate)
{
  __shared__ float As[RG_BK][BM + 1], Bs[RG_BK][BN + 1];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  A += blockIdx.z * sA;
  B += blockIdx.z * sB;
  C += blockIdx.z * sC;
  float acc[BM / 16][BN / 16];
#pragma unroll
  for (int i = 0; i < BM / 16; i++)
#pragma unroll
    for (int j = 0; j < BN / 16; j++)
      acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += RG_BK)
    {
      /* loads: the index that is contiguous in memory varies fastest across threads */
      for (int e = tid; e < RG_BK * BM; e += 256)
        {
          int kk, m;
          if (TRA) { m = e % BM; kk = e / BM; }
          else     { kk = e % RG_BK; m = e / RG_BK; }
          const int gm = m0 + m, gk = k0 + kk;
          float x = 0.0f;
          if (gm < M && gk < K)
            x = oftcu_f (TRA ? A[(int64_t) gk * lda + gm] : A[(int64_t) gm * lda + gk]);
          As[kk][m] = x;
        }
      for (int e = tid; e < RG_BK * BN; e += 256)
        {
          int kk, n;
          if (TRB) { kk = e % RG_BK; n = e / RG_BK; }
          else     { n = e % BN; kk = e / BN; }
          const int gn = n0 + n, gk = k0 + kk;
          float x = 0.0f;
          if (gn < N && gk < K)
            x = oftcu_f (TRB ? B[(int64_t) gn * ldb + gk] : B[(int64_t) gk * ldb + gn]);
          Bs[kk][n] = x;
        }
      __syncthreads ();
#pragma unroll
      for (int kk = 0; kk < RG_BK; kk++)
        {
          float av[BM / 16], bv[BN / 16];
#pragma unroll
          for (int i = 0; i < BM / 16; i++)
            av[i] = As[kk][ty + 16 * i];
#pragma unroll
          for (int j = 0; j < BN / 16; j++)
            bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < BM / 16; i++)
#pragma unroll
            for (int j = 0; j < BN / 16; j++)
              acc[i][j] += av[i] * bv[j];
        }
      __syncthreads ();
    }
#pragma unroll
  for (int i = 0; i < BM / 16; i++)
    {
      const int gm = m0 + ty + 16 * i;
      if (gm >= M)
        continue;
#pragma unroll
      for (int j = 0; j < BN / 16; j++)
        {
          const int gn = n0 + tx + 16 * j;
          if (gn >= N)
            continue;
          const int64_t o = (int64_t) gm * ldc + gn;
          C[o] = oftcu_to<TC> (accumulate ? oftcu_f (C[o]) + acc[i][j] : acc[i][j]);
        }
    }
}

template <typename TA, typename TB, typename TC, bool TRA, bool TRB>
static void
block_gemm (TC *C, int ldc, int64_t sC, const TA *A, int lda, int64_t sA, const TB *B, int ldb, int64_t sB,
            int M, int N, int K, int batch, bool accumulate)
{
  /* 32-wide tiles for the block-sized dimensions (b = 32 is the usual block size) */
  const bool nm = M <= 32, nn = N <= 32;
  dim3 block (256);
#define RG_LAUNCH(BM, BN)                                                                          \
  do {                                                                                             \
    dim3 grid ((N + (BN) - 1) / (BN), (M + (BM) - 1) / (BM), batch);                               \
    k_block_gemm<TA, TB, TC, TRA, TRB, BM, BN><<<grid, block, 0, oftcu_stream ()>>> (                 \
        C, ldc, sC, A, lda, sA, B, ldb, sB, M, N, K, accumulate);                                  \
  } while (0)
  if (nm && nn)
    RG_LAUNCH (32, 32);
  else if (nm)
    RG_LAUNCH (32, 64);
  else if (nn)
    RG_LAUNCH (64, 32);
  else
    RG_LAUNCH (64, 64);
#undef RG_LAUNCH
  OFTCU_CHECK_LAUNCH ("block rotation");
}

/* dR_k[b, b] += inp_kᵀ·dout_k, a sum over all N rows into a small tile: a plain tiled GEMM would run one
 * block per tile through all rows. Here the rows are split over SPLIT groups of 256 threads (group s takes
 * the 16-row steps s, s + SPLIT, ...), each with its own shared tiles, and the groups' partial tiles are
 * added in group order at the end (deterministic). BT·SPLIT = 128 keeps the shared memory under 48 KiB. */
template <typename T, int BT, int SPLIT>
__global__ void __launch_bounds__ (256 * SPLIT)
k_block_dR (float *dR, const T *inp, const T *dout, int N, int d, int b)
{
  constexpr int TILES = SPLIT * 2 * RG_BK * (BT + 1), RED = SPLIT * BT * (BT + 1);
  __shared__ float sm[TILES > RED ? TILES : RED];
  const int tid = threadIdx.x, grp = tid >> 8, tg = tid & 255, tx = tg & 15, ty = tg >> 4;
  float *As = sm + grp * 2 * RG_BK * (BT + 1), *Bs = As + RG_BK * (BT + 1);   /* [RG_BK][BT + 1] each */
  const int i0 = blockIdx.y * BT, j0 = blockIdx.x * BT, k = blockIdx.z;
  const T *A = inp + (int64_t) k * b, *Bm = dout + (int64_t) k * b;
  float acc[BT / 16][BT / 16];
#pragma unroll
  for (int i = 0; i < BT / 16; i++)
#pragma unroll
    for (int j = 0; j < BT / 16; j++)
      acc[i][j] = 0.0f;

  const int steps = (N + RG_BK - 1) / RG_BK, rounds = (steps + SPLIT - 1) / SPLIT;
  for (int it = 0; it < rounds; it++)
    {
      const int n0 = (it * SPLIT + grp) * RG_BK;   /* past N in the last round: zeros */
      for (int e = tg; e < RG_BK * BT; e += 256)
        {
          const int c = e % BT, kk = e / BT, n = n0 + kk;
          As[kk * (BT + 1) + c] = n < N && i0 + c < b ? oftcu_f (A[(int64_t) n * d + i0 + c]) : 0.0f;
          Bs[kk * (BT + 1) + c] = n < N && j0 + c < b ? oftcu_f (Bm[(int64_t) n * d + j0 + c]) : 0.0f;
        }
      __syncthreads ();
#pragma unroll
      for (int kk = 0; kk < RG_BK; kk++)
        {
          float av[BT / 16], bv[BT / 16];
#pragma unroll
          for (int i = 0; i < BT / 16; i++)
            av[i] = As[kk * (BT + 1) + ty + 16 * i];
#pragma unroll
          for (int j = 0; j < BT / 16; j++)
            bv[j] = Bs[kk * (BT + 1) + tx + 16 * j];
#pragma unroll
          for (int i = 0; i < BT / 16; i++)
#pragma unroll
            for (int j = 0; j < BT / 16; j++)
              acc[i][j] += av[i] * bv[j];
        }
      __syncthreads ();
    }
  /* the tiles' memory now holds the groups' partial results [SPLIT][BT][BT + 1] */
#pragma unroll
  for (int i = 0; i < BT / 16; i++)
#pragma unroll
    for (int j = 0; j < BT / 16; j++)
      sm[(grp * BT + ty + 16 * i) * (BT + 1) + tx + 16 * j] = acc[i][j];
  __syncthreads ();
  for (int e = tid; e < BT * BT; e += 256 * SPLIT)
    {
      const int r = e / BT, c = e % BT;
      if (i0 + r >= b || j0 + c >= b)
        continue;
      float sum = 0.0f;
      for (int g = 0; g < SPLIT; g++)
        sum += sm[(g * BT + r) * (BT + 1) + c];
      dR[(int64_t) k * b * b + (int64_t) (i0 + r) * b + j0 + c] += sum;
    }
}

static bool
rotate_args_ok (int64_t N, int nb, int b)
{
  if (N <= 0 || nb <= 0 || b <= 0)
    return false;
  if (N > INT32_MAX || (int64_t) nb * b > INT32_MAX || nb > 65535)
    {
      oftcu_set_error ("block rotation: %lld rows of %d blocks of %d out of range", (long long) N, nb, b);
      return false;
    }
  return true;
}

/* out[N, nb·b]: out_k = inp_k · R_k, column slices k·b.. of the rows (leading dimension d = nb·b) */
extern "C" void
oftcu_block_rotate_forward (OftCuDtype dt, void *out, const void *inp, const float *R, int64_t N, int nb, int b)
{
  if (!rotate_args_ok (N, nb, b))
    return;
  const int d = nb * b;
  OFTCU_DISPATCH (dt, "block rotation", {
    block_gemm<T, float, T, false, false> ((T *) out, d, b, (const T *) inp, d, b, R, b, (int64_t) b * b, (int) N, b,
                                           b, nb, false);
  });
}

/* dinp_k += dout_k · R_kᵀ;  dR_k += inp_kᵀ · dout_k */
extern "C" void
oftcu_block_rotate_backward (OftCuDtype dt, void *dinp, float *dR, const void *dout, const void *inp,
                             const float *R, int64_t N, int nb, int b)
{
  if (!rotate_args_ok (N, nb, b))
    return;
  const int d = nb * b;
  if (dinp)
    OFTCU_DISPATCH (dt, "block rotation", {
      block_gemm<T, float, T, false, true> ((T *) dinp, d, b, (const T *) dout, d, b, R, b, (int64_t) b * b, (int) N,
                                            b, b, nb, true);
    });
  if (dR)
    {
      /* 16×16 output tiles for blocks up to 32: four blocks of threads per rotation block rather than one,
       * since an SD layer has only 10 to 40 rotation blocks (one per block left most of the GPU idle: 51 µs
       * a call, 6.5 ms of the SD1.5 training step) */
      if (b <= 32)
        OFTCU_DISPATCH (dt, "block rotation dR", {
          dim3 grid ((b + 15) / 16, (b + 15) / 16, nb);
          k_block_dR<T, 16, 4><<<grid, 1024, 0, oftcu_stream ()>>> (dR, (const T *) inp, (const T *) dout, (int) N,
                                                                    d, b);
        });
      else
        OFTCU_DISPATCH (dt, "block rotation dR", {
          dim3 grid ((b + 63) / 64, (b + 63) / 64, nb);
          k_block_dR<T, 64, 2><<<grid, 512, 0, oftcu_stream ()>>> (dR, (const T *) inp, (const T *) dout, (int) N,
                                                                   d, b);
        });
      OFTCU_CHECK_LAUNCH ("block rotation dR");
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* COFT: per row, scale onto the Frobenius ball of radius eps/√rows when ‖Q‖_F = √(2·Σv²) exceeds it;  */
/* double sums and factor as the CPU                                                                 */

__global__ void
k_coft_project (float *packed, int64_t rows, int64_t ne, double radius)
{
  __shared__ double sh[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    {
      float *v = packed + r * ne;
      double sq = 0.0;
      for (int64_t k = threadIdx.x; k < ne; k += blockDim.x)
        sq += (double) v[k] * (double) v[k];
      sq = oftcu_block_sum (sq, sh);
      const double norm = sqrt (2.0 * sq);
      if (norm > radius)
        {
          const double f = radius / norm;
          for (int64_t k = threadIdx.x; k < ne; k += blockDim.x)
            v[k] = (float) ((double) v[k] * f);
        }
    }
}

extern "C" void
oftcu_coft_project (float *packed, int64_t rows, int b, double eps)
{
  if (rows <= 0 || b < 2)
    return;
  const int64_t ne = (int64_t) b * (b - 1) / 2;
  const double radius = eps / sqrt ((double) rows);
  const unsigned grid = rows < 65535 ? (unsigned) rows : 65535u;
  k_coft_project<<<grid, 256, 0, oftcu_stream ()>>> (packed, rows, ne, radius);
  OFTCU_CHECK_LAUNCH ("coft projection");
}

/* ------------------------------------------------------------------------------------------------ */
/* Exact Cayley per row (oft_rotation_forward/backward): A = I + Q with Q = U − Uᵀ from the packed    */
/* strict upper triangle, Ainv = A⁻¹, R = (I − Q)·A⁻¹ = 2·Ainv − I. Gauss–Jordan on [A | I] in shared */
/* memory, one block per row, thread j owning column j of the 2b columns. No pivoting: A's symmetric  */
/* part is I, and so is every Schur complement's (Q skew), so each pivot is ≥ 1 and the elimination   */
/* is stable; the CPU's partial pivoting (in double) never swaps rows for the same reason.            */

__device__ __forceinline__ int64_t
cayley_packed_index (int i, int j, int b)   /* i < j: row-major strict upper triangle */
{
  return (int64_t) i * b - (int64_t) i * (i + 1) / 2 + (j - i - 1);
}

__global__ void
k_cayley_forward (float *R, float *Ainv, const float *packed, int reps, int b)
{
  OFTCU_DYNAMIC_SMEM (float, sm);
  const int w = 2 * b, j = threadIdx.x, r = blockIdx.x;
  const int64_t bb = (int64_t) b * b;
  float *M = sm, *f = sm + b * w;
  const float *u = packed + r * ((int64_t) b * (b - 1) / 2);
  for (int i = 0; i < b; i++)
    {
      float v;
      if (j < b)
        v = i < j ? u[cayley_packed_index (i, j, b)] : i > j ? -u[cayley_packed_index (j, i, b)] : 1.0f;
      else
        v = i == j - b ? 1.0f : 0.0f;
      M[i * w + j] = v;
    }
  for (int k = 0; k < b; k++)
    {
      __syncthreads ();   /* column k is complete, and nobody reads the last step's factors any more */
      if (j == k)
        for (int i = 0; i < b; i++)
          f[i] = M[i * w + k];
      __syncthreads ();
      const float mk = M[k * w + j] * __frcp_rn (f[k]);
      M[k * w + j] = mk;
      for (int i = 0; i < b; i++)
        if (i != k)
          M[i * w + j] = __fmaf_rn (-f[i], mk, M[i * w + j]);
    }
  if (j >= b)
    {
      const int c = j - b;
      for (int i = 0; i < b; i++)
        {
          const float a = M[i * w + j];
          Ainv[r * bb + i * b + c] = a;
          for (int q = 0; q < reps; q++)
            R[(r * (int64_t) reps + q) * bb + i * b + c] = 2.0f * a - (i == c ? 1.0f : 0.0f);
        }
    }
}

/* dQ = −2·Ainvᵀ·G·Ainvᵀ with G = Σ over the row's reps of dR; dpacked += dQ_ij − dQ_ji (i < j) */
__global__ void __launch_bounds__ (256)
k_cayley_backward (float *dpacked, const float *dR, const float *Ainv, int reps, int b)
{
  OFTCU_DYNAMIC_SMEM (float, sm);
  const int r = blockIdx.x, bb = b * b;
  float *A = sm, *G = sm + bb, *T = G + bb;
  for (int e = threadIdx.x; e < bb; e += blockDim.x)
    {
      A[e] = Ainv[(int64_t) r * bb + e];
      float g = 0.0f;
      for (int q = 0; q < reps; q++)
        g += dR[((int64_t) r * reps + q) * bb + e];
      G[e] = g;
    }
  __syncthreads ();
  for (int e = threadIdx.x; e < bb; e += blockDim.x)   /* T = Ainvᵀ·G */
    {
      const int i = e / b, j = e % b;
      float acc = 0.0f;
      for (int k = 0; k < b; k++)
        acc = __fmaf_rn (A[k * b + i], G[k * b + j], acc);
      T[e] = acc;
    }
  __syncthreads ();
  for (int e = threadIdx.x; e < bb; e += blockDim.x)   /* dQ = −2·T·Ainvᵀ, over G (read no more) */
    {
      const int i = e / b, j = e % b;
      float acc = 0.0f;
      for (int k = 0; k < b; k++)
        acc = __fmaf_rn (T[i * b + k], A[j * b + k], acc);
      G[e] = -2.0f * acc;
    }
  __syncthreads ();
  float *d = dpacked + (int64_t) r * b * (b - 1) / 2;
  for (int e = threadIdx.x; e < bb; e += blockDim.x)
    {
      const int i = e / b, j = e % b;
      if (i < j)
        d[cayley_packed_index (i, j, b)] += G[i * b + j] - G[j * b + i];
    }
}

static bool
cayley_check (int rows, int reps, int b, const char *what)
{
  if (b < 1 || b > OFTCU_CAYLEY_MAX_B || reps < 1 || rows < 0 || rows > 0x7fffffff / reps)
    {
      oftcu_set_error ("%s: block size %d, %d rows × %d (the kernel takes blocks of 1 to %d)", what, b, rows,
                       reps, OFTCU_CAYLEY_MAX_B);
      return false;
    }
  return rows > 0;
}

extern "C" void
oftcu_cayley_forward (float *R, float *Ainv, const float *packed, int rows, int reps, int b)
{
  if (!cayley_check (rows, reps, b, "cayley forward"))
    return;
  const size_t shared = ((size_t) 2 * b * b + b) * sizeof (float);
  k_cayley_forward<<<rows, 2 * b, shared, oftcu_stream ()>>> (R, Ainv, packed, reps, b);
  OFTCU_CHECK_LAUNCH ("cayley forward");
}

extern "C" void
oftcu_cayley_backward (float *dpacked, const float *dR, const float *Ainv, int rows, int reps, int b)
{
  if (!cayley_check (rows, reps, b, "cayley backward"))
    return;
  const size_t shared = (size_t) 3 * b * b * sizeof (float);
  k_cayley_backward<<<rows, 256, shared, oftcu_stream ()>>> (dpacked, dR, Ainv, reps, b);
  OFTCU_CHECK_LAUNCH ("cayley backward");
}

/* ------------------------------------------------------------------------------------------------ */
/* MSE and the sum of squares: one block, double accumulation (as the CPU), so the result is the same */
/* on every run                                                                                      */

template <typename T>
__global__ void __launch_bounds__ (1024)
k_mse_forward (float *loss, const T *pred, const T *target, int64_t n)
{
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    {
      const double d = (double) oftcu_f (pred[i]) - (double) oftcu_f (target[i]);
      s += d * d;
    }
  s = oftcu_block_sum (s, sh);
  if (threadIdx.x == 0)
    loss[0] = (float) (s / (double) n);
}

extern "C" void
oftcu_mse_forward (OftCuDtype dt, float *loss, const void *pred, const void *target, int64_t n)
{
  if (n <= 0)
    {
      oftcu_set_error ("mse forward: %lld elements", (long long) n);
      return;
    }
  OFTCU_DISPATCH (dt, "mse forward", {
    k_mse_forward<T><<<1, 1024, 0, oftcu_stream ()>>> (loss, (const T *) pred, (const T *) target, n);
  });
  OFTCU_CHECK_LAUNCH ("mse forward");
}

/* dpred += k·(pred − target), k = 2·dloss/n formed in double as the CPU; _rn operations so that nothing
 * is fused into an FMA and fp32 results equal the CPU's bit for bit */
template <typename T>
__global__ void
k_mse_backward (T *dpred, const T *pred, const T *target, int64_t n, float k)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
    {
      const float g = __fmul_rn (k, __fsub_rn (oftcu_f (pred[i]), oftcu_f (target[i])));
      dpred[i] = oftcu_to<T> (__fadd_rn (oftcu_f (dpred[i]), g));
    }
}

extern "C" void
oftcu_mse_backward (OftCuDtype dt, void *dpred, const void *pred, const void *target, int64_t n, float dloss)
{
  if (n <= 0 || !dpred)
    return;
  const float k = (float) (2.0 * (double) dloss / (double) n);
  OFTCU_DISPATCH (dt, "mse backward", {
    k_mse_backward<T><<<oftcu_grid256 (n), 256, 0, oftcu_stream ()>>> ((T *) dpred, (const T *) pred,
                                                                       (const T *) target, n, k);
  });
  OFTCU_CHECK_LAUNCH ("mse backward");
}

__global__ void __launch_bounds__ (1024)
k_sumsq (float *acc, const float *x, int64_t n)
{
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += (double) x[i] * (double) x[i];
  s = oftcu_block_sum (s, sh);
  if (threadIdx.x == 0)
    acc[0] = (float) ((double) acc[0] + s);
}

extern "C" void
oftcu_sumsq (float *acc, const float *x, int64_t n)
{
  if (n <= 0)
    return;
  k_sumsq<<<1, 1024, 0, oftcu_stream ()>>> (acc, x, n);
  OFTCU_CHECK_LAUNCH ("sum of squares");
}

/* ------------------------------------------------------------------------------------------------ */
/* AdamW: the operations of oft_adamw_step in the same order, each rounded once (_rn: no FMA fusion, */
/* IEEE division and square root whatever the fast-math flags), with the scalars formed on the host   */
/* in double exactly as the CPU forms them. fp32 results equal the CPU's bit for bit.                */

__global__ void
k_adamw (float *p, float *m, float *v, const float *g, int64_t n, float decay, float b1, float a1, float b2,
         float a2, float step_size, float bc2_sqrt, float eps)
{
  for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x)
    {
      const float gi = g[i];
      const float pi = __fmul_rn (p[i], decay);
      const float mi = __fadd_rn (__fmul_rn (m[i], b1), __fmul_rn (a1, gi));
      const float vi = __fadd_rn (__fmul_rn (v[i], b2), __fmul_rn (__fmul_rn (a2, gi), gi));
      const float denom = __fadd_rn (__fdiv_rn (__fsqrt_rn (vi), bc2_sqrt), eps);
      p[i] = __fsub_rn (pi, __fmul_rn (step_size, __fdiv_rn (mi, denom)));
      m[i] = mi;
      v[i] = vi;
    }
}

extern "C" void
oftcu_adamw_step (float *param, float *m, float *v, const float *grad, int64_t n, int64_t k, double lr,
                  double beta1, double beta2, double eps, double weight_decay)
{
  if (n <= 0)
    return;
  if (k < 1)
    {
      oftcu_set_error ("adamw: step %lld (steps count from 1)", (long long) k);
      return;
    }
  /* the scalars torch forms in double before each tensor op (as oft_adamw_step) */
  const float decay = (float) (1.0 - lr * weight_decay);
  const float b1 = (float) beta1, a1 = (float) (1.0 - beta1);
  const float b2 = (float) beta2, a2 = (float) (1.0 - beta2);
  const double bc1 = 1.0 - pow (beta1, (double) k), bc2 = 1.0 - pow (beta2, (double) k);
  const float step_size = (float) (lr / bc1), bc2_sqrt = (float) sqrt (bc2), feps = (float) eps;
  k_adamw<<<oftcu_grid256 (n), 256, 0, oftcu_stream ()>>> (param, m, v, grad, n, decay, b1, a1, b2, a2, step_size,
                                                         bc2_sqrt, feps);
  OFTCU_CHECK_LAUNCH ("adamw step");
}
