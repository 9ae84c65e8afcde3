/* CLIP BPE tokenizer. Follows transformers' CLIPTokenizer when ftfy is absent (the golden data was
 * made that way): BasicTokenizer(strip_accents=False, do_split_on_punc=False) cleanup, then
 * OpenAI's split pattern and byte-level BPE. */
#include "oft/tokenizer.h"
#include "oft/error.h"
#include <json-glib/json-glib.h>
#include <string.h>

#define BOS_TEXT "<|startoftext|>"
#define EOS_TEXT "<|endoftext|>"

struct _OftTokenizer {
  GHashTable *vocab;       /* token → id (GINT_TO_POINTER(id + 1)) */
  char **id_to_token;      /* borrowed keys of vocab */
  int32_t n_ids;
  GHashTable *ranks;       /* "a b" → rank + 1 */
  char byte_char[256][4];  /* GPT-2's reversible byte → printable character, UTF-8 */
  GRegex *split;
  int32_t bos, eos;
};

/* GPT-2/CLIP bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 upwards. */
static void
init_byte_chars (OftTokenizer *tok)
{
  int n = 0;
  for (int b = 0; b < 256; b++)
    {
      gboolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      gunichar c = printable ? (gunichar) b : (gunichar) (256 + n++);
      int len = g_unichar_to_utf8 (c, tok->byte_char[b]);
      tok->byte_char[b][len] = '\0';
    }
}

static gboolean
load_vocab (OftTokenizer *tok, const char *path, GError **error)
{
  JsonParser *parser = json_parser_new ();
  gboolean ok = FALSE;
  if (!json_parser_load_from_mapped_file (parser, path, error))
    {
      g_prefix_error (error, "%s: ", path); /* json-glib's message does not name the file */
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: expected a JSON object token → id", path);
      goto out;
    }
  JsonObject *o = json_node_get_object (root);
  GList *members = json_object_get_members (o);
  int32_t max_id = -1;
  ok = TRUE;
  for (GList *l = members; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (o, l->data);
      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_INT64 ||
          json_node_get_int (v) < 0 || json_node_get_int (v) >= (1 << 24))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: id of token '%s' is not an integer in [0, 2^24)",
                       path, (const char *) l->data);
          ok = FALSE;
          break;
        }
      int32_t id = (int32_t) json_node_get_int (v);
      g_hash_table_insert (tok->vocab, g_strdup (l->data), GINT_TO_POINTER (id + 1));
      max_id = MAX (max_id, id);
    }
  g_list_free (members);
  if (!ok)
    goto out;
  tok->n_ids = max_id + 1;
  tok->id_to_token = g_new0 (char *, tok->n_ids + 1);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, tok->vocab);
  while (g_hash_table_iter_next (&it, &k, &v))
    tok->id_to_token[GPOINTER_TO_INT (v) - 1] = k;
out:
  g_object_unref (parser);
  return ok;
}

static gboolean
load_merges (OftTokenizer *tok, const char *path, GError **error)
{
  char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &text, &len, error))
    return FALSE;
  int rank = 0;
  gboolean ok = TRUE;
  /* a line walk rather than g_strsplit, whose strstr per line is quadratic under ASan's interceptor */
  char *next = text, *end = text + len;
  for (int i = 0; next < end; i++)
    {
      char *nl = memchr (next, '\n', (size_t) (end - next));
      if (nl)
        *nl = 0;
      char *line = g_strchomp (next);
      next = nl ? nl + 1 : end;
      if (i == 0 && g_str_has_prefix (line, "#version"))
        continue;
      if (!*line)
        continue;
      char *space = strchr (line, ' ');
      if (!space || space == line || !space[1] || strchr (space + 1, ' '))
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: line %d is not a merge pair \"a b\"", path, i + 1);
          ok = FALSE;
          break;
        }
      g_hash_table_insert (tok->ranks, g_strdup (line), GINT_TO_POINTER (++rank));
    }
  g_free (text);
  return ok;
}

