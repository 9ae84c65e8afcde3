/* The CLIP tokenizer: vocab.json, merges.txt and a prompt (three parts split at FUZZ_SEP), loaded and
 * the prompt encoded, plain and padded. */
#include "fuzz-common.h"
#include "oft/oft.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const uint8_t *part[3];
  size_t len[3];
  fuzz_split (data, size, part, len, 3);
  const char *vocab = fuzz_write ("vocab.json", part[0], len[0]);
  const char *merges = fuzz_write ("merges.txt", part[1], len[1]);
  GError *error = NULL;
  OftTokenizer *tok = oft_tokenizer_load (vocab, merges, &error);
  if (!tok)
    {
      fuzz_clear (&error);
      return 0;
    }
  /* prompts come from the user as UTF-8 (GTK entries, argv after validation) */
  char *text = g_utf8_make_valid ((const char *) part[2], (gssize) len[2]);
  GArray *ids = oft_tokenizer_encode (tok, text);
  if (ids)
    g_array_unref (ids);
  int32_t padded[77];
  oft_tokenizer_encode_padded (tok, text, padded, 77);
  g_free (text);
  oft_tokenizer_free (tok);
  return 0;
}
