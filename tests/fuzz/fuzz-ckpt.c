/* The restricted .ckpt reader: its zip container (libzip) and its pickle machine, then every tensor
 * converted to f32. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftSafetensors *st = oft_weights_open (fuzz_write ("in.ckpt", data, size), &error);
  if (!st)
    {
      fuzz_clear (&error);
      return 0;
    }
  for (size_t i = 0; i < oft_safetensors_count (st); i++)
    {
      int64_t n = 0;
      float *f = oft_safetensors_dup_f32 (st, oft_safetensors_entry (st, i)->name, &n, &error);
      fuzz_clear (&error);
      g_free (f);
    }
  oft_safetensors_close (st);
  return 0;
}
