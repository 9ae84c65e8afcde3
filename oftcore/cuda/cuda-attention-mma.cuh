/* bf16 tensor-core flash attention forward (FlashAttention-2's scheme), included by cuda-attention.cu only.
 *
 * A block of 4 warps takes 64 queries of one (batch, head); each warp owns 16 query rows. Keys and values
 * stream through shared memory in tiles of 64, double-buffered with cp.async. Per tile a warp computes its
 * 16×64 scores S = Q·Kᵀ with mma.sync m16n8k16 (bf16 in, fp32 accumulate), applies the masks and the online
 * softmax in registers (base 2: scores are pre-multiplied by log2(e)/√D), and accumulates O += P·V with P
 * rounded to bf16 straight from the S accumulators (an m16n8 accumulator pair is an m16k16 A fragment).
 *
 * Head dims: D a multiple of 8 (16-byte rows for cp.async), padded to DP, a multiple of 16, with zeros
 * (zero columns add nothing to q·k, and the padded output columns are not written); DP ≤ 160.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): A (16×16, row) a0a1: (g, 2t..2t+1), a2a3: (g+8, ·),
 * a4a5: (g, 2t+8..), a6a7: (g+8, 2t+8..); B (16×8, col) b0b1: (k 2t..2t+1, n g), b2b3: (k+8, n g);
 * C (16×8) c0c1: (g, 2t..2t+1), c2c3: (g+8, ·); with g = lane/4, t = lane%4. ldmatrix (no .trans) gives
 * thread T row T/4, columns 2(T%4)..+1 of each 8×8 matrix; .trans gives the transpose. So Q and K (rows =
 * query / key, columns = head dim) load without .trans, V (rows = key = the k of P·V) with .trans. */
#pragma once
#include "cuda-common.cuh"

#define MMA_BQ 64
#define MMA_BK 64
#define MMA_WARPS 4

static inline bool
oftcu_attn_mma_supports (int D)
{
  return D % 8 == 0 && D >= 8 && D <= 160;
}

