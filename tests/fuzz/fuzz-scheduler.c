/* scheduler_config.json: the noise schedule, ᾱ, and every sampler built from it (a few steps). */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  OftNoiseSchedule s;
  GError *error = NULL;
  if (!oft_noise_schedule_load (&s, fuzz_write ("scheduler_config.json", data, size), &error))
    {
      fuzz_clear (&error);
      return 0;
    }
  float *ac = g_new (float, s.num_train_timesteps > 0 ? s.num_train_timesteps : 1);
  oft_noise_schedule_alphas_cumprod (&s, ac);
  g_free (ac);
  for (int k = OFT_SAMPLER_DDIM; k <= OFT_SAMPLER_DPMPP_2M_KARRAS; k++)
    {
      OftSampler *sm = oft_sampler_new (k, &s, 4, 0.5f, &error);
      if (!sm)
        {
          fuzz_clear (&error);
          continue;
        }
      for (int i = 0; i <= oft_sampler_steps (sm); i++)
        {
          if (i < oft_sampler_steps (sm))
            (void) oft_sampler_timestep (sm, i);
          (void) oft_sampler_sigma (sm, i);
        }
      oft_sampler_free (sm);
    }
  return 0;
}
