/* A PEFT adapter folder: adapter_config.json and adapter_model.safetensors, the two parts of the
 * input split at FUZZ_SEP; the loaded adapter is written back out (the saver must cope too). */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const uint8_t *part[2];
  size_t len[2];
  fuzz_split (data, size, part, len, 2);
  fuzz_write ("adapter_config.json", part[0], len[0]);
  fuzz_write ("adapter_model.safetensors", part[1], len[1]);
  GError *error = NULL;
  OftPeftAdapter *a = oft_peft_adapter_load (fuzz_dir (), &error);
  if (!a)
    {
      fuzz_clear (&error);
      return 0;
    }
  char *json = oft_peft_adapter_config_json (a);
  g_free (json);
  oft_peft_adapter_free (a);
  return 0;
}
