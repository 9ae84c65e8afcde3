/* Sampler set-up: timesteps and σ schedules as diffusers' set_timesteps makes them, and dispatch. */
#include "sampler-private.h"
#include "oft/error.h"
#include <math.h>
#include <string.h>

static const char *const kind_names[] = { "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", NULL };

gboolean
oft_sampler_kind_from_name (const char *name, OftSamplerKind *kind)
{
  for (int i = 0; kind_names[i]; i++)
    if (name && strcmp (name, kind_names[i]) == 0)
      {
        *kind = (OftSamplerKind) i;
        return TRUE;
      }
  return FALSE;
}

const char *
oft_sampler_kind_name (OftSamplerKind kind)
{
  return (unsigned) kind < G_N_ELEMENTS (kind_names) - 1 ? kind_names[kind] : "?";
}

/* np.interp of the per-timestep σ table at a fractional timestep. */
static double
interp_sigma (const double *table, int n, double t)
{
  if (t <= 0)
    return table[0];
  if (t >= n - 1)
    return table[n - 1];
  int lo = (int) floor (t);
  double w = t - lo;
  return table[lo] * (1 - w) + table[lo + 1] * w;
}

/* diffusers' _sigma_to_t: piecewise-linear inverse of log σ(t). */
static double
sigma_to_t (const double *log_sigmas, int n, double sigma)
{
  double ls = log (fmax (sigma, 1e-10));
  int lo = 0;
  for (int i = 0; i < n; i++)
    if (ls - log_sigmas[i] >= 0)
      lo = i;
  lo = MIN (lo, n - 2);
  double w = (log_sigmas[lo] - ls) / (log_sigmas[lo] - log_sigmas[lo + 1]);
  w = CLAMP (w, 0.0, 1.0);
  return (1 - w) * lo + w * (lo + 1);
}

/* Descending timesteps as each diffusers scheduler's set_timesteps spaces them. DPM-Solver spaces
 * steps+1 points and drops the last one (so its first step starts at a higher t than DDIM's). */
static void
spaced_timesteps (const OftNoiseSchedule *sc, int steps, bool dpm, bool round_linspace, double *t)
{
  int N = sc->num_train_timesteps;
  for (int i = 0; i < steps; i++)
    {
      int k = dpm ? steps - i : steps - 1 - i;   /* index into the ascending grid */
      int points = dpm ? steps + 1 : steps;
      switch (sc->spacing)
        {
        case OFT_SPACING_LEADING:
          t[i] = (double) k * (N / points) + sc->steps_offset;
          break;
        case OFT_SPACING_TRAILING:
          t[i] = nearbyint (N - i * ((double) N / steps)) - 1;
          break;
        default: /* linspace(0, N−1, points) */
          t[i] = points > 1 ? (double) k * (N - 1) / (points - 1) : 0;
          if (round_linspace)
            t[i] = nearbyint (t[i]);
          break;
        }
    }
}

