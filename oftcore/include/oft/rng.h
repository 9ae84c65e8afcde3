/* The project's random numbers: xoshiro256** seeded through splitmix64, normals by Box–Muller in
 * double precision. A seed gives the same numbers on every build and platform (no libm-dependent
 * paths beyond log, sqrt, sin and cos), so a seed reproduces an image with the same model. */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  uint64_t s[4];
} OftRng;

void     oft_rng_seed (OftRng *rng, uint64_t seed);
uint64_t oft_rng_next (OftRng *rng);
/* uniform in [0, 1) with 53 random bits */
double   oft_rng_uniform (OftRng *rng);
/* n draws of N(0, 1), generated in pairs (an odd n discards the last partner) */
void     oft_rng_normal (OftRng *rng, float *out, int64_t n);

G_END_DECLS
