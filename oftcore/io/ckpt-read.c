/* Restricted reader for PyTorch checkpoints (torch.save since 1.6: a zip holding <archive>/data.pkl and
 * one <archive>/data/<key> member per storage). The pickle is interpreted by a small stack machine that
 * knows only what a state dict needs; a global outside the allow-list is refused, so nothing in the file
 * is ever executed. Tensors end up as OftSafetensors entries over storages read into owned buffers. */
#include "oft/safetensors.h"
#include "oft/error.h"
#include "safetensors-private.h"
#include <zip.h>
#include <errno.h>
#include <string.h>

#define CKPT_MAX_MEMBERS 200000                 /* zip members */
#define CKPT_MAX_PICKLE ((zip_uint64_t) 256 << 20) /* bytes of data.pkl */
#define CKPT_MAX_TOTAL ((uint64_t) 64 << 30)    /* bytes of all storages read */
#define CKPT_READ_CHUNK ((zip_uint64_t) 1 << 30)
/* torch.save stores members uncompressed; a deflated member expanding more than this is a zip bomb */
#define CKPT_MAX_RATIO 100
#define CKPT_RATIO_FROM ((zip_uint64_t) 1 << 20) /* members smaller than this are not checked */
#define PK_MAX_STACK (1 << 20)
#define PK_MAX_MARKS 1024
#define PK_MAX_MEMO (1 << 22)
#define PK_MAX_VALUES (1 << 23)                 /* objects created by one pickle */
#define PK_MAX_LINE 256                         /* GLOBAL's module and name lines */

typedef enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE,
               V_TENSOR } VKind;
typedef enum { FN_ORDERED_DICT, FN_REBUILD_TENSOR, FN_REBUILD_PARAMETER, FN_STORAGE_TYPE } FnKind;

typedef struct {
  char *key;
  OftDType dtype;
  int64_t numel;       /* elements, as the persistent id says */
  void *data;          /* read after parsing, only for storages a kept tensor uses */
} Storage;

typedef struct {
  VKind kind;
  int64_t i;           /* INT, BOOL; GLOBAL: FnKind */
  char *s;             /* STR, BYTES (NUL-terminated copy); GLOBAL: "module.name" */
  size_t len;
  GPtrArray *items;    /* TUPLE, LIST; DICT: key, value, key, value, … (values live in the pool) */
  OftDType dtype;      /* GLOBAL of a storage type */
  Storage *storage;    /* STORAGE, TENSOR */
  int64_t offset;      /* TENSOR: in elements */
  int ndim;
  int64_t shape[OFT_MAX_DIMS];
} Value;

typedef struct {
  const char *path;
  const uint8_t *p;
  size_t len, pos, op_pos;
  GPtrArray *pool;     /* every Value, freed at the end */
  GPtrArray *stack;
  int marks[PK_MAX_MARKS];
  int n_marks;
  GPtrArray *memo;
  size_t memo_set;
  GHashTable *storages; /* key → Storage */
  GError **error;
} Pickle;

#define fail oft_io_fail

/* Errors inside the pickle name the opcode's byte offset. */
static gboolean
pk_fail (Pickle *k, int code, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
pk_fail (Pickle *k, int code, const char *fmt, ...)
{
  if (k->error && *k->error)
    return FALSE;
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (k->error, OFT_IO_ERROR, code, "%s: data.pkl at byte %zu: %s", k->path, k->op_pos, msg);
  g_free (msg);
  return FALSE;
}

static void
value_free (gpointer p)
{
  Value *v = p;
  g_free (v->s);
  if (v->items)
    g_ptr_array_unref (v->items);
  g_free (v);
}

static void
storage_free (gpointer p)
{
  Storage *s = p;
  g_free (s->key);
  g_free (s);
}

static Value *
new_value (Pickle *k, VKind kind)
{
  if (k->pool->len >= PK_MAX_VALUES)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "more than %d objects", PK_MAX_VALUES);
      return NULL;
    }
  Value *v = g_new0 (Value, 1);
  v->kind = kind;
  if (kind == V_TUPLE || kind == V_LIST || kind == V_DICT)
    v->items = g_ptr_array_new ();
  g_ptr_array_add (k->pool, v);
  return v;
}

static gboolean
push (Pickle *k, Value *v)
{
  if (!v)
    return FALSE;
  if (k->stack->len >= PK_MAX_STACK)
    return pk_fail (k, OFT_ERROR_CORRUPT, "stack deeper than %d", PK_MAX_STACK);
  g_ptr_array_add (k->stack, v);
  return TRUE;
}

static Value *
pop (Pickle *k)
{
  int floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
  if ((int) k->stack->len <= floor)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "stack underflow");
      return NULL;
    }
  return g_ptr_array_steal_index (k->stack, k->stack->len - 1);
}

static Value *
top (Pickle *k)
{
  int floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
  if ((int) k->stack->len <= floor)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "stack underflow");
      return NULL;
    }
  return k->stack->pdata[k->stack->len - 1];
}

