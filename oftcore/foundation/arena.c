#include "oft/tensor.h"
#include "oft/error.h"
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

struct _OftArenaChunk {
  OftArenaChunk *prev;
  size_t size;    /* usable bytes in data[] */
  size_t offset;  /* bytes used in this chunk */
  char *data;     /* ARENA_ALIGN-aligned */
};

void
oft_arena_init (OftArena *arena, const char *name, size_t chunk_size)
{
  memset (arena, 0, sizeof *arena);
  arena->name = name;
  arena->chunk_size = chunk_size ? chunk_size : (size_t) 64 << 20;
}

/* NULL when the system refuses: a model too large for the memory (or the address-space limit) must
 * become an error naming the size, not g_malloc's abort. */
static OftArenaChunk *
chunk_new (size_t size)
{
  void *data = NULL;
  if (posix_memalign (&data, ARENA_ALIGN, size) != 0)
    return NULL;
  memset (data, 0, size);
  OftArenaChunk *c = g_new0 (OftArenaChunk, 1);
  c->size = size;
  c->data = data;
  return c;
}

static void
chunk_free (OftArenaChunk *c)
{
  free (c->data);
  g_free (c);
}

static void *
arena_take (OftArena *arena, size_t bytes, gboolean zero, GError **error)
{
  if (bytes > G_MAXSIZE - ARENA_ALIGN)
    bytes = G_MAXSIZE - ARENA_ALIGN; /* fails below with the size asked for */
  size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t) (ARENA_ALIGN - 1);
  if (need == 0)
    need = ARENA_ALIGN;
  OftArenaChunk *c = arena->head;
  if (!c || c->size - c->offset < need)
    {
      /* reuse a spare chunk from an earlier reset (no page faults, no mmap), else open a new one */
      OftArenaChunk **sp = &arena->spare, *n = NULL;
      for (; *sp; sp = &(*sp)->prev)
        if ((*sp)->size >= need)
          {
            n = *sp;
            *sp = n->prev;
            break;
          }
      if (!n)
        {
          size_t size = need > arena->chunk_size ? need : arena->chunk_size;
          n = chunk_new (size);
          if (!n)
            {
              g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_FAILED,
                           "cannot allocate %.1f MiB for %s (%.1f MiB held already): out of memory",
                           (double) size / (1 << 20), arena->name ? arena->name : "an arena",
                           (double) arena->reserved / (1 << 20));
              return NULL;
            }
          arena->reserved += size;
        }
      n->offset = 0;
      n->prev = c;
      arena->head = c = n;
    }
  void *p = c->data + c->offset;
  if (zero) /* a chunk reused after reset may hold old data */
    memset (p, 0, need);
  c->offset += need;
  arena->used += need;
  if (arena->used > arena->peak)
    arena->peak = arena->used;
  return p;
}

/* The plain allocators end the program when memory runs out (with the size and the arena), except in
 * a checked section: there the first refusal is kept and this and every later allocation give NULL. */
static void *
take_or_die (OftArena *arena, size_t bytes, gboolean zero)
{
  if (arena->failure)
    return NULL;
  GError *error = NULL;
  void *p = arena_take (arena, bytes, zero, &error);
  if (!p && arena->checked == 0)
    g_error ("%s", error->message);
  if (!p)
    arena->failure = error;
  return p;
}

void
oft_arena_begin_checked (OftArena *arena)
{
  arena->checked++;
}

gboolean
oft_arena_failed (const OftArena *arena)
{
  return arena->failure != NULL;
}

gboolean
oft_arena_end_checked (OftArena *arena, GError **error)
{
  g_return_val_if_fail (arena->checked > 0, FALSE);
  if (--arena->checked > 0)
    {
      if (arena->failure)
        g_propagate_error (error, g_error_copy (arena->failure));
      return arena->failure == NULL;
    }
  if (!arena->failure)
    return TRUE;
  g_propagate_error (error, arena->failure);
  arena->failure = NULL;
  /* what the failed computation took stays as spare chunks: give it back for whatever runs next */
  oft_arena_trim (arena);
  return FALSE;
}

void *
oft_arena_alloc (OftArena *arena, size_t bytes)
{
  return take_or_die (arena, bytes, TRUE);
}

void *
oft_arena_try_alloc (OftArena *arena, size_t bytes, GError **error)
{
  return arena_take (arena, bytes, TRUE, error);
}

float *
oft_arena_try_scratch (OftArena *arena, size_t n, GError **error)
{
  if (n > G_MAXSIZE / sizeof (float))
    n = G_MAXSIZE / sizeof (float);
  return arena_take (arena, n * sizeof (float), FALSE, error);
}

float *
oft_arena_floats (OftArena *arena, size_t n)
{
  if (n > G_MAXSIZE / sizeof (float))
    n = G_MAXSIZE / sizeof (float);
  return take_or_die (arena, n * sizeof (float), TRUE);
}

float *
oft_arena_scratch (OftArena *arena, size_t n)
{
  if (n > G_MAXSIZE / sizeof (float))
    n = G_MAXSIZE / sizeof (float);
  return take_or_die (arena, n * sizeof (float), FALSE);
}

OftTensor
oft_arena_tensor (OftArena *arena, OftDType dtype, int ndim, const int64_t *shape)
{
  OftTensor t = { .dtype = dtype, .ndim = ndim };
  g_return_val_if_fail (ndim >= 0 && ndim <= OFT_MAX_DIMS, t);
  memcpy (t.shape, shape, sizeof (int64_t) * (size_t) ndim);
  t.data = oft_arena_alloc (arena, oft_tensor_nbytes (&t));
  return t;
}

OftArenaMark
oft_arena_mark (const OftArena *arena)
{
  OftArenaMark m = { arena->head, arena->head ? arena->head->offset : 0, arena->used };
  return m;
}

void
oft_arena_reset (OftArena *arena, OftArenaMark mark)
{
  while (arena->head && arena->head != mark.chunk)
    {
      OftArenaChunk *c = arena->head;
      arena->head = c->prev;
      c->prev = arena->spare;
      arena->spare = c;
    }
  if (arena->head)
    arena->head->offset = mark.offset;
  arena->used = mark.used;
}

static void
free_chain (OftArena *arena, OftArenaChunk *c)
{
  while (c)
    {
      OftArenaChunk *prev = c->prev;
      arena->reserved -= c->size;
      chunk_free (c);
      c = prev;
    }
}

void
oft_arena_trim (OftArena *arena)
{
  free_chain (arena, arena->spare);
  arena->spare = NULL;
}

void
oft_arena_release (OftArena *arena)
{
  free_chain (arena, arena->head);
  arena->head = NULL;
  oft_arena_trim (arena);
  arena->used = arena->peak = 0;
  g_clear_error (&arena->failure);
  arena->checked = 0;
}

void
oft_arena_foreach_chunk (const OftArena *arena, OftArenaChunkFunc fn, gpointer user_data)
{
  for (const OftArenaChunk *c = arena->head; c; c = c->prev)
    if (c->offset > 0)
      fn (c->data, c->offset, user_data);
}