OftTokenizer *
oft_tokenizer_load (const char *vocab_json, const char *merges_txt, GError **error)
{
  OftTokenizer *tok = g_new0 (OftTokenizer, 1);
  tok->vocab = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  tok->ranks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  init_byte_chars (tok);
  if (!load_vocab (tok, vocab_json, error) || !load_merges (tok, merges_txt, error))
    goto err;
  gpointer bos = g_hash_table_lookup (tok->vocab, BOS_TEXT), eos = g_hash_table_lookup (tok->vocab, EOS_TEXT);
  if (!bos || !eos)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no %s or %s token", vocab_json, BOS_TEXT, EOS_TEXT);
      goto err;
    }
  tok->bos = GPOINTER_TO_INT (bos) - 1;
  tok->eos = GPOINTER_TO_INT (eos) - 1;
  /* OpenAI's pattern (special tokens are split off before, so they are not needed here). */
  tok->split = g_regex_new ("'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
                            G_REGEX_CASELESS | G_REGEX_OPTIMIZE, 0, error);
  if (!tok->split)
    goto err;
  return tok;
err:
  oft_tokenizer_free (tok);
  return NULL;
}

OftTokenizer *
oft_tokenizer_load_dir (const char *dir, GError **error)
{
  char *vocab = g_build_filename (dir, "vocab.json", NULL), *merges = g_build_filename (dir, "merges.txt", NULL);
  OftTokenizer *tok = oft_tokenizer_load (vocab, merges, error);
  g_free (vocab);
  g_free (merges);
  return tok;
}

void
oft_tokenizer_free (OftTokenizer *tok)
{
  if (!tok)
    return;
  g_hash_table_destroy (tok->vocab);
  g_hash_table_destroy (tok->ranks);
  g_free (tok->id_to_token);
  if (tok->split)
    g_regex_unref (tok->split);
  g_free (tok);
}

int32_t oft_tokenizer_bos (const OftTokenizer *tok) { return tok->bos; }
int32_t oft_tokenizer_eos (const OftTokenizer *tok) { return tok->eos; }

const char *
oft_tokenizer_token (const OftTokenizer *tok, int32_t id)
{
  return id >= 0 && id < tok->n_ids ? tok->id_to_token[id] : NULL;
}

/* transformers' BasicTokenizer categories: \t \n \r count as whitespace, not control. */
static gboolean
is_whitespace (gunichar c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || g_unichar_type (c) == G_UNICODE_SPACE_SEPARATOR;
}

static gboolean
is_control (gunichar c)
{
  if (c == '\t' || c == '\n' || c == '\r')
    return FALSE;
  switch (g_unichar_type (c))
    {
    case G_UNICODE_CONTROL: case G_UNICODE_FORMAT: case G_UNICODE_UNASSIGNED:
    case G_UNICODE_PRIVATE_USE: case G_UNICODE_SURROGATE:
      return TRUE;
    default:
      return FALSE;
    }
}

static gboolean
is_cjk (gunichar c)
{
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* BasicTokenizer.tokenize joined by single spaces: clean, CJK spacing, NFC, split, lower-case. */
static char *
basic_clean (const char *text)
{
  GString *s = g_string_new (NULL);
  for (const char *p = text; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c == 0 || c == 0xFFFD || is_control (c))
        continue;
      if (is_whitespace (c))
        g_string_append_c (s, ' ');
      else if (is_cjk (c))
        {
          g_string_append_c (s, ' ');
          g_string_append_unichar (s, c);
          g_string_append_c (s, ' ');
        }
      else
        g_string_append_unichar (s, c);
    }
  char *nfc = g_utf8_normalize (s->str, -1, G_NORMALIZE_NFC);
  g_string_free (s, TRUE);
  char **words = g_strsplit_set (nfc ? nfc : "", " \t\n\r", -1);
  g_free (nfc);
  GString *out = g_string_new (NULL);
  for (int i = 0; words[i]; i++)
    {
      if (!*words[i])
        continue;
      char *lower = g_utf8_strdown (words[i], -1);
      if (out->len)
        g_string_append_c (out, ' ');
      g_string_append (out, lower);
      g_free (lower);
    }
  g_strfreev (words);
  return g_string_free (out, FALSE);
}

static int
pair_rank (const OftTokenizer *tok, const char *a, const char *b)
{
  char *key = g_strconcat (a, " ", b, NULL);
  int r = GPOINTER_TO_INT (g_hash_table_lookup (tok->ranks, key));
  g_free (key);
  return r ? r : G_MAXINT;
}