/* The values above the last MARK, which is removed; *n receives their count. */
static Value **
pop_mark (Pickle *k, int *n)
{
  if (!k->n_marks)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "no MARK to pop to");
      return NULL;
    }
  int m = k->marks[--k->n_marks];
  *n = (int) k->stack->len - m;
  Value **items = g_new (Value *, *n + 1);
  memcpy (items, k->stack->pdata + m, sizeof (Value *) * *n);
  g_ptr_array_set_size (k->stack, m);
  return items;
}

static const uint8_t *
take (Pickle *k, size_t n)
{
  if (n > k->len - k->pos)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "truncated: %zu more bytes needed, %zu left", n, k->len - k->pos);
      return NULL;
    }
  const uint8_t *b = k->p + k->pos;
  k->pos += n;
  return b;
}

static gboolean
take_uint (Pickle *k, int nbytes, uint64_t *out)
{
  const uint8_t *b = take (k, nbytes);
  if (!b)
    return FALSE;
  uint64_t v = 0;
  for (int i = nbytes - 1; i >= 0; i--)
    v = (v << 8) | b[i];
  *out = v;
  return TRUE;
}

static gboolean
push_int (Pickle *k, int64_t i)
{
  Value *v = new_value (k, V_INT);
  if (v)
    v->i = i;
  return push (k, v);
}

static gboolean
push_string (Pickle *k, VKind kind, uint64_t n)
{
  const uint8_t *b = take (k, n);
  if (!b)
    return FALSE;
  Value *v = new_value (k, kind);
  if (!v)
    return FALSE;
  v->s = g_malloc (n + 1);
  memcpy (v->s, b, n);
  v->s[n] = 0;
  v->len = n;
  return push (k, v);
}

/* Little-endian two's complement of n bytes (LONG1, LONG4); wider than 64 bits is refused. */
static gboolean
push_long (Pickle *k, uint64_t n)
{
  if (n > 8)
    return pk_fail (k, OFT_ERROR_INVALID, "a %" G_GUINT64_FORMAT "-byte integer (at most 8 supported)", n);
  const uint8_t *b = take (k, n);
  if (!b)
    return FALSE;
  uint64_t u = 0;
  for (int i = (int) n - 1; i >= 0; i--)
    u = (u << 8) | b[i];
  if (n > 0 && n < 8 && (b[n - 1] & 0x80))
    u |= ~(uint64_t) 0 << (8 * n);
  return push_int (k, (int64_t) u);
}

static const char *
take_line (Pickle *k)
{
  const uint8_t *start = k->p + k->pos;
  size_t max = MIN (k->len - k->pos, (size_t) PK_MAX_LINE);
  const uint8_t *nl = memchr (start, '\n', max);
  if (!nl)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "a text line longer than %d bytes or unterminated", PK_MAX_LINE);
      return NULL;
    }
  k->pos += (size_t) (nl - start) + 1;
  return (const char *) start;
}

static const struct {
  const char *name;
  OftDType dtype;
} storage_types[] = {
  { "FloatStorage", OFT_DTYPE_F32 },
  { "HalfStorage", OFT_DTYPE_F16 },
  { "BFloat16Storage", OFT_DTYPE_BF16 },
  { "IntStorage", OFT_DTYPE_I32 },
  { "LongStorage", OFT_DTYPE_I64 },
};

/* The allow-list. Everything else is refused before it could be called. */
static gboolean
push_global (Pickle *k, const char *module, const char *name)
{
  Value *v = new_value (k, V_GLOBAL);
  if (!v)
    return FALSE;
  v->s = g_strdup_printf ("%s.%s", module, name);
  if (strcmp (v->s, "collections.OrderedDict") == 0)
    v->i = FN_ORDERED_DICT;
  else if (strcmp (v->s, "torch._utils._rebuild_tensor_v2") == 0)
    v->i = FN_REBUILD_TENSOR;
  else if (strcmp (v->s, "torch._utils._rebuild_parameter") == 0)
    v->i = FN_REBUILD_PARAMETER;
  else
    {
      gboolean storage = strcmp (module, "torch") == 0 && g_str_has_suffix (name, "Storage");
      for (size_t i = 0; storage && i < G_N_ELEMENTS (storage_types); i++)
        if (strcmp (name, storage_types[i].name) == 0)
          {
            v->i = FN_STORAGE_TYPE;
            v->dtype = storage_types[i].dtype;
            return push (k, v);
          }
      char *shown = g_strescape (v->s, NULL); /* the file chooses these bytes */
      if (storage)
        pk_fail (k, OFT_ERROR_DTYPE, "storage type %s is not supported (Float, Half, BFloat16, Int, Long)", shown);
      else
        pk_fail (k, OFT_ERROR_INVALID, "refusing global %s: only tensors in (ordered) dicts are read "
                 "(collections.OrderedDict, torch._utils._rebuild_tensor_v2, _rebuild_parameter, torch.*Storage); "
                 "nothing in the file is executed", shown);
      g_free (shown);
      return FALSE;
    }
  return push (k, v);
}

