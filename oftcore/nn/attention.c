/* Multi-head scaled-dot-product attention. Head h of q/k/v/out is the column slice h·D..h·D+D−1 of
 * the [B, T, H·D] rows, so every GEMM reads it in place with leading dimension H·D (no head
 * transposes). The score matrix of one (batch, head) is written straight into att and normalised
 * there, so att doubles as the forward's workspace. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <cblas.h>

void
oft_attention_forward (float *out, float *att,
                       const float *q, const float *k, const float *v,
                       int B, int Tq, int Tk, int H, int D, bool causal)
{
  const int HD = H * D;
  const float scale = 1.0f / sqrtf ((float) D);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      {
        const float *qb = q + (int64_t) b * Tq * HD + h * D;
        const float *kb = k + (int64_t) b * Tk * HD + h * D;
        const float *vb = v + (int64_t) b * Tk * HD + h * D;
        float *ob = out + (int64_t) b * Tq * HD + h * D;
        float *a = att + ((int64_t) b * H + h) * Tq * Tk;
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D,
                     scale, qb, HD, kb, HD, 0.0f, a, Tk);
#pragma omp parallel for if ((int64_t) Tq * Tk > OFT_NN_OMP_MIN)
        for (int i = 0; i < Tq; i++)
          {
            float *row = a + (int64_t) i * Tk;
            oft_nn_softmax_row (row, row, Tk, causal ? i + 1 : Tk);
          }
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk,
                     1.0f, a, Tk, vb, HD, 0.0f, ob, HD);
      }
}

/* One (batch, head) score gradient at a time. */
size_t
oft_attention_scratch_floats (int B, int Tq, int Tk, int H, int D)
{
  return (size_t) Tq * Tk;
}

/* Masked entries have att = 0, so the softmax backward zeroes their score gradient by itself. */
void
oft_attention_backward (float *dq, float *dk, float *dv,
                        const float *dout, const float *att,
                        const float *q, const float *k, const float *v,
                        int B, int Tq, int Tk, int H, int D, float *scratch)
{
  const int HD = H * D;
  const float scale = 1.0f / sqrtf ((float) D);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      {
        const int64_t qo = (int64_t) b * Tq * HD + h * D, ko = (int64_t) b * Tk * HD + h * D;
        const float *a = att + ((int64_t) b * H + h) * Tq * Tk;
        const float *d = dout + qo;
        if (dv) /* dv[Tk,D] += attᵀ · dout */
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq,
                       1.0f, a, Tk, d, HD, 1.0f, dv + ko, HD);
        if (!dq && !dk)
          continue;
        float *ds = scratch;
        /* datt[Tq,Tk] = dout · vᵀ, then through the softmax into score gradients (in place) */
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D,
                     1.0f, d, HD, v + ko, HD, 0.0f, ds, Tk);
#pragma omp parallel for if ((int64_t) Tq * Tk > OFT_NN_OMP_MIN)
        for (int i = 0; i < Tq; i++)
          oft_nn_softmax_row_backward (ds + (int64_t) i * Tk, ds + (int64_t) i * Tk,
                                       a + (int64_t) i * Tk, Tk, 0);
        if (dq) /* dq[Tq,D] += scale · ds · k */
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk,
                       scale, ds, Tk, k + ko, HD, 1.0f, dq + qo, HD);
        if (dk) /* dk[Tk,D] += scale · dsᵀ · q */
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq,
                       scale, ds, Tk, q + qo, HD, 1.0f, dk + ko, HD);
      }
}
