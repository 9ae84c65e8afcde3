/* Mean squared error, the diffusion training loss (F.mse_loss with reduction="mean"). */
#include "oft/nn.h"
#include "nn-internal.h"

float
oft_mse_forward (const float *pred, const float *target, int64_t n)
{
  double s = 0;
#pragma omp parallel for reduction(+ : s) if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      double d = (double) pred[i] - target[i];
      s += d * d;
    }
  return (float) (s / (double) n);
}

void
oft_mse_backward (float *dpred, const float *pred, const float *target, int64_t n, float dloss)
{
  const float k = (float) (2.0 * dloss / (double) n);
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    dpred[i] += k * (pred[i] - target[i]);
}
