/* safetensors reader and writer: golden files, round trips and bad input. */
#include "test-common.h"
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

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

/* ---- writer ---- */

/* Reads every tensor of a golden file (written by the safetensors library) and writes them again:
 * the bytes must be identical, header order, padding and metadata included. */
static void
check_rewrite_identical (const char *relative, const char *tmpdir)
{
  OftSafetensors *st = test_open_golden (relative);
  size_t n = oft_safetensors_count (st);
  const char **names = g_new (const char *, n);
  OftTensor *ts = g_new (OftTensor, n);
  for (size_t i = 0; i < n; i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      names[i] = e->name;
      ts[i] = oft_safetensors_view (e);
    }
  /* hand the tensors over in reverse order: the writer must sort them itself */
  for (size_t i = 0; i < n / 2; i++)
    {
      const char *tn = names[i]; names[i] = names[n - 1 - i]; names[n - 1 - i] = tn;
      OftTensor tt = ts[i]; ts[i] = ts[n - 1 - i]; ts[n - 1 - i] = tt;
    }
  char *out = g_build_filename (tmpdir, "rewrite.safetensors", NULL);
  GError *error = NULL;
  g_assert_true (oft_safetensors_write (out, n, names, ts, oft_safetensors_metadata (st), &error));
  g_assert_no_error (error);
  char *want, *got;
  gsize wlen, glen;
  char *gpath = test_golden_path (relative);
  g_assert_true (g_file_get_contents (gpath, &want, &wlen, NULL));
  g_assert_true (g_file_get_contents (out, &got, &glen, NULL));
  g_assert_cmpuint (glen, ==, wlen);
  g_assert_true (memcmp (got, want, wlen) == 0);
  g_free (want);
  g_free (got);
  g_free (gpath);
  g_unlink (out);
  g_free (out);
  g_free (names);
  g_free (ts);
  oft_safetensors_close (st);
}

static void
test_write_golden_bytes (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  check_rewrite_identical ("oft_layers/oft_linear/adapter/adapter_model.safetensors", dir);   /* metadata */
  check_rewrite_identical ("oft_layers/boft_linear/adapter/adapter_model.safetensors", dir);
  check_rewrite_identical ("oft_layers/oft_conv3x3/tensors.safetensors", dir);
  check_rewrite_identical ("unet_oft/adapter/adapter_model.safetensors", dir);                /* 128 tensors */
  check_rewrite_identical ("pipeline/reference.safetensors", dir);                            /* I64 + F32 */
  g_rmdir (dir);
  g_free (dir);
}

static void
fill_bytes (void *p, size_t n, guint32 seed)
{
  GRand *r = g_rand_new_with_seed (seed);
  for (size_t i = 0; i < n; i++)
    ((uint8_t *) p)[i] = (uint8_t) g_rand_int (r);
  g_rand_free (r);
}