OftSampler *
oft_sampler_new (OftSamplerKind kind, const OftNoiseSchedule *sc, int steps, float eta, GError **error)
{
  int N = sc->num_train_timesteps;
  if (steps < 1 || steps > N)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%d sampling steps: expected 1 to %d", steps, N);
      return NULL;
    }
  if (!(eta >= 0 && eta <= 1))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "eta %g: expected 0 to 1", eta);
      return NULL;
    }
  OftSampler *s = g_new0 (OftSampler, 1);
  s->kind = kind;
  s->schedule = *sc;
  s->steps = steps;
  s->eta = eta;
  s->alphas_cumprod = g_new (float, N);
  s->timesteps = g_new (float, steps);
  s->sigmas = g_new0 (float, steps + 1);
  oft_noise_schedule_alphas_cumprod (sc, s->alphas_cumprod);

  double *t = g_new (double, steps), *table = g_new (double, N), *log_table = g_new (double, N);
  for (int i = 0; i < N; i++)
    {
      float a = s->alphas_cumprod[i];
      table[i] = sqrtf ((1 - a) / a); /* float32 like diffusers, then used in double */
      log_table[i] = log (table[i]);
    }
  bool dpm = kind == OFT_SAMPLER_DPMPP_2M || kind == OFT_SAMPLER_DPMPP_2M_KARRAS;
  /* Euler keeps fractional linspace timesteps; DDIM and DPM-Solver round them */
  spaced_timesteps (sc, steps, dpm, kind != OFT_SAMPLER_EULER && kind != OFT_SAMPLER_EULER_ANCESTRAL, t);
  if (kind == OFT_SAMPLER_DPMPP_2M_KARRAS)
    {
      /* Karras et al. ρ = 7 between the schedule's extreme σ, timesteps mapped back and rounded */
      double smin = pow (table[0], 1 / 7.0), smax = pow (table[N - 1], 1 / 7.0);
      for (int i = 0; i < steps; i++)
        {
          double ramp = steps > 1 ? (double) i / (steps - 1) : 0;
          double sigma = pow (smax + ramp * (smin - smax), 7.0);
          s->sigmas[i] = (float) sigma;
          t[i] = nearbyint (sigma_to_t (log_table, N, sigma));
        }
    }
  else
    for (int i = 0; i < steps; i++)
      s->sigmas[i] = (float) interp_sigma (table, N, t[i]);
  /* DDIM ends at ᾱ[0] unless set_alpha_to_one; the σ-samplers end at σ = 0 */
  s->sigmas[steps] = kind == OFT_SAMPLER_DDIM && !sc->set_alpha_to_one ? (float) table[0] : 0.0f;
  for (int i = 0; i < steps; i++)
    s->timesteps[i] = (float) t[i];
  g_free (t);
  g_free (table);
  g_free (log_table);
  return s;
}

void
oft_sampler_free (OftSampler *s)
{
  if (!s)
    return;
  g_free (s->alphas_cumprod);
  g_free (s->timesteps);
  g_free (s->sigmas);
  g_free (s->prev_x0);
  g_free (s);
}

int oft_sampler_steps (const OftSampler *s) { return s->steps; }

float
oft_sampler_timestep (const OftSampler *s, int i)
{
  return s->timesteps[i];
}

float
oft_sampler_sigma (const OftSampler *s, int i)
{
  g_return_val_if_fail (i >= 0 && i <= s->steps, 0.0f);
  return s->sigmas[i];
}

float
oft_sampler_init_noise_sigma (const OftSampler *s)
{
  if (s->kind == OFT_SAMPLER_EULER || s->kind == OFT_SAMPLER_EULER_ANCESTRAL)
    {
      /* diffusers: max σ for linspace/trailing spacing, else √(σ_max² + 1) */
      float m = s->sigmas[0];
      return s->schedule.spacing == OFT_SPACING_LEADING ? sqrtf (m * m + 1) : m;
    }
  return 1.0f;
}

float
oft_sampler_input_scale (const OftSampler *s, int i)
{
  if (s->kind == OFT_SAMPLER_EULER || s->kind == OFT_SAMPLER_EULER_ANCESTRAL)
    return 1.0f / sqrtf (s->sigmas[i] * s->sigmas[i] + 1);
  return 1.0f;
}

bool
oft_sampler_needs_noise (const OftSampler *s)
{
  return s->kind == OFT_SAMPLER_EULER_ANCESTRAL || (s->kind == OFT_SAMPLER_DDIM && s->eta > 0);
}

void
oft_sampler_step (OftSampler *s, int i, float *sample, const float *model_out, const float *noise,
                  float *pred_x0, int64_t n)
{
  g_return_if_fail (i >= 0 && i < s->steps);
  g_return_if_fail (noise || !oft_sampler_needs_noise (s));
  switch (s->kind)
    {
    case OFT_SAMPLER_DDIM:
      oft_sampler_ddim_step (s, i, sample, model_out, noise, pred_x0, n);
      break;
    case OFT_SAMPLER_EULER:
    case OFT_SAMPLER_EULER_ANCESTRAL:
      oft_sampler_euler_step (s, i, sample, model_out, noise, pred_x0, n);
      break;
    default:
      oft_sampler_dpmpp_step (s, i, sample, model_out, pred_x0, n);
      break;
    }
}
