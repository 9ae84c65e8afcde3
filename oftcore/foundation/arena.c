#include "oft/tensor.h"
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

static OftArenaChunk *
chunk_new (size_t size)
{
  OftArenaChunk *c = g_new0 (OftArenaChunk, 1);
  c->size = size;
  c->data = g_aligned_alloc0 (1, size, ARENA_ALIGN);
  return c;
}

static void
chunk_free (OftArenaChunk *c)
{
  g_aligned_free (c->data);
  g_free (c);
}

static void *
arena_take (OftArena *arena, size_t bytes, gboolean zero)
{
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

void *
oft_arena_alloc (OftArena *arena, size_t bytes)
{
  return arena_take (arena, bytes, TRUE);
}

float *
oft_arena_floats (OftArena *arena, size_t n)
{
  return arena_take (arena, n * sizeof (float), TRUE);
}

float *
oft_arena_scratch (OftArena *arena, size_t n)
{
  return arena_take (arena, n * sizeof (float), FALSE);
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
}
