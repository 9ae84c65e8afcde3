/* Layer norm over the last dim as torch.nn.LayerNorm: biased variance, eps inside the square root. */
#include "oft/nn.h"
#include "nn-internal.h"
#include <glib.h>

void
oft_layernorm_forward (float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       int64_t N, int C, float eps)
{
#pragma omp parallel for if (N * C > OFT_NN_OMP_MIN)
  for (int64_t n = 0; n < N; n++)
    {
      const float *x = inp + n * C;
      float *y = out + n * C;
      double s = 0;
      for (int i = 0; i < C; i++)
        s += x[i];
      double mu = s / C, v = 0;
      for (int i = 0; i < C; i++)
        v += ((double) x[i] - mu) * ((double) x[i] - mu);
      float m = (float) mu, r = (float) (1.0 / sqrt (v / C + (double) eps));
      mean[n] = m;
      rstd[n] = r;
      for (int i = 0; i < C; i++)
        y[i] = (x[i] - m) * r * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
    }
}

/* dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) per row, dx̂ = dout·w. dweight/dbias sum over rows, so
 * each thread sums its rows privately and adds its partial sums once at the end. */
void
oft_layernorm_backward (float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd, int64_t N, int C)
{
#pragma omp parallel if (N * C > OFT_NN_OMP_MIN)
  {
    double *pw = dweight ? g_new0 (double, C) : NULL;
    double *pb = dbias ? g_new0 (double, C) : NULL;
#pragma omp for
    for (int64_t n = 0; n < N; n++)
      {
        const float *x = inp + n * C, *d = dout + n * C;
        const float m = mean[n], r = rstd[n];
        double sd = 0, sdx = 0;
        for (int i = 0; i < C; i++)
          {
            float xh = (x[i] - m) * r;
            float dxh = d[i] * (weight ? weight[i] : 1.0f);
            sd += dxh;
            sdx += (double) dxh * xh;
            if (pw)
              pw[i] += (double) d[i] * xh;
            if (pb)
              pb[i] += d[i];
          }
        if (!dinp)
          continue;
        const float md = (float) (sd / C), mdx = (float) (sdx / C);
        float *dx = dinp + n * C;
        for (int i = 0; i < C; i++)
          {
            float xh = (x[i] - m) * r;
            dx[i] += r * (d[i] * (weight ? weight[i] : 1.0f) - md - xh * mdx);
          }
      }
#pragma omp critical
    {
      for (int i = 0; pw && i < C; i++)
        dweight[i] += (float) pw[i];
      for (int i = 0; pb && i < C; i++)
        dbias[i] += (float) pb[i];
    }
    g_free (pw);
    g_free (pb);
  }
}