__device__ __forceinline__ void
mma_cp_async16 (void *smem, const void *gmem, bool valid)
{
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  const int n = valid ? 16 : 0;   /* 0 source bytes: the 16 bytes are zero-filled */
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

__device__ __forceinline__ void
mma_cp_async_commit (void)
{
  asm volatile ("cp.async.commit_group;\n" ::);
}

__device__ __forceinline__ void
mma_cp_async_wait_all (void)
{
  asm volatile ("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ void
mma_ldmatrix_x4 (unsigned r[4], const void *smem)
{
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ void
mma_ldmatrix_x4_trans (unsigned r[4], const void *smem)
{
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

/* c += a·b, m16n8k16, bf16 inputs, fp32 accumulators */
__device__ __forceinline__ void
mma_bf16_16816 (float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned
mma_pack_bf16 (float lo, float hi)
{
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);   /* .x (lower 16 bits) = lo */
  return *(unsigned *) &v;
}

/* rows × DP tile of a [T, H·D] head slice into shared memory (row stride LDS), zero outside T rows / D columns */
template <int DP>
__device__ __forceinline__ void
mma_load_tile (__nv_bfloat16 *tile, const __nv_bfloat16 *base, int row0, int T, int D, int64_t HD)
{
  constexpr int LDS = DP + 8, CHUNKS = DP / 8;
  for (int i = threadIdx.x; i < MMA_BK * CHUNKS; i += MMA_WARPS * 32)
    {
      const int r = i / CHUNKS, c = i % CHUNKS;
      const bool valid = row0 + r < T && c * 8 < D;
      const __nv_bfloat16 *src = valid ? base + (int64_t) (row0 + r) * HD + c * 8 : base;
      mma_cp_async16 (tile + r * LDS + c * 8, src, valid);
    }
}

template <int DP>
__global__ void __launch_bounds__ (MMA_WARPS * 32)
attn_mma_kernel (__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                 const __nv_bfloat16 *v, int H, int Tq, int Tk, int D, bool causal, float scale_log2)
{
  static_assert (DP % 16 == 0 && DP <= 160, "DP: a multiple of 16 up to 160");
  static_assert (MMA_BQ == MMA_BK, "mma_load_tile loads MMA_BK rows, also for the Q tile");
  constexpr int LDS = DP + 8;          /* row stride in elements: 16-byte rows in distinct banks for ldmatrix */
  constexpr int KSTEPS = DP / 16;      /* k steps of Q·Kᵀ */
  constexpr int NT_S = MMA_BK / 8;     /* n tiles of S (keys) */
  constexpr int NT_O = DP / 8;         /* n tiles of O (head dims) */
  extern __shared__ __align__ (16) unsigned char mma_smem[];
  __nv_bfloat16 *qs = (__nv_bfloat16 *) mma_smem;
  /* K tiles of buffers 0 and 1, then V tiles of buffers 0 and 1 (computed, not indexed arrays: those would
   * live in local memory) */
  __nv_bfloat16 *const ks0 = qs + MMA_BQ * LDS, *const vs0 = ks0 + 2 * MMA_BK * LDS;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.y, b = bh / H, h = bh % H;
  const int64_t HD = (int64_t) H * D;
  const int q0 = blockIdx.x * MMA_BQ;
  const __nv_bfloat16 *qb = q + (int64_t) b * Tq * HD + (int64_t) h * D;
  const __nv_bfloat16 *kb = k + (int64_t) b * Tk * HD + (int64_t) h * D;
  const __nv_bfloat16 *vb = v + (int64_t) b * Tk * HD + (int64_t) h * D;

  const int k_end = causal ? min (Tk, q0 + MMA_BQ) : Tk;   /* keys past the block's last query are masked */
  const int ntiles = (k_end + MMA_BK - 1) / MMA_BK;

  /* Q and the first K/V tile in one group */
  mma_load_tile<DP> (qs, qb, q0, Tq, D, HD);
  mma_load_tile<DP> (ks0, kb, 0, Tk, D, HD);
  mma_load_tile<DP> (vs0, vb, 0, Tk, D, HD);
  mma_cp_async_commit ();

  unsigned qf[KSTEPS][4];
  float o[NT_O][4];
#pragma unroll
  for (int n = 0; n < NT_O; n++)
    o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_r[2] = { -INFINITY, -INFINITY };   /* running max (base-2 scaled scores) of rows g and g+8 */
  float l_r[2] = { 0.0f, 0.0f };             /* this thread's part of the running sums */
  const int row_r[2] = { q0 + warp * 16 + g, q0 + warp * 16 + g + 8 };

  for (int j = 0; j < ntiles; j++)
    {
      const int cur = j & 1, k0 = j * MMA_BK;
      __nv_bfloat16 *const kcur = ks0 + cur * MMA_BK * LDS, *const vcur = vs0 + cur * MMA_BK * LDS;
      __nv_bfloat16 *const knext = ks0 + (cur ^ 1) * MMA_BK * LDS, *const vnext = vs0 + (cur ^ 1) * MMA_BK * LDS;
      mma_cp_async_wait_all ();
      __syncthreads ();   /* tile j is in; every warp is done with tile j−1, whose buffers are refilled now */
      if (j + 1 < ntiles)
        {
          mma_load_tile<DP> (knext, kb, k0 + MMA_BK, Tk, D, HD);
          mma_load_tile<DP> (vnext, vb, k0 + MMA_BK, Tk, D, HD);
        }
      mma_cp_async_commit ();   /* an empty group on the last tile keeps the wait simple */
      if (j == 0)
#pragma unroll
        for (int s = 0; s < KSTEPS; s++)   /* matrices: rows +0/+8 (lane/8 % 2), columns +0/+8 (lane/16) */
          mma_ldmatrix_x4 (qf[s], qs + (warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + s * 16 + (lane >> 4) * 8);

      /* S = Q·Kᵀ, 16 × 64 per warp */
      float sc[NT_S][4];
#pragma unroll
      for (int n = 0; n < NT_S; n++)
        sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
      for (int s = 0; s < KSTEPS; s++)
#pragma unroll
        for (int n = 0; n < NT_S; n += 2)
          {
            /* matrices: (keys n·8.., dims +0), (n·8, +8), ((n+1)·8, +0), ((n+1)·8, +8) */
            const int mi = lane >> 3;
            unsigned bf[4];
            mma_ldmatrix_x4 (bf, kcur + ((n + (mi >> 1)) * 8 + (lane & 7)) * LDS + s * 16 + (mi & 1) * 8);
            mma_bf16_16816 (sc[n], qf[s], bf[0], bf[1]);
            mma_bf16_16816 (sc[n + 1], qf[s], bf[2], bf[3]);
          }

      /* scale, mask, row max */
      float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
      for (int n = 0; n < NT_S; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          {
            const int key = k0 + n * 8 + 2 * t + (e & 1), r = e >> 1;
            float x = sc[n][e] * scale_log2;
            if (key >= Tk || (causal && key > row_r[r]))
              x = -INFINITY;
            sc[n][e] = x;
            mx[r] = fmaxf (mx[r], x);
          }
      float corr[2], m_use[2];
#pragma unroll
      for (int r = 0; r < 2; r++)
        {
          mx[r] = fmaxf (mx[r], __shfl_xor_sync (0xffffffffu, mx[r], 1));
          mx[r] = fmaxf (mx[r], __shfl_xor_sync (0xffffffffu, mx[r], 2));
          const float mnew = fmaxf (m_r[r], mx[r]);
          /* a row with every key masked so far keeps m = −inf; exponentiate against 0 so it gives 0, not NaN */
          m_use[r] = mnew == -INFINITY ? 0.0f : mnew;
          corr[r] = exp2f (m_r[r] - m_use[r]);   /* 0 while m_r = −inf */
          m_r[r] = mnew;
          l_r[r] *= corr[r];
        }
#pragma unroll
      for (int n = 0; n < NT_O; n++)
        {
          o[n][0] *= corr[0];
          o[n][1] *= corr[0];
          o[n][2] *= corr[1];
          o[n][3] *= corr[1];
        }
#pragma unroll
      for (int n = 0; n < NT_S; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          {
            const float p = exp2f (sc[n][e] - m_use[e >> 1]);
            sc[n][e] = p;
            l_r[e >> 1] += p;
          }

      /* O += P·V: keys in k steps of 16 (S tiles 2kk and 2kk+1 form the A fragment), head dims in n tiles */
#pragma unroll
      for (int kk = 0; kk < MMA_BK / 16; kk++)
        {
          unsigned pa[4];
          pa[0] = mma_pack_bf16 (sc[2 * kk][0], sc[2 * kk][1]);
          pa[1] = mma_pack_bf16 (sc[2 * kk][2], sc[2 * kk][3]);
          pa[2] = mma_pack_bf16 (sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
          pa[3] = mma_pack_bf16 (sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
          for (int n = 0; n < NT_O; n += 2)
            {
              /* matrices (.trans): (keys +0, dims n·8), (keys +8, n·8), (+0, (n+1)·8), (+8, (n+1)·8) */
              const int mi = lane >> 3;
              unsigned bf[4];
              mma_ldmatrix_x4_trans (bf, vcur + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LDS + (n + (mi >> 1)) * 8);
              mma_bf16_16816 (o[n], pa, bf[0], bf[1]);
              mma_bf16_16816 (o[n + 1], pa, bf[2], bf[3]);
            }
        }
    }

  /* the row sums are spread over the 4 threads of a row */
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; r++)
    {
      l_r[r] += __shfl_xor_sync (0xffffffffu, l_r[r], 1);
      l_r[r] += __shfl_xor_sync (0xffffffffu, l_r[r], 2);
      inv[r] = l_r[r] > 0.0f ? 1.0f / l_r[r] : 0.0f;
    }
#pragma unroll
  for (int r = 0; r < 2; r++)
    {
      const int row = row_r[r];
      if (row >= Tq)
        continue;
      __nv_bfloat16 *orow = out + (int64_t) b * Tq * HD + (int64_t) row * HD + (int64_t) h * D;
#pragma unroll
      for (int n = 0; n < NT_O; n++)
        if (n * 8 < D)   /* D is a multiple of 8: an n tile is all in or all out */
          *(__nv_bfloat162 *) (orow + n * 8 + 2 * t) =
              __floats2bfloat162_rn (o[n][2 * r] * inv[r], o[n][2 * r + 1] * inv[r]);
      if (lse && t == 0)
        lse[(int64_t) bh * Tq + row] = l_r[r] > 0.0f ? (m_r[r] + log2f (l_r[r])) * 0.69314718055994530942f : -INFINITY;
    }
}

template <int DP>
static void
attn_mma_launch (__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                 const __nv_bfloat16 *v, int B, int Tq, int Tk, int H, int D, bool causal, float scale)
{
  const size_t smem = sizeof (__nv_bfloat16) * (size_t) (MMA_BQ + 4 * MMA_BK) * (DP + 8);
  if (smem > 48 * 1024)
    OFTCU_CHECK (cudaFuncSetAttribute (attn_mma_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem));
  dim3 grid ((unsigned) ((Tq + MMA_BQ - 1) / MMA_BQ), (unsigned) (B * H));
  attn_mma_kernel<DP><<<grid, MMA_WARPS * 32, smem, oftcu_stream ()>>> (out, lse, q, k, v, H, Tq, Tk, D, causal,
                                                                       scale * 1.44269504088896340736f);
}

static void
oftcu_attn_mma (__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                const __nv_bfloat16 *v, int B, int Tq, int Tk, int H, int D, bool causal, float scale)
{
  switch ((D + 15) / 16)
    {
    case 1: attn_mma_launch<16> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 2: attn_mma_launch<32> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 3: attn_mma_launch<48> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 4: attn_mma_launch<64> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 5: attn_mma_launch<80> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 6: attn_mma_launch<96> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 7: attn_mma_launch<112> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 8: attn_mma_launch<128> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    case 9: attn_mma_launch<144> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    default: attn_mma_launch<160> (out, lse, q, k, v, B, Tq, Tk, H, D, causal, scale); break;
    }
}
