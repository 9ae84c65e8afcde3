#include "nn-ref.h"
#include <math.h>
#include <stdlib.h>

void
ref_linear (double *out, const double *x, const double *w, const double *b, int64_t N, int C, int OC)
{
  for (int64_t n = 0; n < N; n++)
    for (int o = 0; o < OC; o++)
      {
        double s = b ? b[o] : 0;
        for (int c = 0; c < C; c++)
          s += x[n * C + c] * w[(int64_t) o * C + c];
        out[n * OC + o] = s;
      }
}

/* out[b,o,y,x] = bias[o] + Σ_{c,i,j} in[b, c, y·s−p+i, x·s−p+j] · w[o,c,i,j], zero outside the image */
void
ref_conv2d (double *out, const double *x, const double *w, const double *b, const OftConv2dShape *s)
{
  int OH = (s->H + 2 * s->pad - s->kh) / s->stride + 1, OW = (s->W + 2 * s->pad - s->kw) / s->stride + 1;
  for (int n = 0; n < s->B; n++)
    for (int o = 0; o < s->OC; o++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++)
          {
            double acc = b ? b[o] : 0;
            for (int c = 0; c < s->C; c++)
              for (int i = 0; i < s->kh; i++)
                for (int j = 0; j < s->kw; j++)
                  {
                    int y = oy * s->stride - s->pad + i, xx = ox * s->stride - s->pad + j;
                    if (y < 0 || y >= s->H || xx < 0 || xx >= s->W)
                      continue;
                    acc += x[(((int64_t) n * s->C + c) * s->H + y) * s->W + xx]
                           * w[(((int64_t) o * s->C + c) * s->kh + i) * s->kw + j];
                  }
            out[(((int64_t) n * s->OC + o) * OH + oy) * OW + ox] = acc;
          }
}

void
ref_groupnorm (double *out, const double *x, const double *w, const double *b,
               int B, int C, int64_t HW, int G, double eps)
{
  int cg = C / G;
  for (int n = 0; n < B; n++)
    for (int g = 0; g < G; g++)
      {
        double s = 0, ss = 0, M = (double) cg * HW;
        for (int c = g * cg; c < (g + 1) * cg; c++)
          for (int64_t i = 0; i < HW; i++)
            s += x[((int64_t) n * C + c) * HW + i];
        double mu = s / M;
        for (int c = g * cg; c < (g + 1) * cg; c++)
          for (int64_t i = 0; i < HW; i++)
            {
              double d = x[((int64_t) n * C + c) * HW + i] - mu;
              ss += d * d;
            }
        double r = 1 / sqrt (ss / M + eps);
        for (int c = g * cg; c < (g + 1) * cg; c++)
          for (int64_t i = 0; i < HW; i++)
            {
              int64_t k = ((int64_t) n * C + c) * HW + i;
              out[k] = (x[k] - mu) * r * w[c] + b[c];
            }
      }
}

void
ref_layernorm (double *out, const double *x, const double *w, const double *b, int64_t N, int C, double eps)
{
  for (int64_t n = 0; n < N; n++)
    {
      const double *r = x + n * C;
      double s = 0, ss = 0;
      for (int c = 0; c < C; c++)
        s += r[c];
      double mu = s / C;
      for (int c = 0; c < C; c++)
        ss += (r[c] - mu) * (r[c] - mu);
      double rs = 1 / sqrt (ss / C + eps);
      for (int c = 0; c < C; c++)
        out[n * C + c] = (r[c] - mu) * rs * w[c] + b[c];
    }
}

double ref_silu (double x) { return x / (1 + exp (-x)); }
double ref_gelu (double x) { return 0.5 * x * (1 + erf (x / sqrt (2.0))); }
double ref_gelu_tanh (double x) { return 0.5 * x * (1 + tanh (sqrt (2 / M_PI) * (x + 0.044715 * x * x * x))); }
double ref_quick_gelu (double x) { return x / (1 + exp (-1.702 * x)); }

void
ref_geglu (double *out, const double *x, int64_t N, int C)
{
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      out[n * C + c] = x[n * 2 * C + c] * ref_gelu (x[n * 2 * C + C + c]);
}

void
ref_softmax (double *out, const double *x, int64_t N, int C)
{
  for (int64_t n = 0; n < N; n++)
    {
      double mx = -INFINITY, s = 0;
      for (int c = 0; c < C; c++)
        mx = fmax (mx, x[n * C + c]);
      for (int c = 0; c < C; c++)
        s += exp (x[n * C + c] - mx);
      for (int c = 0; c < C; c++)
        out[n * C + c] = exp (x[n * C + c] - mx) / s;
    }
}

void
ref_attention (double *out, const double *q, const double *k, const double *v,
               int B, int Tq, int Tk, int H, int D, bool causal)
{
  int HD = H * D;
  double *p = malloc (sizeof (double) * Tk);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < Tq; i++)
        {
          double mx = -INFINITY, s = 0;
          int valid = causal ? i + 1 : Tk;
          for (int j = 0; j < valid; j++)
            {
              double dot = 0;
              for (int d = 0; d < D; d++)
                dot += q[((int64_t) b * Tq + i) * HD + h * D + d] * k[((int64_t) b * Tk + j) * HD + h * D + d];
              p[j] = dot / sqrt ((double) D);
              mx = fmax (mx, p[j]);
            }
          for (int j = 0; j < valid; j++)
            s += (p[j] = exp (p[j] - mx));
          for (int d = 0; d < D; d++)
            {
              double acc = 0;
              for (int j = 0; j < valid; j++)
                acc += p[j] / s * v[((int64_t) b * Tk + j) * HD + h * D + d];
              out[((int64_t) b * Tq + i) * HD + h * D + d] = acc;
            }
        }
  free (p);
}

void
ref_upsample2x (double *out, const double *x, int64_t BC, int H, int W)
{
  for (int64_t c = 0; c < BC; c++)
    for (int y = 0; y < 2 * H; y++)
      for (int xx = 0; xx < 2 * W; xx++)
        out[(c * 2 * H + y) * 2 * W + xx] = x[(c * H + y / 2) * W + xx / 2];
}

void
ref_concat (double *out, const double *a, const double *b, int B, int Ca, int Cb, int64_t HW)
{
  for (int n = 0; n < B; n++)
    for (int c = 0; c < Ca + Cb; c++)
      for (int64_t i = 0; i < HW; i++)
        out[((int64_t) n * (Ca + Cb) + c) * HW + i] =
          c < Ca ? a[((int64_t) n * Ca + c) * HW + i] : b[((int64_t) n * Cb + c - Ca) * HW + i];
}

void
ref_timestep_embedding (double *out, const double *t, int N, int dim,
                        bool flip_sin_to_cos, double freq_shift, double max_period)
{
  int half = dim / 2;
  for (int n = 0; n < N; n++)
    {
      for (int i = 0; i < half; i++)
        {
          double arg = t[n] * exp (-log (max_period) * i / (half - freq_shift));
          out[(int64_t) n * dim + (flip_sin_to_cos ? half + i : i)] = sin (arg);
          out[(int64_t) n * dim + (flip_sin_to_cos ? i : half + i)] = cos (arg);
        }
      if (dim % 2)
        out[(int64_t) n * dim + dim - 1] = 0;
    }
}

double
ref_mse (const double *p, const double *t, int64_t n)
{
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (p[i] - t[i]) * (p[i] - t[i]);
  return s / n;
}
