/* Fused attention forward, softmax(q·kᵀ/√D)·v per (batch, head), never materialising the score matrix:
 * keys are visited in tiles with an online softmax (running max m and sum l per query; earlier partial
 * sums are rescaled by exp(m_old − m_new) when the max grows), as in FlashAttention.
 *
 * Two kernels:
 *  - attn_simt: fp32 CUDA cores for every dtype and head dim D ≤ 512 (the fp32 path, the VAE's single
 *    512-wide head, and whatever the tensor-core kernel does not take). One warp per query: lanes split the
 *    keys of a tile for the scores and the head dims for the output accumulator.
 *  - attn_mma (cuda-attention-mma.cuh): bf16 tensor cores (mma.sync m16n8k16, fp32 accumulation) for
 *    bf16 and D a multiple of 8 up to 160, the SD shapes.
 * Both write lse = m + ln(l), the log-sum-exp of the scaled scores of each [B, H, Tq] row, which the backward
 * uses to recompute the probabilities p = exp(s − lse). */
#include "cuda-common.cuh"
#include "cuda-attention-mma.cuh"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SIMT_WARPS 8       /* warps per block */
#define SIMT_QPW   2       /* queries per warp, sharing each K/V tile load */
#define SIMT_BK    32      /* keys per tile: one per lane */

/* Shared memory: q [NQ][D] (pre-scaled), K tile [BK][KS] with KS odd (lanes read different rows of one column:
 * an odd stride puts them in distinct banks), V tile [BK][D] (lanes read consecutive columns of one row). */
__host__ __device__ static inline int
simt_kstride (int D)
{
  return D % 2 ? D : D + 1;
}

static inline size_t
simt_smem_bytes (int D)
{
  const int NQ = SIMT_WARPS * SIMT_QPW;
  return sizeof (float) * ((size_t) NQ * D + (size_t) SIMT_BK * simt_kstride (D) + (size_t) SIMT_BK * D);
}

/* DC = ceil(D / 32): output columns per lane (d = lane + 32·r). */
template <typename T, int DC>
__global__ void __launch_bounds__ (SIMT_WARPS * 32)
attn_simt (T *out, float *lse, const T *q, const T *k, const T *v, int H, int Tq, int Tk, int D, bool causal,
           float scale)
{
  extern __shared__ float smem[];
  const int NQ = SIMT_WARPS * SIMT_QPW, KS = simt_kstride (D);
  float *qs = smem, *ks = qs + NQ * D, *vs = ks + SIMT_BK * KS;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const int64_t HD = (int64_t) H * D;
  const int q0 = blockIdx.x * NQ;
  const T *qb = q + (int64_t) b * Tq * HD + (int64_t) h * D;
  const T *kb = k + (int64_t) b * Tk * HD + (int64_t) h * D;
  const T *vb = v + (int64_t) b * Tk * HD + (int64_t) h * D;

  /* the block's queries, scaled (rows past Tq are zero and never written back) */
  for (int i = threadIdx.x; i < NQ * D; i += blockDim.x)
    {
      const int r = i / D, d = i % D;
      qs[i] = q0 + r < Tq ? oftcu_f (qb[(int64_t) (q0 + r) * HD + d]) * scale : 0.0f;
    }

  float m[SIMT_QPW], l[SIMT_QPW], acc[SIMT_QPW][DC];
#pragma unroll
  for (int j = 0; j < SIMT_QPW; j++)
    {
      m[j] = -INFINITY;
      l[j] = 0.0f;
#pragma unroll
      for (int r = 0; r < DC; r++)
        acc[j][r] = 0.0f;
    }

  /* causal: no key after the block's last query matters */
  const int q_last = min (q0 + NQ, Tq) - 1;
  const int k_end = causal ? min (Tk, q_last + 1) : Tk;
  for (int k0 = 0; k0 < k_end; k0 += SIMT_BK)
    {
      __syncthreads ();   /* the previous tile is consumed (and, the first time, qs is written) */
      for (int i = threadIdx.x; i < SIMT_BK * D; i += blockDim.x)
        {
          const int r = i / D, d = i % D;
          const bool in = k0 + r < Tk;
          ks[r * KS + d] = in ? oftcu_f (kb[(int64_t) (k0 + r) * HD + d]) : 0.0f;
          vs[r * D + d] = in ? oftcu_f (vb[(int64_t) (k0 + r) * HD + d]) : 0.0f;
        }
      __syncthreads ();
#pragma unroll
      for (int j = 0; j < SIMT_QPW; j++)
        {
          const int qi = warp * SIMT_QPW + j, qpos = q0 + qi;
          if (qpos >= Tq)   /* uniform over the warp */
            continue;
          const int key = k0 + lane;
          float s = -INFINITY;
          if (key < Tk && !(causal && key > qpos))
            {
              const float *qr = qs + qi * D, *kr = ks + lane * KS;
              float dot = 0.0f;
              for (int d = 0; d < D; d++)
                dot = fmaf (qr[d], kr[d], dot);
              s = dot;
            }
          float tmax = s;
          for (int o = 16; o > 0; o >>= 1)
            tmax = fmaxf (tmax, __shfl_xor_sync (0xffffffffu, tmax, o));
          if (tmax == -INFINITY)   /* every key of this tile masked for this query */
            continue;
          const float mnew = fmaxf (m[j], tmax);
          const float corr = expf (m[j] - mnew);   /* 0 the first time (m = −inf) */
          const float p = s == -INFINITY ? 0.0f : expf (s - mnew);
          float psum = p;
          for (int o = 16; o > 0; o >>= 1)
            psum += __shfl_xor_sync (0xffffffffu, psum, o);
          l[j] = l[j] * corr + psum;
          m[j] = mnew;
#pragma unroll
          for (int r = 0; r < DC; r++)
            acc[j][r] *= corr;
          const int nk = min (SIMT_BK, Tk - k0);
          for (int t = 0; t < nk; t++)
            {
              const float pt = __shfl_sync (0xffffffffu, p, t);
              const float *vr = vs + t * D;
#pragma unroll
              for (int r = 0; r < DC; r++)
                {
                  const int d = lane + 32 * r;
                  if (d < D)
                    acc[j][r] = fmaf (pt, vr[d], acc[j][r]);
                }
            }
        }
    }

#pragma unroll
  for (int j = 0; j < SIMT_QPW; j++)
    {
      const int qpos = q0 + warp * SIMT_QPW + j;
      if (qpos >= Tq)
        continue;
      /* l = 0 only without keys (Tk = 0): a zero output and lse = −inf */
      const float inv = l[j] > 0.0f ? 1.0f / l[j] : 0.0f;
      T *orow = out + (int64_t) b * Tq * HD + (int64_t) qpos * HD + (int64_t) h * D;
#pragma unroll
      for (int r = 0; r < DC; r++)
        {
          const int d = lane + 32 * r;
          if (d < D)
            orow[d] = oftcu_to<T> (acc[j][r] * inv);
        }
      if (lse && lane == 0)
        lse[(int64_t) bh * Tq + qpos] = l[j] > 0.0f ? m[j] + logf (l[j]) : -INFINITY;
    }
}

