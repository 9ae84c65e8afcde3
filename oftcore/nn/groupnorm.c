/* Group norm as torch.nn.GroupNorm: a group is C/G consecutive channels, i.e. one contiguous run of
 * (C/G)·HW values per (batch, group); biased variance, eps inside the square root. */
#include "oft/nn.h"
#include "nn-internal.h"

void
oft_groupnorm_forward (float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       int B, int C, int64_t HW, int G, float eps)
{
  const int cg = C / G;
  const int64_t M = (int64_t) cg * HW;
#pragma omp parallel for if ((int64_t) B * C * HW > OFT_NN_OMP_MIN)
  for (int bg = 0; bg < B * G; bg++)
    {
      const float *x = inp + (int64_t) bg * M;
      float *y = out + (int64_t) bg * M;
      /* two passes in double: the mean first, so the variance sums no catastrophic difference */
      double s = 0;
      for (int64_t i = 0; i < M; i++)
        s += x[i];
      double mu = s / (double) M, v = 0;
      for (int64_t i = 0; i < M; i++)
        v += ((double) x[i] - mu) * ((double) x[i] - mu);
      float m = (float) mu, r = (float) (1.0 / sqrt (v / (double) M + (double) eps));
      mean[bg] = m;
      rstd[bg] = r;
      const int c0 = (bg % G) * cg;
      for (int c = 0; c < cg; c++)
        {
          float w = weight ? weight[c0 + c] : 1.0f, bb = bias ? bias[c0 + c] : 0.0f;
          const float *xc = x + c * HW;
          float *yc = y + c * HW;
          for (int64_t i = 0; i < HW; i++)
            yc[i] = (xc[i] - m) * r * w + bb;
        }
    }
}

/* With x̂ = (x−μ)·rstd and dx̂ = dout·w, the group's gradient is
 * dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)). Threads split the groups (disjoint channels, so
 * dweight/dbias entries are never shared) and loop over the batch inside. */
void
oft_groupnorm_backward (float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd,
                        int B, int C, int64_t HW, int G)
{
  const int cg = C / G;
  const int64_t M = (int64_t) cg * HW;
#pragma omp parallel for if ((int64_t) B * C * HW > OFT_NN_OMP_MIN)
  for (int g = 0; g < G; g++)
    {
      const int c0 = g * cg;
      for (int b = 0; b < B; b++)
        {
          const int64_t off = ((int64_t) b * G + g) * M;
          const float *x = inp + off, *d = dout + off;
          const float m = mean[b * G + g], r = rstd[b * G + g];
          double sd = 0, sdx = 0;
          for (int c = 0; c < cg; c++)
            {
              float w = weight ? weight[c0 + c] : 1.0f;
              const float *xc = x + c * HW, *dc = d + c * HW;
              double cs = 0, csx = 0;
              for (int64_t i = 0; i < HW; i++)
                {
                  float xh = (xc[i] - m) * r;
                  cs += dc[i];
                  csx += (double) dc[i] * xh;
                }
              if (dbias)
                dbias[c0 + c] += (float) cs;
              if (dweight)
                dweight[c0 + c] += (float) csx;
              sd += cs * w;
              sdx += csx * w;
            }
          if (!dinp)
            continue;
          const float md = (float) (sd / (double) M), mdx = (float) (sdx / (double) M);
          float *dx = dinp + off;
          for (int c = 0; c < cg; c++)
            {
              float w = weight ? weight[c0 + c] : 1.0f;
              const float *xc = x + c * HW, *dc = d + c * HW;
              float *dxc = dx + c * HW;
              for (int64_t i = 0; i < HW; i++)
                {
                  float xh = (xc[i] - m) * r;
                  dxc[i] += r * (dc[i] * w - md - xh * mdx);
                }
            }
        }
    }
}
