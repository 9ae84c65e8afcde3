/* safetensors reader and writer: golden files, round trips and bad input. */
#include "test-common.h"
#include <string.h>

static void
test_read_golden_adapter (void)
{
  OftSafetensors *st = test_open_golden ("oft_layers/oft_linear/adapter/adapter_model.safetensors");
  g_assert_cmpuint (oft_safetensors_count (st), ==, 1);
  const OftSafetensorsEntry *e = oft_safetensors_find (st, "base_model.model.layer.oft_R.weight");
  g_assert_nonnull (e);
  g_assert_cmpint (e->dtype, ==, OFT_DTYPE_F32);
  g_assert_cmpint (e->ndim, ==, 2);
  g_assert_cmpint (e->shape[0], ==, 4);
  g_assert_cmpint (e->shape[1], ==, 120);
  GHashTable *md = oft_safetensors_metadata (st);
  g_assert_nonnull (md);
  g_assert_cmpstr (g_hash_table_lookup (md, "format"), ==, "pt");
  oft_safetensors_close (st);
}

static void
test_read_golden_i64 (void)
{
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  const OftSafetensorsEntry *e = oft_safetensors_find (st, "ddim_timesteps");
  g_assert_nonnull (e);
  g_assert_cmpint (e->dtype, ==, OFT_DTYPE_I64);
  const int64_t *ts = e->data;
  g_assert_cmpint (ts[0], ==, 901);
  g_assert_cmpint (ts[9], ==, 1);
  /* entries come in data-offset order and cover the buffer without gaps */
  uint64_t end = 0;
  for (size_t i = 0; i < oft_safetensors_count (st); i++)
    {
      const OftSafetensorsEntry *x = oft_safetensors_entry (st, i);
      g_assert_cmpuint (x->begin, ==, end);
      end = x->end;
    }
  oft_safetensors_close (st);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/safetensors/read/golden-adapter", test_read_golden_adapter);
  g_test_add_func ("/safetensors/read/golden-i64", test_read_golden_i64);
  return g_test_run ();
}