template <typename T, int DC>
static void
launch_simt (T *out, float *lse, const T *q, const T *k, const T *v, int B, int Tq, int Tk, int H, int D,
             bool causal, float scale)
{
  const size_t smem = simt_smem_bytes (D);
  /* over 48 KiB of dynamic shared memory needs an opt-in per kernel (D > ~150 here) */
  if (smem > 48 * 1024)
    OFTCU_CHECK (cudaFuncSetAttribute (attn_simt<T, DC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem));
  const int NQ = SIMT_WARPS * SIMT_QPW;
  dim3 grid ((unsigned) ((Tq + NQ - 1) / NQ), (unsigned) (B * H));
  attn_simt<T, DC><<<grid, SIMT_WARPS * 32, smem, oftcu_stream ()>>> (out, lse, q, k, v, H, Tq, Tk, D, causal, scale);
}

template <typename T>
static void
attention_simt (T *out, float *lse, const T *q, const T *k, const T *v, int B, int Tq, int Tk, int H, int D,
                bool causal, float scale)
{
  switch ((D + 31) / 32)
    {
    case 1: launch_simt<T, 1> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 2: launch_simt<T, 2> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 3: launch_simt<T, 3> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 4: launch_simt<T, 4> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 5: launch_simt<T, 5> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 6: case 7: case 8:
      launch_simt<T, 8> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    default:
      launch_simt<T, 16> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    }
}

/* Which kernel runs: the tensor-core one for bf16 when it takes the head dim, unless OFTCU_ATTENTION=simt
 * (read once; for debugging and for comparing the two on one GPU). */
static bool
mma_allowed (void)
{
  static int allowed = -1;
  if (allowed < 0)
    {
      const char *e = getenv ("OFTCU_ATTENTION");
      allowed = !(e && !strcmp (e, "simt"));
    }
  return allowed;
}

extern "C" void
oftcu_attention_forward (OftCuDtype dt, void *out, float *lse, const void *q, const void *k, const void *v,
                         int B, int Tq, int Tk, int H, int D, bool causal)
{
  if (B <= 0 || H <= 0 || Tq <= 0)
    return;
  if (D < 1 || D > 512)
    {
      oftcu_set_error ("oftcu_attention_forward: head dim %d is outside 1..512", D);
      return;
    }
  if (causal && Tq != Tk)
    {
      oftcu_set_error ("oftcu_attention_forward: causal attention needs Tq == Tk (got %d, %d)", Tq, Tk);
      return;
    }
  if ((int64_t) B * H > 65535)
    {
      oftcu_set_error ("oftcu_attention_forward: B·H = %lld is over the grid limit 65535", (long long) B * H);
      return;
    }
  const float scale = 1.0f / sqrtf ((float) D);
  /* the tensor-core kernel copies 16-byte pieces of rows (cp.async): all four tensors 16-byte aligned */
  const bool aligned = !(((uintptr_t) out | (uintptr_t) q | (uintptr_t) k | (uintptr_t) v) & 15);
  if (dt == OFTCU_BF16 && Tk > 0 && aligned && oftcu_attn_mma_supports (D) && mma_allowed ())
    oftcu_attn_mma ((__nv_bfloat16 *) out, lse, (const __nv_bfloat16 *) q, (const __nv_bfloat16 *) k,
                    (const __nv_bfloat16 *) v, B, Tq, Tk, H, D, causal, scale);
  else
    OFTCU_DISPATCH (dt, "oftcu_attention_forward", {
      attention_simt<T> ((T *) out, lse, (const T *) q, (const T *) k, (const T *) v, B, Tq, Tk, H, D, causal,
                         scale);
    });
  OFTCU_CHECK_LAUNCH ("oftcu_attention_forward");
}
