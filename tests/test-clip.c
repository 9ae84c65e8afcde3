/* CLIP text encoder against transformers' CLIPTextModel on the golden prompts. */
#include "test-common.h"
#include <string.h>

static OftClipText *
load_golden (void)
{
  char *dir = test_golden_path ("pipeline/text_encoder");
  GError *error = NULL;
  OftClipText *m = oft_clip_text_load (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return m;
}

static void
test_golden_forward (void)
{
  OftClipText *m = load_golden ();
  const OftClipConfig *c = oft_clip_text_config (m);
  g_assert_cmpint (c->n_layers, ==, 2);
  g_assert_cmpint (c->act, ==, OFT_ACT_QUICK_GELU);
  OftSafetensors *st = test_open_golden ("pipeline/reference.safetensors");
  const OftSafetensorsEntry *e = oft_safetensors_find (st, "token_ids");
  int B = (int) e->shape[0], T = (int) e->shape[1], H = c->hidden;
  int32_t *ids = g_new (int32_t, B * T);
  for (int i = 0; i < B * T; i++)
    ids[i] = (int32_t) ((const int64_t *) e->data)[i];
  float *out = g_new (float, (size_t) B * T * H);
  float *hs = g_new (float, (size_t) (c->n_layers + 1) * B * T * H);
  GError *error = NULL;
  g_assert_true (oft_clip_text_forward (m, ids, B, 0, out, hs, &error));

  /* fp32_vs_fp64_maxabs: last_hidden_state 1.2e-6, hidden_states 6.8e-7, pooler 8.0e-7 at |x| ~ 3;
   * 1e-5 relative to the scale is ~10× that */
  float *want = test_load (st, "text_last_hidden_state", NULL);
  test_assert_close ("text_last_hidden_state", out, want, (int64_t) B * T * H, 1e-5);
  g_free (want);
  want = test_load (st, "text_hidden_states", NULL);
  test_assert_close ("text_hidden_states", hs, want, (int64_t) (c->n_layers + 1) * B * T * H, 1e-5);
  g_free (want);

  /* the pooled output is the final state at the first EOS id */
  float *pooled = g_new (float, (size_t) B * H);
  for (int b = 0; b < B; b++)
    {
      int t = 0;
      while (t < T - 1 && ids[b * T + t] != 49407)
        t++;
      memcpy (pooled + b * H, out + ((size_t) b * T + t) * H, H * sizeof (float));
    }
  want = test_load (st, "text_pooler_output", NULL);
  test_assert_close ("text_pooler_output", pooled, want, (int64_t) B * H, 1e-5);
  g_free (want);

  /* clip skip 1 = the final LayerNorm of layer 1's output: must differ from clip skip 0, and equal
   * a second run's result bit for bit (the activation arena is rewound between calls) */
  float *skip = g_new (float, (size_t) B * T * H), *again = g_new (float, (size_t) B * T * H);
  g_assert_true (oft_clip_text_forward (m, ids, B, 1, skip, NULL, &error));
  g_assert_true (oft_clip_text_forward (m, ids, B, 0, again, NULL, &error));
  g_assert_cmpmem (again, (size_t) B * T * H * 4, out, (size_t) B * T * H * 4);
  g_assert_true (memcmp (skip, out, (size_t) B * T * H * 4) != 0);
  g_assert_false (oft_clip_text_forward (m, ids, B, 2, skip, NULL, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);
  ids[5] = 49408;
  g_assert_false (oft_clip_text_forward (m, ids, B, 0, skip, NULL, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_clear_error (&error);

  g_free (skip);
  g_free (again);
  g_free (pooled);
  g_free (ids);
  g_free (out);
  g_free (hs);
  oft_safetensors_close (st);
  oft_clip_text_free (m);
}

static void
test_missing_folder (void)
{
  GError *error = NULL;
  g_assert_null (oft_clip_text_load ("/nonexistent/text_encoder", &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "/nonexistent/text_encoder/config.json"));
  g_error_free (error);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/clip/golden/forward", test_golden_forward);
  g_test_add_func ("/clip/missing-folder", test_missing_folder);
  return g_test_run ();
}