static gboolean
int_of (const Value *v, int64_t *out)
{
  if (v->kind != V_INT && v->kind != V_BOOL)
    return FALSE;
  *out = v->i;
  return TRUE;
}

static gboolean
persistent_load (Pickle *k, Value *pid)
{
  int64_t numel;
  if (pid->kind != V_TUPLE || pid->items->len != 5)
    return pk_fail (k, OFT_ERROR_CORRUPT, "persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  Value **it = (Value **) pid->items->pdata;
  if (it[0]->kind != V_STR || strcmp (it[0]->s, "storage") != 0)
    return pk_fail (k, OFT_ERROR_CORRUPT, "persistent id does not start with 'storage'");
  if (it[1]->kind != V_GLOBAL || it[1]->i != FN_STORAGE_TYPE)
    return pk_fail (k, OFT_ERROR_DTYPE, "persistent id has no torch.*Storage type (an untyped storage?)");
  if (it[2]->kind != V_STR || !it[2]->len || it[2]->len > 64 || strspn (it[2]->s, "0123456789abcdefghijklmnopqrstuvwxyz"
      "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != it[2]->len)
    return pk_fail (k, OFT_ERROR_CORRUPT, "storage key is not a short alphanumeric string");
  if (!int_of (it[4], &numel) || numel < 0 || numel > G_MAXINT64 / 8)
    return pk_fail (k, OFT_ERROR_CORRUPT, "storage '%s': bad element count", it[2]->s);
  Storage *s = g_hash_table_lookup (k->storages, it[2]->s);
  if (s && (s->dtype != it[1]->dtype || s->numel != numel))
    return pk_fail (k, OFT_ERROR_CORRUPT, "storage '%s' is referenced with two different types or sizes", it[2]->s);
  if (!s)
    {
      s = g_new0 (Storage, 1);
      s->key = g_strdup (it[2]->s);
      s->dtype = it[1]->dtype;
      s->numel = numel;
      g_hash_table_insert (k->storages, s->key, s);
    }
  Value *v = new_value (k, V_STORAGE);
  if (v)
    v->storage = s;
  return push (k, v);
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static Value *
rebuild_tensor (Pickle *k, GPtrArray *args)
{
  Value **a = (Value **) args->pdata;
  int64_t off;
  if (args->len < 6 || args->len > 7 || a[0]->kind != V_STORAGE || !int_of (a[1], &off) ||
      a[2]->kind != V_TUPLE || a[3]->kind != V_TUPLE)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, …)");
      return NULL;
    }
  Storage *s = a[0]->storage;
  guint nd = a[2]->items->len;
  if (nd > OFT_MAX_DIMS || a[3]->items->len != nd)
    {
      pk_fail (k, OFT_ERROR_SHAPE, "tensor in storage '%s': %u dimensions with %u strides (at most %d dimensions)",
               s->key, nd, a[3]->items->len, OFT_MAX_DIMS);
      return NULL;
    }
  Value *t = new_value (k, V_TENSOR);
  if (!t)
    return NULL;
  t->storage = s;
  t->offset = off;
  t->ndim = (int) nd;
  for (guint i = 0; i < nd; i++)
    if (!int_of (a[2]->items->pdata[i], &t->shape[i]) || t->shape[i] < 0)
      {
        pk_fail (k, OFT_ERROR_SHAPE, "tensor in storage '%s': size[%u] is not a non-negative integer", s->key, i);
        return NULL;
      }
  int64_t numel;
  if (!oft_shape_numel_checked (t->ndim, t->shape, G_MAXINT64 / 8, &numel))
    {
      pk_fail (k, OFT_ERROR_SHAPE, "tensor in storage '%s': too many elements", s->key);
      return NULL;
    }
  /* contiguous as torch defines it: strides of size-1 dimensions do not matter */
  int64_t want = 1;
  for (int i = (int) nd - 1; i >= 0 && numel > 0; i--)
    {
      int64_t st;
      if (!int_of (a[3]->items->pdata[i], &st) || (t->shape[i] != 1 && st != want))
        {
          char *shape = oft_shape_to_string (t->ndim, t->shape);
          pk_fail (k, OFT_ERROR_SHAPE, "tensor %s in storage '%s' is not contiguous (stride[%d] should be %" G_GINT64_FORMAT
                   "); save it after .contiguous()", shape, s->key, i, want);
          g_free (shape);
          return NULL;
        }
      want *= t->shape[i];
    }
  if (off < 0 || off > s->numel || numel > s->numel - off)
    {
      pk_fail (k, OFT_ERROR_CORRUPT, "tensor of %" G_GINT64_FORMAT " elements at offset %" G_GINT64_FORMAT
               " runs past the end of storage '%s' (%" G_GINT64_FORMAT " elements)", numel, off, s->key, s->numel);
      return NULL;
    }
  return t;
}

static gboolean
reduce (Pickle *k)
{
  Value *args = pop (k), *fn = args ? pop (k) : NULL;
  if (!fn)
    return FALSE;
  if (fn->kind != V_GLOBAL || args->kind != V_TUPLE)
    return pk_fail (k, OFT_ERROR_CORRUPT, "REDUCE needs a global and an argument tuple");
  switch ((FnKind) fn->i)
    {
    case FN_ORDERED_DICT:
      if (args->items->len != 0)
        return pk_fail (k, OFT_ERROR_CORRUPT, "OrderedDict called with arguments");
      return push (k, new_value (k, V_DICT));
    case FN_REBUILD_TENSOR:
      return push (k, rebuild_tensor (k, args->items));
    case FN_REBUILD_PARAMETER:
      if (args->items->len < 1 || ((Value *) args->items->pdata[0])->kind != V_TENSOR)
        return pk_fail (k, OFT_ERROR_CORRUPT, "_rebuild_parameter without a tensor");
      return push (k, args->items->pdata[0]);
    case FN_STORAGE_TYPE:
    default:
      return pk_fail (k, OFT_ERROR_INVALID, "refusing to call %s", fn->s);
    }
}

static gboolean
memo_put (Pickle *k, uint64_t idx)
{
  Value *v = top (k);
  if (!v)
    return FALSE;
  if (idx >= PK_MAX_MEMO)
    return pk_fail (k, OFT_ERROR_CORRUPT, "memo index %" G_GUINT64_FORMAT " over the %d limit", idx, PK_MAX_MEMO);
  if (idx >= k->memo->len)
    g_ptr_array_set_size (k->memo, (guint) idx + 1);
  if (!k->memo->pdata[idx])
    k->memo_set++;
  k->memo->pdata[idx] = v;
  return TRUE;
}

static gboolean
memo_get (Pickle *k, uint64_t idx)
{
  if (idx >= k->memo->len || !k->memo->pdata[idx])
    return pk_fail (k, OFT_ERROR_CORRUPT, "memo entry %" G_GUINT64_FORMAT " was never stored", idx);
  return push (k, k->memo->pdata[idx]);
}

static gboolean
make_tuple (Pickle *k, int n)
{
  if (n > (int) k->stack->len - (k->n_marks ? k->marks[k->n_marks - 1] : 0))
    return pk_fail (k, OFT_ERROR_CORRUPT, "stack underflow");
  Value *t = new_value (k, V_TUPLE);
  if (!t)
    return FALSE;
  for (int i = (int) k->stack->len - n; i < (int) k->stack->len; i++)
    g_ptr_array_add (t->items, k->stack->pdata[i]);
  g_ptr_array_set_size (k->stack, k->stack->len - n);
  return push (k, t);
}

/* Items above the mark go into the container below it (SETITEMS, APPENDS). */
static gboolean
extend_from_mark (Pickle *k, VKind want)
{
  int n;
  Value **items = pop_mark (k, &n);
  if (!items)
    return FALSE;
  Value *c = top (k);
  gboolean ok = c != NULL;
  if (ok && c->kind != want)
    ok = pk_fail (k, OFT_ERROR_CORRUPT, "%s on something that is not a %s", want == V_DICT ? "SETITEMS" : "APPENDS",
                  want == V_DICT ? "dict" : "list");
  if (ok && want == V_DICT && n % 2)
    ok = pk_fail (k, OFT_ERROR_CORRUPT, "SETITEMS with an odd number of items");
  for (int i = 0; ok && i < n; i++)
    g_ptr_array_add (c->items, items[i]);
  g_free (items);
  return ok;
}

static gboolean
run_pickle (Pickle *k, Value **result)
{
  uint64_t u;
  for (;;)
    {
      k->op_pos = k->pos;
      const uint8_t *opb = take (k, 1);
      if (!opb)
        return FALSE;
      uint8_t op = *opb;
      gboolean ok = TRUE;
      Value *v, *w;
      switch (op)
        {
        case 0x80: /* PROTO */
          ok = take_uint (k, 1, &u);
          if (ok && u > 5)
            ok = pk_fail (k, OFT_ERROR_CORRUPT, "pickle protocol %" G_GUINT64_FORMAT " (at most 5)", u);
          break;
        case 0x95: /* FRAME: framing is only a read-ahead hint */
          ok = take_uint (k, 8, &u);
          break;
        case '.': /* STOP */
          v = pop (k);
          if (!v)
            return FALSE;
          *result = v;
          return TRUE;
        case '(': /* MARK */
          if (k->n_marks >= PK_MAX_MARKS)
            return pk_fail (k, OFT_ERROR_CORRUPT, "more than %d nested MARKs", PK_MAX_MARKS);
          k->marks[k->n_marks++] = (int) k->stack->len;
          break;
        case '0': /* POP */
          ok = pop (k) != NULL;
          break;
        case '1': /* POP_MARK */
          {
            int n;
            g_free (pop_mark (k, &n));
            ok = !(k->error && *k->error);
          }
          break;
        case '2': /* DUP */
          v = top (k);
          ok = v && push (k, v);
          break;
        case 'N':
          ok = push (k, new_value (k, V_NONE));
          break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
          v = new_value (k, V_BOOL);
          if (v)
            v->i = op == 0x88;
          ok = push (k, v);
          break;
        case 'J': /* BININT */
          ok = take_uint (k, 4, &u) && push_int (k, (int32_t) (uint32_t) u);
          break;
        case 'K': /* BININT1 */
          ok = take_uint (k, 1, &u) && push_int (k, (int64_t) u);
          break;
        case 'M': /* BININT2 */
          ok = take_uint (k, 2, &u) && push_int (k, (int64_t) u);
          break;
        case 0x8a: /* LONG1 */
          ok = take_uint (k, 1, &u) && push_long (k, u);
          break;
        case 0x8b: /* LONG4 */
          ok = take_uint (k, 4, &u) && push_long (k, u);
          break;
        case 'I': /* INT as text; "I01" / "I00" are True / False */
          {
            const char *line = take_line (k);
            char *text = line ? g_strndup (line, strcspn (line, "\n")) : NULL, *end = NULL;
            errno = 0;
            gint64 i = text ? g_ascii_strtoll (text, &end, 10) : 0;
            if (text && (errno || !g_ascii_isdigit (text[text[0] == '-']) || *end))
              ok = pk_fail (k, OFT_ERROR_CORRUPT, "bad INT text");
            else
              ok = text && push_int (k, i);
            g_free (text);
          }
          break;
        case 'G': /* BINFLOAT: a training hyper-parameter at most; the value is never needed */
          ok = take (k, 8) && push (k, new_value (k, V_FLOAT));
          break;
        case 'X': /* BINUNICODE */
          ok = take_uint (k, 4, &u) && push_string (k, V_STR, u);
          break;
        case 0x8c: /* SHORT_BINUNICODE */
          ok = take_uint (k, 1, &u) && push_string (k, V_STR, u);
          break;
        case 0x8d: /* BINUNICODE8 */
          ok = take_uint (k, 8, &u) && push_string (k, V_STR, u);
          break;
        case 'T': /* BINSTRING (python 2 str) */
          ok = take_uint (k, 4, &u) && ((u >> 31) == 0 || pk_fail (k, OFT_ERROR_CORRUPT, "negative length")) &&
               push_string (k, V_STR, u);
          break;
        case 'U': /* SHORT_BINSTRING */
          ok = take_uint (k, 1, &u) && push_string (k, V_STR, u);
          break;
        case 'B': /* BINBYTES */
          ok = take_uint (k, 4, &u) && push_string (k, V_BYTES, u);
          break;
        case 'C': /* SHORT_BINBYTES */
          ok = take_uint (k, 1, &u) && push_string (k, V_BYTES, u);
          break;
        case 0x8e: /* BINBYTES8 */
          ok = take_uint (k, 8, &u) && push_string (k, V_BYTES, u);
          break;
        case '}': /* EMPTY_DICT */
          ok = push (k, new_value (k, V_DICT));
          break;
        case ']': /* EMPTY_LIST */
          ok = push (k, new_value (k, V_LIST));
          break;
        case ')': /* EMPTY_TUPLE */
          ok = push (k, new_value (k, V_TUPLE));
          break;
        case 't': /* TUPLE */
          {
            int n;
            Value **items = pop_mark (k, &n);
            ok = items != NULL;
            v = ok ? new_value (k, V_TUPLE) : NULL;
            for (int i = 0; v && i < n; i++)
              g_ptr_array_add (v->items, items[i]);
            g_free (items);
            ok = ok && push (k, v);
          }
          break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
          ok = make_tuple (k, op - 0x84);
          break;
        case 's': /* SETITEM */
          w = pop (k);
          v = w ? pop (k) : NULL;
          {
            Value *d = v ? top (k) : NULL;
            ok = d != NULL;
            if (ok && d->kind != V_DICT)
              ok = pk_fail (k, OFT_ERROR_CORRUPT, "SETITEM on something that is not a dict");
            if (ok)
              {
                g_ptr_array_add (d->items, v);
                g_ptr_array_add (d->items, w);
              }
          }
          break;
        case 'u': /* SETITEMS */
          ok = extend_from_mark (k, V_DICT);
          break;
        case 'a': /* APPEND */
          w = pop (k);
          v = w ? top (k) : NULL;
          ok = v != NULL;
          if (ok && v->kind != V_LIST)
            ok = pk_fail (k, OFT_ERROR_CORRUPT, "APPEND on something that is not a list");
          if (ok)
            g_ptr_array_add (v->items, w);
          break;
        case 'e': /* APPENDS */
          ok = extend_from_mark (k, V_LIST);
          break;
        case 'b': /* BUILD: only an OrderedDict's (ignored) attribute state */
          w = pop (k);
          v = w ? top (k) : NULL;
          ok = v != NULL;
          if (ok && v->kind != V_DICT)
            ok = pk_fail (k, OFT_ERROR_INVALID, "BUILD (setting object state) is only supported on an OrderedDict");
          break;
        case 'q': /* BINPUT */
          ok = take_uint (k, 1, &u) && memo_put (k, u);
          break;
        case 'r': /* LONG_BINPUT */
          ok = take_uint (k, 4, &u) && memo_put (k, u);
          break;
        case 0x94: /* MEMOIZE */
          ok = memo_put (k, k->memo_set);
          break;
        case 'h': /* BINGET */
          ok = take_uint (k, 1, &u) && memo_get (k, u);
          break;
        case 'j': /* LONG_BINGET */
          ok = take_uint (k, 4, &u) && memo_get (k, u);
          break;
        case 'Q': /* BINPERSID */
          v = pop (k);
          ok = v && persistent_load (k, v);
          break;
        case 'R': /* REDUCE */
          ok = reduce (k);
          break;
        case 'c': /* GLOBAL "module\nname\n" */
          {
            const char *m = take_line (k), *n = m ? take_line (k) : NULL;
            if (n)
              {
                char *module = g_strndup (m, strcspn (m, "\n")), *name = g_strndup (n, strcspn (n, "\n"));
                ok = push_global (k, module, name);
                g_free (module);
                g_free (name);
              }
            else
              ok = FALSE;
          }
          break;
        case 0x93: /* STACK_GLOBAL */
          w = pop (k);
          v = w ? pop (k) : NULL;
          ok = v != NULL;
          if (ok && (v->kind != V_STR || w->kind != V_STR || memchr (v->s, 0, v->len) || memchr (w->s, 0, w->len)))
            ok = pk_fail (k, OFT_ERROR_CORRUPT, "STACK_GLOBAL needs two strings");
          if (ok)
            ok = push_global (k, v->s, w->s);
          break;
        default:
          return pk_fail (k, OFT_ERROR_CORRUPT, "opcode 0x%02x is not supported by this restricted reader "
                          "(only what a state dict of tensors needs)", op);
        }
      if (!ok)
        {
          pk_fail (k, OFT_ERROR_CORRUPT, "malformed pickle"); /* only when no message was set */
          return FALSE;
        }
    }
}

/* The tensors of the state dict: the top-level dict, or its "state_dict" member when it has one. */
static Value *
find_state_dict (Value *root)
{
  if (root->kind != V_DICT)
    return NULL;
  for (guint i = 0; i + 1 < root->items->len; i += 2)
    {
      Value *key = root->items->pdata[i], *val = root->items->pdata[i + 1];
      if (key->kind == V_STR && strcmp (key->s, "state_dict") == 0 && val->kind == V_DICT)
        return val;
    }
  return root;
}

static gboolean
read_member (zip_t *z, zip_uint64_t idx, void *dst, zip_uint64_t size, const char *path, const char *name,
             GError **error)
{
  zip_stat_t zs;
  if (size >= CKPT_RATIO_FROM && zip_stat_index (z, idx, 0, &zs) == 0 && (zs.valid & ZIP_STAT_COMP_SIZE) &&
      zs.comp_size < size / CKPT_MAX_RATIO)
    return fail (error, OFT_ERROR_INVALID, path, "member %s expands %" G_GUINT64_FORMAT " compressed bytes to %"
                 G_GUINT64_FORMAT " (more than %d-fold: a zip bomb?)", name, (uint64_t) zs.comp_size, (uint64_t) size,
                 CKPT_MAX_RATIO);
  zip_file_t *f = zip_fopen_index (z, idx, 0);
  if (!f)
    return fail (error, OFT_ERROR_CORRUPT, path, "cannot open member %s: %s", name, zip_strerror (z));
  zip_uint64_t done = 0;
  gboolean ok = TRUE;
  while (ok && done < size)
    {
      zip_int64_t r = zip_fread (f, (uint8_t *) dst + done, MIN (size - done, CKPT_READ_CHUNK));
      if (r <= 0)
        ok = fail (error, OFT_ERROR_CORRUPT, path, "reading member %s: %s", name,
                   r < 0 ? zip_file_strerror (f) : "unexpected end of data (truncated file?)");
      else
        done += (zip_uint64_t) r;
    }
  /* one more read lets libzip check the CRC at the end of the member */
  uint8_t extra;
  zip_int64_t r = ok ? zip_fread (f, &extra, 1) : 0;
  if (r < 0)
    ok = fail (error, OFT_ERROR_CORRUPT, path, "member %s: %s", name, zip_file_strerror (f));
  else if (r > 0)
    ok = fail (error, OFT_ERROR_CORRUPT, path, "member %s is longer than its recorded size", name);
  zip_fclose (f);
  return ok;
}

static zip_t *
open_zip (const char *path, GError **error)
{
  int zerr = 0;
  zip_t *z = zip_open (path, ZIP_RDONLY, &zerr);
  if (z)
    return z;
  zip_error_t ze;
  zip_error_init_with_code (&ze, zerr);
  if (zerr == ZIP_ER_NOENT || zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ)
    fail (error, zerr == ZIP_ER_NOENT ? OFT_ERROR_NOT_FOUND : OFT_ERROR_FAILED, path, "cannot open: %s",
          zip_error_strerror (&ze));
  else
    {
      /* a bare pickle (protocol 2 starts 0x80 0x02) is torch's pre-1.6 format */
      gboolean legacy = FALSE;
      FILE *fp = fopen (path, "rb");
      if (fp)
        {
          uint8_t head[2] = { 0 };
          legacy = fread (head, 1, 2, fp) == 2 && head[0] == 0x80 && head[1] <= 5;
          fclose (fp);
        }
      if (legacy)
        fail (error, OFT_ERROR_CORRUPT, path, "a bare pickle: torch's legacy (pre-1.6) checkpoint format is not "
              "supported; re-save it with a recent torch or convert it to .safetensors");
      else
        fail (error, OFT_ERROR_CORRUPT, path, "not a readable zip archive (truncated or not a PyTorch checkpoint): %s",
              zip_error_strerror (&ze));
    }
  zip_error_fini (&ze);
  return NULL;
}

/* "<archive>/" of the single "<archive>/data.pkl" member, or NULL. */
static char *
find_prefix (zip_t *z, zip_int64_t n, zip_uint64_t *pkl_index, const char *path, GError **error)
{
  char *prefix = NULL;
  for (zip_int64_t i = 0; i < n; i++)
    {
      const char *name = zip_get_name (z, (zip_uint64_t) i, ZIP_FL_ENC_RAW);
      const char *slash = name ? strchr (name, '/') : NULL;
      if (!slash || strcmp (slash + 1, "data.pkl") != 0)
        continue;
      if (prefix)
        {
          fail (error, OFT_ERROR_CORRUPT, path, "more than one data.pkl in the archive");
          g_free (prefix);
          return NULL;
        }
      prefix = g_strndup (name, (size_t) (slash - name) + 1);
      *pkl_index = (zip_uint64_t) i;
    }
  if (!prefix)
    fail (error, OFT_ERROR_CORRUPT, path, "no <archive>/data.pkl member: not a PyTorch (≥ 1.6) checkpoint");
  return prefix;
}

/* torch ≥ 1.13 records the storages' byte order; older files are little-endian. */
static gboolean
check_byteorder (zip_t *z, const char *prefix, const char *path, GError **error)
{
  char *member = g_strconcat (prefix, "byteorder", NULL);
  zip_int64_t idx = zip_name_locate (z, member, ZIP_FL_ENC_RAW);
  zip_stat_t zs;
  char order[16] = { 0 };
  gboolean ok = TRUE;
  if (idx >= 0)
    {
      if (zip_stat_index (z, (zip_uint64_t) idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) || zs.size >= sizeof order)
        ok = fail (error, OFT_ERROR_CORRUPT, path, "member %s is not \"little\" or \"big\"", member);
      else
        ok = read_member (z, (zip_uint64_t) idx, order, zs.size, path, member, error);
      if (ok && strcmp (order, "little") != 0)
        ok = fail (error, OFT_ERROR_INVALID, path, "storages are stored %s-endian; only little-endian is supported",
                   g_str_has_prefix (order, "big") ? "big" : "in an unknown byte order, not little");
    }
  g_free (member);
  return ok;
}

/* Reads each storage a kept tensor uses; the buffers go to `buffers`. */
static gboolean
load_storages (zip_t *z, const char *prefix, Value *sd, GPtrArray *buffers, const char *path, GError **error)
{
  uint64_t total = 0;
  for (guint i = 1; i < sd->items->len; i += 2)
    {
      Value *t = sd->items->pdata[i];
      if (t->kind != V_TENSOR || t->storage->data)
        continue;
      Storage *s = t->storage;
      char *member = g_strconcat (prefix, "data/", s->key, NULL);
      zip_stat_t zs;
      zip_int64_t idx = zip_name_locate (z, member, ZIP_FL_ENC_RAW);
      gboolean ok = TRUE;
      uint64_t bytes = (uint64_t) s->numel * oft_dtype_size (s->dtype);
      if (idx < 0 || zip_stat_index (z, (zip_uint64_t) idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        ok = fail (error, OFT_ERROR_NOT_FOUND, path, "storage '%s' has no member %s", s->key, member);
      else if (zs.size != bytes)
        ok = fail (error, OFT_ERROR_CORRUPT, path, "member %s holds %" G_GUINT64_FORMAT " bytes, storage '%s' needs %"
                   G_GUINT64_FORMAT " (%" G_GINT64_FORMAT " × %s)", member, (uint64_t) zs.size, s->key, bytes,
                   s->numel, oft_dtype_name (s->dtype));
      else if (bytes > CKPT_MAX_TOTAL - total)
        ok = fail (error, OFT_ERROR_INVALID, path, "storages larger than the %" G_GUINT64_FORMAT "-byte limit",
                   CKPT_MAX_TOTAL);
      if (ok)
        {
          total += bytes;
          s->data = g_try_malloc (bytes ? bytes : 1);
          if (!s->data)
            ok = fail (error, OFT_ERROR_FAILED, path, "out of memory for storage '%s' (%" G_GUINT64_FORMAT " bytes)",
                       s->key, bytes);
          else
            {
              g_ptr_array_add (buffers, s->data);
              ok = read_member (z, (zip_uint64_t) idx, s->data, bytes, path, member, error);
            }
        }
      g_free (member);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

static OftSafetensors *
make_entries (Value *sd, GPtrArray *buffers, const char *path, GError **error)
{
  size_t n = 0;
  OftSafetensorsEntry *entries = g_new0 (OftSafetensorsEntry, sd->items->len / 2 + 1);
  for (guint i = 0; i + 1 < sd->items->len; i += 2)
    {
      Value *key = sd->items->pdata[i], *t = sd->items->pdata[i + 1];
      if (t->kind != V_TENSOR)
        continue;
      if (key->kind != V_STR || memchr (key->s, 0, key->len) || !g_utf8_validate (key->s, (gssize) key->len, NULL))
        {
          fail (error, OFT_ERROR_CORRUPT, path, "a tensor's key is not a UTF-8 string");
          for (size_t j = 0; j < n; j++)
            g_free ((char *) entries[j].name);
          g_free (entries);
          g_ptr_array_unref (buffers);
          return NULL;
        }
      OftSafetensorsEntry *e = &entries[n++];
      size_t es = oft_dtype_size (t->storage->dtype);
      e->name = g_strdup (key->s);
      e->dtype = t->storage->dtype;
      e->ndim = t->ndim;
      memcpy (e->shape, t->shape, sizeof e->shape);
      int64_t numel = 1;
      for (int d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
      /* offsets are relative to the tensor's storage */
      e->begin = (uint64_t) t->offset * es;
      e->end = e->begin + (uint64_t) numel * es;
      e->data = (const uint8_t *) t->storage->data + e->begin;
    }
  return oft_safetensors_new_owned (path, entries, n, buffers, error);
}

OftSafetensors *
oft_ckpt_open (const char *path, GError **error)
{
  zip_t *z = open_zip (path, error);
  if (!z)
    return NULL;
  OftSafetensors *st = NULL;
  uint8_t *pkl = NULL;
  char *prefix = NULL;
  Pickle k = { .path = path, .error = error };
  zip_int64_t n = zip_get_num_entries (z, 0);
  zip_uint64_t pkl_index = 0;
  zip_stat_t zs;
  if (n < 0 || n > CKPT_MAX_MEMBERS)
    {
      fail (error, OFT_ERROR_INVALID, path, "%" G_GINT64_FORMAT " archive members (at most %d)", (gint64) n,
            CKPT_MAX_MEMBERS);
      goto out;
    }
  if (!(prefix = find_prefix (z, n, &pkl_index, path, error)))
    goto out;
  if (zip_stat_index (z, pkl_index, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) || zs.size > CKPT_MAX_PICKLE)
    {
      fail (error, OFT_ERROR_INVALID, path, "data.pkl is larger than %" G_GUINT64_FORMAT " bytes or unreadable",
            (uint64_t) CKPT_MAX_PICKLE);
      goto out;
    }
  if (!check_byteorder (z, prefix, path, error))
    goto out;
  pkl = g_malloc (zs.size + 1);
  pkl[zs.size] = 0;
  if (!read_member (z, pkl_index, pkl, zs.size, path, "data.pkl", error))
    goto out;

  k.p = pkl;
  k.len = zs.size;
  k.pool = g_ptr_array_new_with_free_func (value_free);
  k.stack = g_ptr_array_new ();
  k.memo = g_ptr_array_new ();
  k.storages = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, storage_free);
  Value *root = NULL;
  if (!run_pickle (&k, &root))
    goto out;
  Value *sd = find_state_dict (root);
  if (!sd)
    {
      fail (error, OFT_ERROR_CORRUPT, path, "the checkpoint is not a dict of tensors");
      goto out;
    }
  GPtrArray *buffers = g_ptr_array_new_with_free_func (g_free);
  if (!load_storages (z, prefix, sd, buffers, path, error))
    {
      g_ptr_array_unref (buffers);
      goto out;
    }
  st = make_entries (sd, buffers, path, error);

out:
  if (k.pool)
    {
      g_ptr_array_unref (k.stack);
      g_ptr_array_unref (k.memo);
      g_ptr_array_unref (k.pool);
      g_hash_table_destroy (k.storages);
    }
  g_free (pkl);
  g_free (prefix);
  zip_discard (z);
  return st;
}

OftSafetensors *
oft_weights_open (const char *path, GError **error)
{
  static const char *const torch_ext[] = { ".ckpt", ".pt", ".pth", ".bin" };
  gboolean torch = FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS (torch_ext); i++)
    torch |= g_str_has_suffix (path, torch_ext[i]);
  if (!torch)
    {
      FILE *fp = fopen (path, "rb");
      uint8_t head[4] = { 0 };
      if (fp)
        {
          torch = fread (head, 1, 4, fp) == 4 && memcmp (head, "PK\3\4", 4) == 0;
          fclose (fp);
        }
    }
  return torch ? oft_ckpt_open (path, error) : oft_safetensors_open (path, error);
}