static void
test_write_roundtrip_dtypes (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  char *path = g_build_filename (dir, "all.safetensors", NULL);
  /* f32 specials: quiet and signalling NaN payloads, smallest/largest denormal, -0, ±inf */
  uint32_t f32[] = { 0x7fc00001u, 0xffbfffffu, 0x7f800001u, 0x00000001u, 0x807fffffu, 0x80000000u,
                     0x7f800000u, 0xff800000u, 0x3f800000u, 0x00800000u };
  uint16_t f16[37], bf16[37];
  int32_t i32[] = { G_MININT32, -1, 0, 1, G_MAXINT32, 12345 };
  int64_t i64[] = { G_MININT64, -1, 0, G_MAXINT64, 901 };
  fill_bytes (f16, sizeof f16, 1);
  fill_bytes (bf16, sizeof bf16, 2);
  f16[0] = 0x7e01; /* NaN with a payload */
  bf16[0] = 0xff81;
  float one = 2.5f;
  OftTensor ts[] = {
    { OFT_DTYPE_F32, 2, { 2, 5 }, f32 },
    { OFT_DTYPE_F16, 1, { 37 }, f16 },
    { OFT_DTYPE_BF16, 3, { 37, 1, 1 }, bf16 },
    { OFT_DTYPE_I32, 2, { 3, 2 }, i32 },
    { OFT_DTYPE_I64, 1, { 5 }, i64 },
    { OFT_DTYPE_F32, 0, { 0 }, &one },          /* a scalar */
    { OFT_DTYPE_F16, 2, { 0, 4 }, NULL },       /* empty */
  };
  const char *names[] = { "w.f32", "h.f16", "b.bf16", "i.i32", "l.i64", "scalar", "empty \"q\" ünï" };
  GHashTable *md = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (md, "format", "pt");
  g_hash_table_insert (md, "note", "tab\there, quote \" and ✓");
  GError *error = NULL;
  g_assert_true (oft_safetensors_write (path, G_N_ELEMENTS (ts), names, ts, md, &error));
  g_assert_no_error (error);

  OftSafetensors *st = oft_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (oft_safetensors_count (st), ==, G_N_ELEMENTS (ts));
  for (size_t i = 0; i < G_N_ELEMENTS (ts); i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_find (st, names[i]);
      g_assert_nonnull (e);
      g_assert_cmpint (e->dtype, ==, ts[i].dtype);
      g_assert_true (oft_tensor_shape_equals (&ts[i], e->ndim, e->shape));
      size_t nb = oft_tensor_nbytes (&ts[i]);
      g_assert_cmpuint (e->end - e->begin, ==, nb);
      g_assert_true (nb == 0 || memcmp (e->data, ts[i].data, nb) == 0);
      g_assert_cmpuint ((uintptr_t) e->data % oft_dtype_size (e->dtype), ==, 0); /* aligned, like the library */
    }
  /* offsets are consecutive from 0: I64 first, then F32, I32, BF16, F16 */
  g_assert_cmpint (oft_safetensors_entry (st, 0)->dtype, ==, OFT_DTYPE_I64);
  uint64_t end = 0;
  for (size_t i = 0; i < oft_safetensors_count (st); i++)
    {
      g_assert_cmpuint (oft_safetensors_entry (st, i)->begin, ==, end);
      end = oft_safetensors_entry (st, i)->end;
    }
  GHashTable *got = oft_safetensors_metadata (st);
  g_assert_nonnull (got);
  g_assert_cmpuint (g_hash_table_size (got), ==, 2);
  g_assert_cmpstr (g_hash_table_lookup (got, "note"), ==, "tab\there, quote \" and ✓");
  g_assert_cmpstr (g_hash_table_lookup (got, "format"), ==, "pt");
  oft_safetensors_close (st);

  /* header length is a multiple of 8 and padded with spaces */
  char *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | (uint8_t) bytes[i];
  g_assert_cmpuint (hlen % 8, ==, 0);
  g_assert_true (bytes[8 + hlen - 1] == '}' || bytes[8 + hlen - 1] == ' ');
  g_assert_true (g_str_has_prefix (bytes + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":"));
  g_free (bytes);

  g_hash_table_destroy (md);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

static void
test_write_bad_names (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  char *path = g_build_filename (dir, "bad.safetensors", NULL);
  float x[2] = { 1, 2 };
  OftTensor ts[2] = { { OFT_DTYPE_F32, 1, { 2 }, x }, { OFT_DTYPE_F32, 1, { 2 }, x } };
  const char *cases[][2] = {
    { "ok", "bad\xff\xfe" },   /* not UTF-8 */
    { "same", "same" },        /* duplicate */
    { "ok", "__metadata__" },  /* reserved */
  };
  const char *expect[] = { "UTF-8", "twice", "reserved" };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      GError *error = NULL;
      g_assert_false (oft_safetensors_write (path, 2, cases[c], ts, NULL, &error));
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, path));
      g_assert_nonnull (strstr (error->message, expect[c]));
      g_error_free (error);
      g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
    }
  /* a bad dtype and a negative dim */
  OftTensor bad[2] = { { (OftDType) 99, 1, { 2 }, x }, { OFT_DTYPE_F32, 1, { -2 }, x } };
  for (int c = 0; c < 2; c++)
    {
      GError *error = NULL;
      const char *one[] = { "t" };
      g_assert_false (oft_safetensors_write (path, 1, one, &bad[c], NULL, &error));
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_INVALID);
      g_error_free (error);
    }
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

