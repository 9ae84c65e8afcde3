#include "oft/tensor.h"
#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtype_info[OFT_DTYPE_COUNT] = {
  [OFT_DTYPE_F32] = { "F32", 4 },
  [OFT_DTYPE_F16] = { "F16", 2 },
  [OFT_DTYPE_BF16] = { "BF16", 2 },
  [OFT_DTYPE_I32] = { "I32", 4 },
  [OFT_DTYPE_I64] = { "I64", 8 },
};

size_t
oft_dtype_size (OftDType dtype)
{
  return (unsigned) dtype < OFT_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

const char *
oft_dtype_name (OftDType dtype)
{
  return (unsigned) dtype < OFT_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

gboolean
oft_dtype_from_name (const char *name, OftDType *dtype)
{
  for (int i = 0; i < OFT_DTYPE_COUNT; i++)
    if (name && strcmp (name, dtype_info[i].name) == 0)
      {
        *dtype = (OftDType) i;
        return TRUE;
      }
  return FALSE;
}

int64_t
oft_tensor_numel (const OftTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

size_t
oft_tensor_nbytes (const OftTensor *t)
{
  return (size_t) oft_tensor_numel (t) * oft_dtype_size (t->dtype);
}

gboolean
oft_tensor_shape_equals (const OftTensor *t, int ndim, const int64_t *shape)
{
  if (t->ndim != ndim)
    return FALSE;
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] != shape[i])
      return FALSE;
  return TRUE;
}

char *
oft_shape_to_string (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

gboolean
oft_shape_numel_checked (int ndim, const int64_t *shape, int64_t limit, int64_t *numel)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] < 0)
        return FALSE;
      if (shape[i] != 0 && n > limit / shape[i])
        return FALSE;
      n *= shape[i];
    }
  *numel = n;
  return TRUE;
}

static inline uint32_t
f32_bits (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  return u;
}

static inline float
bits_f32 (uint32_t u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

float
oft_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) /* inf / nan */
    return bits_f32 (sign | 0x7f800000u | (man << 13));
  if (exp == 0)
    {
      /* zero or subnormal: value = man · 2^-24 exactly */
      float v = (float) man * 0x1p-24f;
      return sign ? -v : v;
    }
  return bits_f32 (sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t
oft_f32_to_f16 (float f)
{
  uint32_t u = f32_bits (f);
  uint16_t sign = (u >> 16) & 0x8000;
  uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) /* inf or nan (keep nan quiet and non-zero) */
    return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0);
  if (abs >= 0x477ff000u) /* rounds to ≥ 65520: overflow to inf */
    return sign | 0x7c00;
  if (abs < 0x38800000u)
    {
      /* result is subnormal in f16: round |f|·2^24 to an integer, ties to even */
      float v = bits_f32 (abs) * 0x1p24f;
      return sign | (uint16_t) lrintf (v);
    }
  /* normal: drop 13 mantissa bits with round to nearest even */
  uint32_t r = abs - 0x38000000u; /* rebias exponent 127 → 15 */
  r += 0x0fffu + ((r >> 13) & 1u);
  return sign | (uint16_t) (r >> 13);
}

float
oft_bf16_to_f32 (uint16_t h)
{
  return bits_f32 ((uint32_t) h << 16);
}

uint16_t
oft_f32_to_bf16 (float f)
{
  uint32_t u = f32_bits (f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t) ((u >> 16) | 0x40); /* quiet nan */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t) (u >> 16);
}

void
oft_convert_to_f32 (float *dst, const void *src, OftDType src_dtype, size_t n)
{
  switch (src_dtype)
    {
    case OFT_DTYPE_F32:
      memmove (dst, src, n * sizeof (float));
      break;
    case OFT_DTYPE_F16:
      for (size_t i = 0; i < n; i++)
        dst[i] = oft_f16_to_f32 (((const uint16_t *) src)[i]);
      break;
    case OFT_DTYPE_BF16:
      for (size_t i = 0; i < n; i++)
        dst[i] = oft_bf16_to_f32 (((const uint16_t *) src)[i]);
      break;
    case OFT_DTYPE_I32:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) ((const int32_t *) src)[i];
      break;
    case OFT_DTYPE_I64:
      for (size_t i = 0; i < n; i++)
        dst[i] = (float) ((const int64_t *) src)[i];
      break;
    default:
      g_return_if_reached ();
    }
}

void
oft_convert_from_f32 (void *dst, OftDType dst_dtype, const float *src, size_t n)
{
  switch (dst_dtype)
    {
    case OFT_DTYPE_F32:
      memmove (dst, src, n * sizeof (float));
      break;
    case OFT_DTYPE_F16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *) dst)[i] = oft_f32_to_f16 (src[i]);
      break;
    case OFT_DTYPE_BF16:
      for (size_t i = 0; i < n; i++)
        ((uint16_t *) dst)[i] = oft_f32_to_bf16 (src[i]);
      break;
    case OFT_DTYPE_I32:
      for (size_t i = 0; i < n; i++)
        ((int32_t *) dst)[i] = (int32_t) lrintf (src[i]);
      break;
    case OFT_DTYPE_I64:
      for (size_t i = 0; i < n; i++)
        ((int64_t *) dst)[i] = (int64_t) llrintf (src[i]);
      break;
    default:
      g_return_if_reached ();
    }
}
