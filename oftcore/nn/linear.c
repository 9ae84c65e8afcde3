/* Fully connected layer: one sgemm each way, weight [OC, C] as PyTorch stores it. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <cblas.h>

void
oft_linear_forward (float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) N, OC, C,
               1.0f, inp, C, weight, C, 0.0f, out, OC);
  if (!bias)
    return;
#pragma omp parallel for if (N * OC > OFT_NN_OMP_MIN)
  for (int64_t n = 0; n < N; n++)
    {
      float *o = out + n * OC;
      for (int j = 0; j < OC; j++)
        o[j] += bias[j];
    }
}

/* dbias[j] += Σ_n dout[n, j]. Threads take column blocks so rows are still read contiguously and no
 * two threads write the same dbias entry; double accumulators keep N-term sums accurate. */
static void
column_sums_add (float *dbias, const float *dout, int64_t N, int OC)
{
  enum { BLK = 64 };
  int nblk = (OC + BLK - 1) / BLK;
#pragma omp parallel for if (N * OC > OFT_NN_OMP_MIN)
  for (int b = 0; b < nblk; b++)
    {
      int j0 = b * BLK, j1 = j0 + BLK < OC ? j0 + BLK : OC;
      double acc[BLK] = { 0 };
      for (int64_t n = 0; n < N; n++)
        {
          const float *d = dout + n * OC;
          for (int j = j0; j < j1; j++)
            acc[j - j0] += d[j];
        }
      for (int j = j0; j < j1; j++)
        dbias[j] += (float) acc[j - j0];
    }
}

void
oft_linear_backward (float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int64_t N, int C, int OC)
{
  if (dinp)   /* dinp[N,C] += dout[N,OC] · W[OC,C] */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) N, C, OC,
                 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
  if (dweight) /* dW[OC,C] += doutᵀ · inp */
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, (int) N,
                 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias)
    column_sums_add (dbias, dout, N, OC);
}
