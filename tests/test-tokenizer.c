/* CLIP tokenizer against transformers' CLIPTokenizer on the golden prompts (pipeline/tokens.json). */
#include "test-common.h"
#include <string.h>
#include <json-glib/json-glib.h>

static OftTokenizer *
load_golden_tokenizer (void)
{
  char *dir = test_golden_path ("pipeline/tokenizer");
  GError *error = NULL;
  OftTokenizer *tok = oft_tokenizer_load_dir (dir, &error);
  g_assert_no_error (error);
  g_free (dir);
  return tok;
}

static void
test_golden_prompt (gconstpointer data)
{
  int index = GPOINTER_TO_INT (data);
  char *path = test_golden_path ("pipeline/tokens.json");
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  json_parser_load_from_file (parser, path, &error);
  g_assert_no_error (error);
  JsonArray *entries = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "entries");
  JsonObject *e = json_array_get_object_element (entries, (guint) index);
  const char *prompt = json_object_get_string_member (e, "prompt");
  OftTokenizer *tok = load_golden_tokenizer ();

  /* untruncated ids (with BOS and EOS) and their BPE strings */
  GArray *ids = oft_tokenizer_encode (tok, prompt);
  JsonArray *want = json_object_get_array_member (e, "ids_untruncated");
  JsonArray *want_tokens = json_object_get_array_member (e, "tokens");
  g_assert_cmpuint (ids->len + 2, ==, json_array_get_length (want));
  for (guint i = 0; i < ids->len; i++)
    {
      int32_t id = g_array_index (ids, int32_t, i);
      g_assert_cmpint (id, ==, json_array_get_int_element (want, i + 1));
      if (i + 1 < json_array_get_length (want_tokens))
        g_assert_cmpstr (oft_tokenizer_token (tok, id), ==, json_array_get_string_element (want_tokens, i + 1));
    }

  /* the padded/truncated 77 ids the text encoder sees */
  int32_t padded[OFT_CLIP_MAX_LENGTH];
  int n = oft_tokenizer_encode_padded (tok, prompt, padded, OFT_CLIP_MAX_LENGTH);
  g_assert_cmpint (n, ==, json_object_get_int_member (e, "n_tokens_untruncated"));
  JsonArray *want_padded = json_object_get_array_member (e, "input_ids");
  for (int i = 0; i < OFT_CLIP_MAX_LENGTH; i++)
    g_assert_cmpint (padded[i], ==, json_array_get_int_element (want_padded, (guint) i));
  g_assert_cmpint (n > OFT_CLIP_MAX_LENGTH, ==, json_object_get_boolean_member (e, "truncated"));

  g_array_free (ids, TRUE);
  oft_tokenizer_free (tok);
  g_object_unref (parser);
  g_free (path);
}

static void
test_missing_files (void)
{
  GError *error = NULL;
  OftTokenizer *tok = oft_tokenizer_load_dir ("/nonexistent/tokenizer", &error);
  g_assert_null (tok);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "/nonexistent/tokenizer/vocab.json"));
  g_error_free (error);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  char *path = test_golden_path ("pipeline/tokens.json");
  JsonParser *parser = json_parser_new ();
  if (json_parser_load_from_file (parser, path, NULL))
    {
      JsonArray *entries = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "entries");
      for (guint i = 0; i < json_array_get_length (entries); i++)
        {
          char *name = g_strdup_printf ("/tokenizer/golden/prompt-%02u", i);
          g_test_add_data_func (name, GINT_TO_POINTER (i), test_golden_prompt);
          g_free (name);
        }
    }
  else
    g_test_add_data_func ("/tokenizer/golden/load", GINT_TO_POINTER (0), test_golden_prompt);
  g_object_unref (parser);
  g_free (path);
  g_test_add_func ("/tokenizer/missing-files", test_missing_files);
  return g_test_run ();
}
