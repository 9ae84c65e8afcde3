/* diffusers' get_timestep_embedding, step for step in float32 so the argument of sin/cos (up to ~1000
 * for SD's timesteps) carries the same rounding as PyTorch's:
 *   exponent = (−ln(max_period) · arange(half)) / (half − freq_shift);  e = exp(exponent)
 *   arg = t · e;  emb = [sin(arg) | cos(arg)]  (→ [cos | sin] with flip), zero column for an odd dim. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <string.h>

void
oft_timestep_embedding (float *out, const float *timesteps, int N, int dim,
                        bool flip_sin_to_cos, float freq_shift, float max_period)
{
  const int half = dim / 2;
  const float neg_log = (float) -log ((double) max_period);
  const float denom = (float) half - freq_shift;
  for (int n = 0; n < N; n++)
    {
      float *o = out + (int64_t) n * dim;
      float *first = o, *second = o + half;
      if (flip_sin_to_cos)
        {
          first = o + half;
          second = o;
        }
      for (int i = 0; i < half; i++)
        {
          float exponent = (neg_log * (float) i) / denom;
          float arg = timesteps[n] * expf (exponent);
          first[i] = sinf (arg);
          second[i] = cosf (arg);
        }
      if (dim % 2)
        o[dim - 1] = 0;
    }
}
