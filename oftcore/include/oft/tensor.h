/* Tensors, dtypes and arenas: the foundation every layer, model and file reader uses. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include <stddef.h>

G_BEGIN_DECLS

typedef enum {
  OFT_DTYPE_F32,
  OFT_DTYPE_F16,
  OFT_DTYPE_BF16,
  OFT_DTYPE_I32,
  OFT_DTYPE_I64,
  OFT_DTYPE_COUNT
} OftDType;

#define OFT_MAX_DIMS 8

/* A view: shape and dtype over memory it does not own (an arena, an mmap, a caller's buffer).
 * Always contiguous, row-major, PyTorch's dimension order. */
typedef struct {
  OftDType dtype;
  int ndim;
  int64_t shape[OFT_MAX_DIMS];
  void *data;
} OftTensor;

size_t      oft_dtype_size (OftDType dtype);
/* safetensors spelling: "F32", "F16", "BF16", "I32", "I64". */
const char *oft_dtype_name (OftDType dtype);
gboolean    oft_dtype_from_name (const char *name, OftDType *dtype);

int64_t  oft_tensor_numel (const OftTensor *t);
size_t   oft_tensor_nbytes (const OftTensor *t);
gboolean oft_tensor_shape_equals (const OftTensor *t, int ndim, const int64_t *shape);
/* "[2, 5, 64]"; free with g_free. */
char    *oft_shape_to_string (int ndim, const int64_t *shape);
/* Product of dims with overflow check; FALSE on a negative dim or overflow past `limit`. */
gboolean oft_shape_numel_checked (int ndim, const int64_t *shape, int64_t limit, int64_t *numel);

/* Half-precision conversions, round to nearest even (like torch's .half()/.bfloat16()). */
float    oft_f16_to_f32 (uint16_t h);
uint16_t oft_f32_to_f16 (float f);
float    oft_bf16_to_f32 (uint16_t h);
uint16_t oft_f32_to_bf16 (float f);
/* n elements of `src` (any dtype) to f32, and back (integer targets round to nearest). */
void oft_convert_to_f32 (float *dst, const void *src, OftDType src_dtype, size_t n);
void oft_convert_from_f32 (void *dst, OftDType dst_dtype, const float *src, size_t n);

/* Arenas: bump allocation in large chunks with explicit lifetimes.
 * A model keeps parameters and gradients in one arena for its whole life; activations live in
 * another that is rewound to a mark after each step. Allocations are 64-byte aligned and zeroed. */
typedef struct _OftArenaChunk OftArenaChunk;
typedef struct {
  const char *name;      /* for messages and bench reports */
  size_t chunk_size;     /* default size of a new chunk */
  OftArenaChunk *head;   /* current chunk; older chunks follow ->prev */
  OftArenaChunk *spare;  /* chunks freed by a reset, kept for reuse */
  size_t used;           /* bytes handed out now */
  size_t peak;           /* high-water mark of `used` */
  size_t reserved;       /* bytes held from the system */
  int checked;           /* depth of oft_arena_begin_checked sections */
  GError *failure;       /* the first allocation refused inside them */
} OftArena;

typedef struct {
  OftArenaChunk *chunk;
  size_t offset;
  size_t used;
} OftArenaMark;

void       oft_arena_init (OftArena *arena, const char *name, size_t chunk_size);
void      *oft_arena_alloc (OftArena *arena, size_t bytes);
float     *oft_arena_floats (OftArena *arena, size_t n);
/* n floats whose contents are undefined: for buffers a kernel overwrites completely (saves the
 * zeroing, which costs as much as a small layer). */
float     *oft_arena_scratch (OftArena *arena, size_t n);
/* As oft_arena_alloc / oft_arena_scratch, but NULL and an error ("cannot allocate N MiB for <arena>")
 * when the system refuses the memory; the plain ones end the program with that message. */
void      *oft_arena_try_alloc (OftArena *arena, size_t bytes, GError **error);
float     *oft_arena_try_scratch (OftArena *arena, size_t n, GError **error);
/* Checked sections, for computations whose activations may not fit (an image too large for the
 * memory): inside one, an allocation the system refuses does not end the program; it returns NULL,
 * and so does every later allocation from the arena until the section ends. Code that runs inside
 * tests oft_arena_failed() before it uses what it allocated (and returns without computing when it
 * is set). oft_arena_end_checked gives the first refusal as an error ("cannot allocate N MiB for
 * <arena> ...") and returns FALSE, after which the arena works normally again. Sections nest; only
 * the outermost end clears the failure (inner ones report a copy). */
void       oft_arena_begin_checked (OftArena *arena);
gboolean   oft_arena_failed (const OftArena *arena);
gboolean   oft_arena_end_checked (OftArena *arena, GError **error);
/* A tensor of the given shape with zeroed storage in the arena. */
OftTensor  oft_arena_tensor (OftArena *arena, OftDType dtype, int ndim, const int64_t *shape);
OftArenaMark oft_arena_mark (const OftArena *arena);
/* Frees everything allocated after `mark`. Chunks opened after it are kept as spares, so a loop
 * that allocates the same sizes every step touches no new memory after its first step. */
void       oft_arena_reset (OftArena *arena, OftArenaMark mark);
/* Returns the spare chunks to the system. */
void       oft_arena_trim (OftArena *arena);
/* Frees everything. */
void       oft_arena_release (OftArena *arena);
/* Calls fn for every chunk in use (not the spares kept by a reset), newest first, with its start and
 * the bytes handed out from it: for copying an arena elsewhere (a GPU) and mapping its pointers there
 * by their offset inside their chunk. */
typedef void (*OftArenaChunkFunc) (const void *base, size_t used, gpointer user_data);
void       oft_arena_foreach_chunk (const OftArena *arena, OftArenaChunkFunc fn, gpointer user_data);

G_END_DECLS
