/* Softmax over the last dim; the backward works from the forward's output (p), not its input. */
#include "oft/nn.h"
#include "nn-internal.h"

void
oft_softmax_forward (float *out, const float *inp, int64_t N, int C)
{
#pragma omp parallel for if (N * C > OFT_NN_OMP_MIN)
  for (int64_t n = 0; n < N; n++)
    oft_nn_softmax_row (out + n * C, inp + n * C, C, C);
}

void
oft_softmax_backward (float *dinp, const float *dout, const float *out, int64_t N, int C)
{
#pragma omp parallel for if (N * C > OFT_NN_OMP_MIN)
  for (int64_t n = 0; n < N; n++)
    oft_nn_softmax_row_backward (dinp + n * C, dout + n * C, out + n * C, C, 1);
}