static guint
count_entries (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  guint n = 0;
  while (g_dir_read_name (d))
    n++;
  g_dir_close (d);
  return n;
}

static void
test_write_atomic (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  char *path = g_build_filename (dir, "keep.safetensors", NULL);
  float small[4] = { 1, 2, 3, 4 };
  OftTensor t = { OFT_DTYPE_F32, 1, { 4 }, small };
  const char *names[] = { "t" };
  GError *error = NULL;
  g_assert_true (oft_safetensors_write (path, 1, names, &t, NULL, &error));
  g_assert_no_error (error);
  char *before;
  gsize before_len;
  g_assert_true (g_file_get_contents (path, &before, &before_len, NULL));

  /* 1. a write that fails half-way (file size limit: EFBIG; this works as root too, unlike chmod) */
  size_t big_n = 1 << 18;
  float *big = g_new0 (float, big_n);
  OftTensor bt = { OFT_DTYPE_F32, 1, { (int64_t) big_n }, big };
  struct rlimit old, lim;
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  lim = old;
  lim.rlim_cur = 64 * 1024;
  void (*prev) (int) = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lim), ==, 0);
  gboolean ok = oft_safetensors_write (path, 1, names, &bt, NULL, &error);
  setrlimit (RLIMIT_FSIZE, &old);
  signal (SIGXFSZ, prev);
  g_assert_false (ok);
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, path));
  g_test_message ("failed write: %s", error->message);
  g_clear_error (&error);
  char *after;
  gsize after_len;
  g_assert_true (g_file_get_contents (path, &after, &after_len, NULL));
  g_assert_cmpuint (after_len, ==, before_len);
  g_assert_true (memcmp (before, after, before_len) == 0);
  g_free (after);
  g_assert_cmpuint (count_entries (dir), ==, 1); /* no temporary file left behind */

  /* 2. the rename fails: the target is a (non-empty) folder, which must survive untouched */
  char *sub = g_build_filename (dir, "folder.safetensors", NULL);
  char *inner = g_build_filename (sub, "x", NULL);
  g_assert_cmpint (g_mkdir (sub, 0755), ==, 0);
  g_assert_true (g_file_set_contents (inner, "x", 1, NULL));
  g_assert_false (oft_file_write_atomic (sub, "abc", 3, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, sub));
  g_clear_error (&error);
  g_assert_true (g_file_test (inner, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpuint (count_entries (dir), ==, 2);

  /* 3. the folder does not exist */
  char *nowhere = g_build_filename (dir, "no", "such", "dir", "f.safetensors", NULL);
  g_assert_false (oft_safetensors_write (nowhere, 1, names, &t, NULL, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, nowhere));
  g_clear_error (&error);

  /* 4. a successful replace keeps the file's permissions */
  g_assert_cmpint (g_chmod (path, 0640), ==, 0);
  g_assert_true (oft_file_write_atomic (path, "hello", 5, &error));
  g_assert_no_error (error);
  GStatBuf sb;
  g_assert_cmpint (g_stat (path, &sb), ==, 0);
  g_assert_cmpint (sb.st_mode & 0777, ==, 0640);
  g_assert_cmpint (sb.st_size, ==, 5);
  g_assert_cmpuint (count_entries (dir), ==, 2);

  g_unlink (inner);
  g_rmdir (sub);
  g_unlink (path);
  g_rmdir (dir);
  g_free (nowhere);
  g_free (inner);
  g_free (sub);
  g_free (before);
  g_free (big);
  g_free (path);
  g_free (dir);
}

/* ---- reader: bad input ---- */

/* A file of: u64-LE `hlen` (the header's own length when hlen < 0), the header, `data_len` bytes. */
static char *
make_file (const char *dir, const char *name, int64_t hlen, const char *header, size_t data_len)
{
  size_t h = strlen (header);
  uint64_t n = hlen < 0 ? h : (uint64_t) hlen;
  GByteArray *b = g_byte_array_new ();
  for (int i = 0; i < 8; i++)
    {
      uint8_t c = (uint8_t) (n >> (8 * i));
      g_byte_array_append (b, &c, 1);
    }
  g_byte_array_append (b, (const guint8 *) header, (guint) h);
  for (size_t i = 0; i < data_len; i++)
    {
      uint8_t c = (uint8_t) i;
      g_byte_array_append (b, &c, 1);
    }
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, (const char *) b->data, b->len, NULL));
  g_byte_array_free (b, TRUE);
  return path;
}

