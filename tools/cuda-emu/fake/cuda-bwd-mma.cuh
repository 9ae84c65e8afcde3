/* CPU emulation of the warp-collective tensor-core operations (PTX ISA layouts, see the real header). */
#pragma once
#include "cuda-common.cuh"
void emu_warp_gather (const void *mine, size_t bytes, void *all);
int emu_lane ();
inline float emu_bf (uint16_t x) { __nv_bfloat16 h; h.x = x; return __bfloat162float (h); }
inline void
oftcu_ldsm_x4 (unsigned r[4], const __nv_bfloat16 *smem)
{
  const __nv_bfloat16 *p[32];
  emu_warp_gather (&smem, sizeof smem, p);
  const int T = emu_lane (), g = T / 4, t = T % 4;
  for (int j = 0; j < 4; j++)
    {
      const __nv_bfloat16 *row = p[8 * j + g];
      r[j] = (unsigned) row[2 * t].x | ((unsigned) row[2 * t + 1].x << 16);
    }
}
inline void
oftcu_ldsm_x4_trans (unsigned r[4], const __nv_bfloat16 *smem)
{
  const __nv_bfloat16 *p[32];
  emu_warp_gather (&smem, sizeof smem, p);
  const int T = emu_lane (), g = T / 4, t = T % 4;
  for (int j = 0; j < 4; j++)
    r[j] = (unsigned) p[8 * j + 2 * t][g].x | ((unsigned) p[8 * j + 2 * t + 1][g].x << 16);
}
inline void
oftcu_mma_bf16 (float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
  struct F { unsigned a[4], b[2]; } mine = { { a[0], a[1], a[2], a[3] }, { b0, b1 } }, all[32];
  emu_warp_gather (&mine, sizeof mine, all);
  const int T = emu_lane (), g = T / 4, t = T % 4;
  auto A = [&] (int r, int k) {
    int reg = (r / 8) + 2 * (k / 8), kk = k % 8, lane = (r % 8) * 4 + kk / 2;
    unsigned v = all[lane].a[reg];
    return emu_bf ((uint16_t) (kk % 2 ? v >> 16 : v & 0xffff));
  };
  auto Bm = [&] (int k, int n) {
    int reg = k / 8, kk = k % 8, lane = n * 4 + kk / 2;
    unsigned v = all[lane].b[reg];
    return emu_bf ((uint16_t) (kk % 2 ? v >> 16 : v & 0xffff));
  };
  for (int e = 0; e < 4; e++)
    {
      int row = g + (e >> 1) * 8, col = 2 * t + (e & 1);
      double s = 0;
      for (int k = 0; k < 16; k++)
        s += (double) A (row, k) * (double) Bm (k, col);
      c[e] = (float) ((double) c[e] + s);
    }
}
inline unsigned
oftcu_pack_bf16 (float lo, float hi)
{
  return (unsigned) __float2bfloat16_rn (lo).x | ((unsigned) __float2bfloat16_rn (hi).x << 16);
}
