/* DPM-Solver++ 2M (Lu et al.), as diffusers' DPMSolverMultistepScheduler with algorithm_type
 * "dpmsolver++", solver_order 2, midpoint, final σ = 0: first order on the first and last steps,
 * second order (multistep, using the previous x0 prediction) in between. Works on the unscaled
 * sample x = α_t·x0 + σ_t·ε with α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log(α_t/σ_t). */
#include "sampler-private.h"
#include <math.h>
#include <string.h>

static void
alpha_sigma (float sigma, double *alpha_t, double *sigma_t, double *lambda)
{
  *alpha_t = 1.0 / sqrt ((double) sigma * sigma + 1.0);
  *sigma_t = sigma * *alpha_t;
  *lambda = log (*alpha_t) - log (*sigma_t); /* +inf at σ = 0 */
}

void
oft_sampler_dpmpp_step (OftSampler *s, int i, float *x, const float *out, float *pred_x0, int64_t n)
{
  double a_s, s_s, l_s, a_t, s_t, l_t;
  alpha_sigma (s->sigmas[i], &a_s, &s_s, &l_s);
  alpha_sigma (s->sigmas[i + 1], &a_t, &s_t, &l_t);
  double h = l_t - l_s;
  double ratio = s_t / s_s;               /* 0 at the final σ = 0 */
  double c = -a_t * expm1 (-h);           /* −α_t(e^{−h} − 1), α_t at σ = 0 is 1 */
  bool second = i > 0 && i < s->steps - 1 && s->prev_x0 && s->prev_n == n;
  double r_inv = second ? h / (l_s - s->prev_lambda) : 0;  /* 1/r0 = h / h_0 */

  if (!s->prev_x0 || s->prev_n != n)
    {
      g_free (s->prev_x0);
      s->prev_x0 = g_new (float, n);
      s->prev_n = n;
    }
  float *prev = s->prev_x0;
  OftPrediction p = s->schedule.prediction;

#pragma omp parallel for if (n > 65536)
  for (int64_t j = 0; j < n; j++)
    {
      /* x0 in the VP scaling: ε → (x − σ_t ε)/α_t, v → α_t x − σ_t v */
      double x0 = p == OFT_PREDICT_EPSILON ? (x[j] - s_s * out[j]) / a_s : a_s * x[j] - s_s * out[j];
      double d = second ? x0 + 0.5 * r_inv * (x0 - prev[j]) : x0;
      if (pred_x0)
        pred_x0[j] = (float) x0;
      x[j] = (float) (ratio * x[j] + c * d);
      prev[j] = (float) x0;
    }
  s->prev_lambda = l_s;
}
