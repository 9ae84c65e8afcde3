#include "oft/rng.h"
#include <math.h>

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void
oft_rng_seed (OftRng *rng, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64 (&seed);
}

static inline uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

uint64_t
oft_rng_next (OftRng *rng)
{
  uint64_t *s = rng->s;
  uint64_t result = rotl (s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

double
oft_rng_uniform (OftRng *rng)
{
  return (double) (oft_rng_next (rng) >> 11) * 0x1.0p-53;
}

void
oft_rng_normal (OftRng *rng, float *out, int64_t n)
{
  for (int64_t i = 0; i < n; i += 2)
    {
      double u1 = 1.0 - oft_rng_uniform (rng); /* (0, 1]: log is finite */
      double u2 = oft_rng_uniform (rng);
      double r = sqrt (-2.0 * log (u1)), th = 2.0 * G_PI * u2;
      out[i] = (float) (r * cos (th));
      if (i + 1 < n)
        out[i + 1] = (float) (r * sin (th));
    }
}
