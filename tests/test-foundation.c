/* Tensors, dtype conversion and arenas. */
#include "test-common.h"
#include <math.h>
#include <string.h>

static void
test_f16_known_values (void)
{
  /* IEEE binary16 bit patterns of exactly representable values */
  struct { float f; uint16_t h; } cases[] = {
    { 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { 1.0f, 0x3c00 }, { -2.0f, 0xc000 }, { 65504.0f, 0x7bff },
    { 0x1p-24f, 0x0001 }, { 0x1p-14f, 0x0400 }, { 0.5f, 0x3800 }, { INFINITY, 0x7c00 },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_cmphex (oft_f32_to_f16 (cases[i].f), ==, cases[i].h);
      g_assert_cmpfloat (oft_f16_to_f32 (cases[i].h), ==, cases[i].f);
    }
  /* ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 */
  g_assert_cmphex (oft_f32_to_f16 (1.0f + 0x1p-11f), ==, 0x3c00);
  g_assert_cmphex (oft_f32_to_f16 (1.0f + 3 * 0x1p-11f), ==, 0x3c02);
  g_assert_cmphex (oft_f32_to_f16 (70000.0f), ==, 0x7c00);   /* overflow → inf */
  g_assert_true (isnan (oft_f16_to_f32 (oft_f32_to_f16 (NAN))));
}

static void
test_f16_roundtrip_all (void)
{
  /* every finite half survives half → float → half */
  for (uint32_t h = 0; h < 0x10000; h++)
    {
      if ((h & 0x7c00) == 0x7c00)
        continue;
      g_assert_cmphex (oft_f32_to_f16 (oft_f16_to_f32 ((uint16_t) h)), ==, h);
    }
}

static void
test_bf16 (void)
{
  g_assert_cmphex (oft_f32_to_bf16 (1.0f), ==, 0x3f80);
  g_assert_cmpfloat (oft_bf16_to_f32 (0xc040), ==, -3.0f);
  g_assert_cmphex (oft_f32_to_bf16 (1.0f + 0x1p-8f), ==, 0x3f80);          /* tie → even */
  g_assert_cmphex (oft_f32_to_bf16 (1.0f + 3 * 0x1p-8f), ==, 0x3f82);
  g_assert_true (isnan (oft_bf16_to_f32 (oft_f32_to_bf16 (NAN))));
  float x[5] = { 1.5f, -2.25f, 3.0e5f, 1e-3f, 0 }, y[5];
  uint16_t b[5];
  oft_convert_from_f32 (b, OFT_DTYPE_BF16, x, 5);
  oft_convert_to_f32 (y, b, OFT_DTYPE_BF16, 5);
  for (int i = 0; i < 5; i++)
    g_assert_cmpfloat (fabsf (y[i] - x[i]), <=, fabsf (x[i]) * 0x1p-8f);
}

static void
test_dtype_names (void)
{
  for (int i = 0; i < OFT_DTYPE_COUNT; i++)
    {
      OftDType d;
      g_assert_true (oft_dtype_from_name (oft_dtype_name ((OftDType) i), &d));
      g_assert_cmpint (d, ==, i);
    }
  OftDType d;
  g_assert_false (oft_dtype_from_name ("F64", &d));
  g_assert_false (oft_dtype_from_name ("f32", &d));
}

static void
test_shape_numel_checked (void)
{
  int64_t n;
  int64_t ok[3] = { 2, 3, 4 }, neg[2] = { 2, -1 }, big[3] = { 1 << 30, 1 << 30, 1 << 30 };
  g_assert_true (oft_shape_numel_checked (3, ok, G_MAXINT64, &n));
  g_assert_cmpint (n, ==, 24);
  g_assert_false (oft_shape_numel_checked (2, neg, G_MAXINT64, &n));
  g_assert_false (oft_shape_numel_checked (3, big, G_MAXINT64 / 8, &n));
  char *s = oft_shape_to_string (3, ok);
  g_assert_cmpstr (s, ==, "[2, 3, 4]");
  g_free (s);
}

static void
test_arena_lifetimes (void)
{
  OftArena a;
  oft_arena_init (&a, "test", 4096);
  float *p = oft_arena_floats (&a, 10);
  g_assert_cmpuint ((uintptr_t) p % 64, ==, 0);
  p[0] = 42;
  OftArenaMark m = oft_arena_mark (&a);
  for (int i = 0; i < 10; i++) /* spills into new chunks, including one larger than chunk_size */
    {
      float *q = oft_arena_floats (&a, i == 5 ? 10000 : 500);
      g_assert_cmpfloat (q[0], ==, 0);
      q[0] = 1;
    }
  size_t peak = a.peak, reserved = a.reserved;
  g_assert_cmpuint (a.reserved, >, 4096);
  oft_arena_reset (&a, m);
  g_assert_cmpfloat (p[0], ==, 42);           /* allocations before the mark survive */
  g_assert_cmpuint (a.used, ==, m.used);
  for (int i = 0; i < 10; i++)                /* the same pattern again reuses the spare chunks */
    {
      float *q = oft_arena_floats (&a, i == 5 ? 10000 : 500);
      g_assert_cmpfloat (q[0], ==, 0);        /* reused memory comes back zeroed */
    }
  g_assert_cmpuint (a.reserved, ==, reserved);
  g_assert_cmpuint (a.peak, ==, peak);
  oft_arena_reset (&a, m);
  oft_arena_trim (&a);
  g_assert_cmpuint (a.reserved, ==, 4096);    /* trimming returns the spares */
  float *q = oft_arena_floats (&a, 8);
  g_assert_cmpfloat (q[0], ==, 0);
  int64_t shape[2] = { 3, 5 };
  OftTensor t = oft_arena_tensor (&a, OFT_DTYPE_BF16, 2, shape);
  g_assert_cmpint (oft_tensor_numel (&t), ==, 15);
  g_assert_cmpuint (oft_tensor_nbytes (&t), ==, 30);
  oft_arena_release (&a);
  g_assert_cmpuint (a.reserved, ==, 0);
  g_assert_null (a.head);
}

typedef struct {
  const char *base[16];
  size_t used[16];
  int n;
} ChunkList;

static void
collect_chunk (const void *base, size_t used, gpointer data)
{
  ChunkList *l = data;
  g_assert_cmpint (l->n, <, 16);
  l->base[l->n] = base;
  l->used[l->n++] = used;
}

/* The chunk walk a GPU upload maps weights through: every live allocation lies inside exactly one
 * reported chunk, the reported bytes add up to `used`, and a reset's spares are not reported. */
static void
test_arena_foreach_chunk (void)
{
  OftArena a;
  oft_arena_init (&a, "test", 4096);
  ChunkList l = { .n = 0 };
  oft_arena_foreach_chunk (&a, collect_chunk, &l);
  g_assert_cmpint (l.n, ==, 0);
  float *p[8];
  for (int i = 0; i < 8; i++)
    p[i] = oft_arena_floats (&a, i == 3 ? 5000 : 300);
  OftArenaMark m = oft_arena_mark (&a);
  oft_arena_floats (&a, 3000);  /* opens a chunk that the reset below turns into a spare */
  oft_arena_reset (&a, m);
  oft_arena_foreach_chunk (&a, collect_chunk, &l);
  g_assert_cmpint (l.n, >=, 2);
  size_t sum = 0;
  for (int j = 0; j < l.n; j++)
    sum += l.used[j];
  g_assert_cmpuint (sum, ==, a.used);
  for (int i = 0; i < 8; i++)
    {
      int inside = 0;
      size_t bytes = (i == 3 ? 5000 : 300) * sizeof (float);
      for (int j = 0; j < l.n; j++)
        if ((const char *) p[i] >= l.base[j] && (const char *) p[i] + bytes <= l.base[j] + l.used[j])
          inside++;
      g_assert_cmpint (inside, ==, 1);
    }
  oft_arena_release (&a);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/foundation/f16/known-values", test_f16_known_values);
  g_test_add_func ("/foundation/f16/roundtrip-all", test_f16_roundtrip_all);
  g_test_add_func ("/foundation/bf16", test_bf16);
  g_test_add_func ("/foundation/dtype-names", test_dtype_names);
  g_test_add_func ("/foundation/shape-numel-checked", test_shape_numel_checked);
  g_test_add_func ("/foundation/arena-lifetimes", test_arena_lifetimes);
  g_test_add_func ("/foundation/arena-foreach-chunk", test_arena_foreach_chunk);
  return g_test_run ();
}
