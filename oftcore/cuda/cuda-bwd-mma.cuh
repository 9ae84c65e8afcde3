/* The four warp-collective tensor-core operations of the bf16 attention backward (cuda-kernels-bwd.cu), as
 * inline PTX. Kept apart so that a CPU emulation of the kernels can substitute them.
 *
 * Layouts (PTX ISA, mma.m16n8k16 .bf16, g = lane/4, t = lane%4; a register holds two bf16, the lower
 * 16 bits the lower column):
 *   A 16×16 row-major: a[0] (g, 2t..2t+1), a[1] (g+8, 2t..), a[2] (g, 2t+8..), a[3] (g+8, 2t+8..);
 *   B 16×8 (k × n):    b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
 *   C 16×8 fp32:       c[0], c[1] (g, 2t, 2t+1), c[2], c[3] (g+8, 2t, 2t+1).
 * ldmatrix.x4: lanes 8j..8j+7 give the row addresses of 8×8 matrix j (16-byte rows); register j of thread T
 * receives (row T/4, columns 2(T%4), 2(T%4)+1) of matrix j, or with .trans (rows 2(T%4), 2(T%4)+1, column T/4). */
#pragma once
#include "cuda-common.cuh"

__device__ __forceinline__ void
oftcu_ldsm_x4 (unsigned r[4], const __nv_bfloat16 *smem)
{
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ void
oftcu_ldsm_x4_trans (unsigned r[4], const __nv_bfloat16 *smem)
{
  const unsigned s = (unsigned) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

/* c += a·b, m16n8k16, bf16 inputs, fp32 accumulators */
__device__ __forceinline__ void
oftcu_mma_bf16 (float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* two floats as a bf16 pair (round to nearest even), lo in the lower 16 bits */
__device__ __forceinline__ unsigned
oftcu_pack_bf16 (float lo, float hi)
{
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);
  return *(unsigned *) &v;
}
