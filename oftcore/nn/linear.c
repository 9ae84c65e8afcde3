/* Fully connected layer: one sgemm each way, weight [OC, C] as PyTorch stores it. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <cblas.h>
#include <string.h>

/* The bias is written first and the sgemm adds onto it (beta = 1): no threaded loop between BLAS
 * calls, whose OpenMP team would compete with OpenBLAS's own spinning threads. */
void
oft_linear_forward (float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC)
{
  if (bias)
    for (int64_t n = 0; n < N; n++)
      memcpy (out + n * OC, bias, sizeof (float) * OC);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) N, OC, C,
               1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
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
    oft_nn_col_sums_add (dbias, dout, N, OC, OC);
}