typedef struct {
  const char *name;
  int64_t hlen;        /* -1: the header's length */
  const char *header;
  size_t data_len;
  int code;
  const char *says;    /* a word the message must contain */
} BadCase;

static void
test_read_bad_input (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  const BadCase cases[] = {
    { "truncated-data", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}", 32,
      OFT_ERROR_CORRUPT, "truncated" },
    { "header-past-eof", 1000, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      OFT_ERROR_CORRUPT, "past the end" },
    { "header-too-large", 200000000, "{}", 0, OFT_ERROR_CORRUPT, "limit" },
    { "not-json", -1, "{\"a\": {\"dtype\": \"F32\",", 0, OFT_ERROR_CORRUPT, "JSON" },
    { "not-object", -1, "[1, 2, 3]", 0, OFT_ERROR_CORRUPT, "object" },
    { "entry-not-object", -1, "{\"a\": 1}", 0, OFT_ERROR_CORRUPT, "'a'" },
    { "overlap", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24,
      OFT_ERROR_CORRUPT, "overlap" },
    { "offsets-reversed", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
      OFT_ERROR_CORRUPT, "end before" },
    { "offsets-out-of-range", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[96,104]}}", 16,
      OFT_ERROR_CORRUPT, "outside" },
    { "offsets-negative", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 16,
      OFT_ERROR_CORRUPT, "'a'" },
    { "byte-count", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
      OFT_ERROR_CORRUPT, "byte count" },
    { "dtype-f64", -1, "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
      OFT_ERROR_DTYPE, "F64" },
    { "dtype-q4", -1, "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 16,
      OFT_ERROR_DTYPE, "Q4" },
    { "shape-negative", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16,
      OFT_ERROR_CORRUPT, "shape[0]" },
    { "shape-fraction", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 16,
      OFT_ERROR_CORRUPT, "shape[1]" },
    { "shape-overflow", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                            "\"data_offsets\":[0,16]}}", 16, OFT_ERROR_CORRUPT, "'a'" },
    { "name-not-utf8", -1, "{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      OFT_ERROR_CORRUPT, "UTF-8" },
    { "name-lone-surrogate", -1, "{\"a\\udc80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      OFT_ERROR_CORRUPT, "JSON" },
    { "too-many-dims", -1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
      OFT_ERROR_SHAPE, "dimensions" },
    { "metadata-not-string", -1, "{\"__metadata__\":{\"k\":1}}", 0, OFT_ERROR_CORRUPT, "__metadata__" },
  };
  for (size_t c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const BadCase *bc = &cases[c];
      char *path = make_file (dir, bc->name, bc->hlen, bc->header, bc->data_len);
      GError *error = NULL;
      OftSafetensors *st = oft_safetensors_open (path, &error);
      if (st || !error || error->domain != OFT_IO_ERROR || error->code != bc->code ||
          !strstr (error->message, path) || !strstr (error->message, bc->says))
        g_test_fail_printf ("case %s: expected code %d with \"%s\" and the path, got %s (code %d)", bc->name,
                            bc->code, bc->says, error ? error->message : "success", error ? error->code : -1);
      else
        g_test_message ("%-22s %s", bc->name, error->message);
      g_clear_error (&error);
      oft_safetensors_close (st);
      g_unlink (path);
      g_free (path);
    }

  /* missing, empty and short files */
  const struct { const char *name; const char *bytes; gssize len; int code; } raw[] = {
    { "missing", NULL, 0, OFT_ERROR_NOT_FOUND },
    { "empty", "", 0, OFT_ERROR_CORRUPT },
    { "short", "\x08\x00\x00\x00\x00", 5, OFT_ERROR_CORRUPT },
  };
  for (size_t c = 0; c < G_N_ELEMENTS (raw); c++)
    {
      char *path = g_build_filename (dir, raw[c].name, NULL);
      if (raw[c].bytes)
        g_assert_true (g_file_set_contents (path, raw[c].bytes, raw[c].len, NULL));
      GError *error = NULL;
      g_assert_null (oft_safetensors_open (path, &error));
      g_assert_error (error, OFT_IO_ERROR, raw[c].code);
      g_assert_nonnull (strstr (error->message, path));
      g_error_free (error);
      g_unlink (path);
      g_free (path);
    }
  g_rmdir (dir);
  g_free (dir);
}

