/* CLIP's byte-level BPE tokenizer, identical to transformers' CLIPTokenizer without ftfy:
 * text cleanup (control characters dropped, whitespace normalised, spaces around CJK ideographs, NFC,
 * lower case), CLIP's split regex, byte-level BPE with "</w>" word ends, literal special tokens. */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define OFT_CLIP_MAX_LENGTH 77

typedef struct _OftTokenizer OftTokenizer;

/* vocab.json (token → id) and merges.txt (first line "#version", then "a b" pairs by rank). */
OftTokenizer *oft_tokenizer_load (const char *vocab_json, const char *merges_txt, GError **error);
/* A diffusers tokenizer/ folder holding vocab.json and merges.txt. */
OftTokenizer *oft_tokenizer_load_dir (const char *dir, GError **error);
void          oft_tokenizer_free (OftTokenizer *tok);

int32_t oft_tokenizer_bos (const OftTokenizer *tok);
int32_t oft_tokenizer_eos (const OftTokenizer *tok);
/* The token string of an id (NULL when out of range). */
const char *oft_tokenizer_token (const OftTokenizer *tok, int32_t id);

/* Ids of `text` without BOS/EOS or padding (literal special tokens in the text included). */
GArray *oft_tokenizer_encode (const OftTokenizer *tok, const char *text);
/* BOS + up to max_len−2 ids + EOS, padded with EOS to max_len; returns the untruncated length
 * (with BOS and EOS), so a caller can tell the user that the prompt was cut. */
int oft_tokenizer_encode_padded (const OftTokenizer *tok, const char *text, int32_t *ids, int max_len);

G_END_DECLS
