/* oft tokenize: the 77 CLIP ids of each text, as a JSON array of arrays. */
#include "oft-cli.h"
#include <stdio.h>

int
cmd_tokenize (int argc, char **argv)
{
  char *model = NULL;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Pipeline folder (its tokenizer/ is used) or a tokenizer folder", "PATH" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("TEXT... - print CLIP token ids as JSON");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  OftTokenizer *tok = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (!model || argc < 2)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--model and at least one TEXT are required");
      goto out;
    }
  char *sub = g_build_filename (model, "tokenizer", NULL);
  tok = oft_tokenizer_load_dir (g_file_test (sub, G_FILE_TEST_IS_DIR) ? sub : model, &error);
  g_free (sub);
  if (!tok)
    goto out;
  for (int i = 1; i < argc; i++)
    if (!g_utf8_validate (argv[i], -1, NULL))
      {
        g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "TEXT %d is not valid UTF-8", i);
        goto out;
      }
  printf ("[");
  for (int i = 1; i < argc; i++)
    {
      int32_t ids[OFT_CLIP_MAX_LENGTH];
      oft_tokenizer_encode_padded (tok, argv[i], ids, OFT_CLIP_MAX_LENGTH);
      printf ("%s[", i > 1 ? ",\n " : "");
      for (int j = 0; j < OFT_CLIP_MAX_LENGTH; j++)
        printf ("%s%d", j ? ", " : "", ids[j]);
      printf ("]");
    }
  printf ("]\n");
  rc = 0;
out:
  if (rc)
    cli_fail ("tokenize", error);
  g_clear_error (&error);
  oft_tokenizer_free (tok);
  g_free (model);
  g_option_context_free (ctx);
  return rc;
}