/* Byte-level BPE of one pre-token: symbols start as the mapped bytes, the last one with "</w>";
 * the lowest-ranked adjacent pair is merged everywhere, left to right, until none is ranked. */
static void
bpe_word (const OftTokenizer *tok, const char *piece, gsize len, GArray *ids)
{
  GPtrArray *sym = g_ptr_array_new_with_free_func (g_free);
  for (gsize i = 0; i < len; i++)
    {
      const char *c = tok->byte_char[(guchar) piece[i]];
      g_ptr_array_add (sym, i + 1 == len ? g_strconcat (c, "</w>", NULL) : g_strdup (c));
    }
  while (sym->len > 1)
    {
      int best = G_MAXINT;
      guint at = 0;
      for (guint i = 0; i + 1 < sym->len; i++)
        {
          int r = pair_rank (tok, sym->pdata[i], sym->pdata[i + 1]);
          if (r < best)
            best = r, at = i;
        }
      if (best == G_MAXINT)
        break;
      char *first = g_strdup (sym->pdata[at]), *second = g_strdup (sym->pdata[at + 1]);
      GPtrArray *next = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < sym->len;)
        {
          if (i + 1 < sym->len && strcmp (sym->pdata[i], first) == 0 && strcmp (sym->pdata[i + 1], second) == 0)
            {
              g_ptr_array_add (next, g_strconcat (first, second, NULL));
              i += 2;
            }
          else
            g_ptr_array_add (next, g_strdup (sym->pdata[i++]));
        }
      g_free (first);
      g_free (second);
      g_ptr_array_unref (sym);
      sym = next;
    }
  for (guint i = 0; i < sym->len; i++)
    {
      gpointer v = g_hash_table_lookup (tok->vocab, sym->pdata[i]);
      int32_t id = v ? GPOINTER_TO_INT (v) - 1 : tok->eos; /* unk = <|endoftext|> for CLIP */
      g_array_append_val (ids, id);
    }
  g_ptr_array_unref (sym);
}

static void
encode_plain (const OftTokenizer *tok, const char *text, gsize len, GArray *ids)
{
  char *chunk = g_strndup (text, len);
  char *clean = basic_clean (chunk);
  g_free (chunk);
  GMatchInfo *m = NULL;
  g_regex_match (tok->split, clean, 0, &m);
  while (g_match_info_matches (m))
    {
      int start, end;
      g_match_info_fetch_pos (m, 0, &start, &end);
      if (end > start)
        bpe_word (tok, clean + start, (gsize) (end - start), ids);
      g_match_info_next (m, NULL);
    }
  g_match_info_free (m);
  g_free (clean);
}

GArray *
oft_tokenizer_encode (const OftTokenizer *tok, const char *text)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  if (!text || !g_utf8_validate (text, -1, NULL))
    return ids;
  /* Literal special tokens are matched in the raw text first, as transformers' added-token split does. */
  const char *p = text;
  for (;;)
    {
      const char *s = strstr (p, BOS_TEXT), *e = strstr (p, EOS_TEXT);
      const char *hit = s && (!e || s < e) ? s : e;
      if (!hit)
        break;
      encode_plain (tok, p, (gsize) (hit - p), ids);
      int32_t id = hit == s ? tok->bos : tok->eos;
      g_array_append_val (ids, id);
      p = hit + (hit == s ? strlen (BOS_TEXT) : strlen (EOS_TEXT));
    }
  encode_plain (tok, p, strlen (p), ids);
  return ids;
}

int
oft_tokenizer_encode_padded (const OftTokenizer *tok, const char *text, int32_t *ids, int max_len)
{
  GArray *a = oft_tokenizer_encode (tok, text);
  int body = MIN ((int) a->len, max_len - 2), n = 0;
  ids[n++] = tok->bos;
  for (int i = 0; i < body; i++)
    ids[n++] = g_array_index (a, int32_t, i);
  while (n < max_len)
    ids[n++] = tok->eos;
  int untruncated = (int) a->len + 2;
  g_array_free (a, TRUE);
  return untruncated;
}
