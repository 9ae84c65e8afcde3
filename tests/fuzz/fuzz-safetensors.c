/* safetensors header and data: open (header validation), then every tensor converted to f32. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  OftSafetensors *st = oft_safetensors_open (fuzz_write ("in.safetensors", data, size), &error);
  if (!st)
    {
      fuzz_clear (&error);
      return 0;
    }
  for (size_t i = 0; i < oft_safetensors_count (st); i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      int64_t n = 0;
      float *f = oft_safetensors_dup_f32 (st, e->name, &n, &error);
      fuzz_clear (&error);
      g_free (f);
      /* a shape check against a different shape must fail cleanly */
      int64_t shape[1] = { 3 };
      float buf[3];
      if (!oft_safetensors_read_f32 (st, e->name, buf, 1, shape, &error))
        fuzz_clear (&error);
    }
  GHashTable *meta = oft_safetensors_metadata (st);
  if (meta)
    g_hash_table_size (meta);
  oft_safetensors_close (st);
  return 0;
}
