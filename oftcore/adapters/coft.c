/* COFT, PEFT's variant: project each block's Q onto the Frobenius ball of radius eps/√rows. */
#include "adapters-internal.h"
#include <math.h>

void
oft_coft_project (float *packed, const OftSpec *s)
{
  const int rows = oft_spec_rows (s);
  const int64_t ne = (int64_t) s->b * (s->b - 1) / 2;
  const double radius = s->eps / sqrt ((double) rows);
  for (int r = 0; r < rows; r++)
    {
      float *v = packed + r * ne;
      double sq = 0;
      for (int64_t k = 0; k < ne; k++)
        sq += (double) v[k] * v[k];
      double norm = sqrt (2.0 * sq); /* ‖U − Uᵀ‖_F: every entry appears twice */
      if (norm > radius)
        {
          double f = radius / norm;
          for (int64_t k = 0; k < ne; k++)
            v[k] = (float) (v[k] * f);
        }
    }
}
