/* Pointwise activations and their derivatives, as PyTorch defines them:
 * SiLU x·σ(x); GELU 0.5x(1+erf(x/√2)); tanh-GELU 0.5x(1+tanh(√(2/π)(x+0.044715x³)));
 * QuickGELU x·σ(1.702x) (CLIP); GEGLU h·gelu(gate) (diffusers' feed-forward). */
#include "oft/nn.h"
#include "nn-internal.h"

#define SQRT1_2     0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f
#define SQRT2_PI    0.79788456080286535588f  /* √(2/π) */
#define GELU_C      0.044715f
#define QUICK_A     1.702f

static inline float
sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

static inline float
gelu (float x)
{
  return 0.5f * x * (1.0f + erff (x * SQRT1_2));
}

/* d/dx of 0.5x(1+erf(x/√2)) = Φ(x) + x·φ(x) */
static inline float
gelu_grad (float x)
{
  return 0.5f * (1.0f + erff (x * SQRT1_2)) + x * INV_SQRT2PI * expf (-0.5f * x * x);
}

void
oft_silu_forward (float *out, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    out[i] = inp[i] * sigmoidf (inp[i]);
}

void
oft_silu_backward (float *dinp, const float *dout, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      float s = sigmoidf (inp[i]);
      dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

void
oft_gelu_forward (float *out, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    out[i] = gelu (inp[i]);
}

void
oft_gelu_backward (float *dinp, const float *dout, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    dinp[i] += dout[i] * gelu_grad (inp[i]);
}

void
oft_gelu_tanh_forward (float *out, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i];
      out[i] = 0.5f * x * (1.0f + tanhf (SQRT2_PI * (x + GELU_C * x * x * x)));
    }
}

void
oft_gelu_tanh_backward (float *dinp, const float *dout, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      float x = inp[i];
      float t = tanhf (SQRT2_PI * (x + GELU_C * x * x * x));
      float g = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * SQRT2_PI * (1.0f + 3.0f * GELU_C * x * x);
      dinp[i] += dout[i] * g;
    }
}

void
oft_quick_gelu_forward (float *out, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    out[i] = inp[i] * sigmoidf (QUICK_A * inp[i]);
}

void
oft_quick_gelu_backward (float *dinp, const float *dout, const float *inp, int64_t n)
{
#pragma omp parallel for if (n > OFT_NN_OMP_MIN)
  for (int64_t i = 0; i < n; i++)
    {
      float s = sigmoidf (QUICK_A * inp[i]);
      dinp[i] += dout[i] * s * (1.0f + QUICK_A * inp[i] * (1.0f - s));
    }
}

void
oft_geglu_forward (float *out, const float *inp, int64_t N, int C)
{
#pragma omp parallel for if (N * C > OFT_NN_OMP_MIN)
  for (int64_t r = 0; r < N; r++)
    {
      const float *h = inp + r * 2 * C, *gate = h + C;
      float *o = out + r * C;
      for (int c = 0; c < C; c++)
        o[c] = h[c] * gelu (gate[c]);
    }
}

void
oft_geglu_backward (float *dinp, const float *dout, const float *inp, int64_t N, int C)
{
#pragma omp parallel for if (N * C > OFT_NN_OMP_MIN)
  for (int64_t r = 0; r < N; r++)
    {
      const float *h = inp + r * 2 * C, *gate = h + C, *d = dout + r * C;
      float *dh = dinp + r * 2 * C, *dgate = dh + C;
      for (int c = 0; c < C; c++)
        {
          dh[c] += d[c] * gelu (gate[c]);
          dgate[c] += d[c] * h[c] * gelu_grad (gate[c]);
        }
    }
}