/* A tensor at an odd offset (allowed by the format, never written by the library) still converts. */
static void
test_read_misaligned (void)
{
  char *dir = g_dir_make_tmp ("oft-st-XXXXXX", NULL);
  uint8_t data[9 + 8];
  data[0] = 7;
  float v[2] = { 1.5f, -3.25f };
  uint16_t h[4] = { 0x3c00, 0xc000, 0x0001, 0x7bff }; /* 1, -2, smallest denormal, 65504 */
  memcpy (data + 1, v, 8);
  memcpy (data + 9, h, 8);
  char *hdr = "{\"pad\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]},"
              "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[9,17]}}";
  char *path = make_file (dir, "odd.safetensors", -1, hdr, 0);
  FILE *f = fopen (path, "ab");
  g_assert_cmpuint (fwrite (data, 1, sizeof data, f), ==, sizeof data);
  fclose (f);
  GError *error = NULL;
  OftSafetensors *st = oft_safetensors_open (path, &error);
  g_assert_no_error (error);
  float got[4];
  g_assert_true (oft_safetensors_read_f32 (st, "v", got, 1, (int64_t[]) { 2 }, &error));
  g_assert_cmpfloat (got[0], ==, 1.5f);
  g_assert_cmpfloat (got[1], ==, -3.25f);
  g_assert_true (oft_safetensors_read_f32 (st, "h", got, -1, NULL, &error));
  g_assert_cmpfloat (got[0], ==, 1.0f);
  g_assert_cmpfloat (got[1], ==, -2.0f);
  g_assert_cmpfloat (got[2], ==, 0x1p-24f);
  g_assert_cmpfloat (got[3], ==, 65504.0f);
  /* a wrong expected shape is refused with both shapes named */
  g_assert_false (oft_safetensors_read_f32 (st, "v", got, 1, (int64_t[]) { 3 }, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_SHAPE);
  g_assert_nonnull (strstr (error->message, "[2]"));
  g_clear_error (&error);
  oft_safetensors_close (st);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/safetensors/read/golden-adapter", test_read_golden_adapter);
  g_test_add_func ("/safetensors/read/golden-i64", test_read_golden_i64);
  g_test_add_func ("/safetensors/read/bad-input", test_read_bad_input);
  g_test_add_func ("/safetensors/read/misaligned", test_read_misaligned);
  g_test_add_func ("/safetensors/write/golden-bytes", test_write_golden_bytes);
  g_test_add_func ("/safetensors/write/roundtrip-dtypes", test_write_roundtrip_dtypes);
  g_test_add_func ("/safetensors/write/bad-names", test_write_bad_names);
  g_test_add_func ("/safetensors/write/atomic", test_write_atomic);
  return g_test_run ();
}
