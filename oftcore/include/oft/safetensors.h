/* safetensors: an mmap reader with a bounds-checked header, and an atomic writer.
 * Format: u64-LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[begin,end]}, ...,
 * "__metadata__": {str: str}}, then the byte buffer; offsets are relative to the buffer. */
#pragma once
#include <glib.h>
#include "oft/tensor.h"

G_BEGIN_DECLS

#define OFT_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)  /* larger headers are refused */

typedef struct {
  const char *name;
  OftDType dtype;
  int ndim;
  int64_t shape[OFT_MAX_DIMS];
  uint64_t begin, end;      /* offsets into the data buffer */
  const void *data;         /* points into the mapping; valid until close */
} OftSafetensorsEntry;

typedef struct _OftSafetensors OftSafetensors;

/* Maps the file and validates the whole header: JSON syntax, UTF-8 names, known dtypes, shapes that
 * match the byte ranges, ranges inside the file, no two ranges overlapping. Errors (OFT_IO_ERROR)
 * name the file and the offending tensor. */
OftSafetensors *oft_safetensors_open (const char *path, GError **error);
/* A PyTorch checkpoint (.ckpt/.pt/.pth written by torch.save ≥ 1.6: a zip of data.pkl + storages)
 * read without executing anything: the pickle may only build dicts of tensors (collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.{Float,Half,BFloat16,Int,Long}Storage);
 * any other global is refused. The tensors of the top-level dict, or of its "state_dict" member, become
 * entries (other values are ignored); they must be contiguous. Storages are read into memory (no mmap),
 * entries' begin/end are byte offsets into their own storage. Same accessors, closed with
 * oft_safetensors_close; metadata is NULL. */
OftSafetensors *oft_ckpt_open (const char *path, GError **error);
/* oft_ckpt_open for names ending in .ckpt, .pt, .pth or .bin and for files starting with a zip
 * signature; oft_safetensors_open otherwise. */
OftSafetensors *oft_weights_open (const char *path, GError **error);
void            oft_safetensors_close (OftSafetensors *st);
const char     *oft_safetensors_path (const OftSafetensors *st);
/* Entries in data-offset order. */
size_t          oft_safetensors_count (const OftSafetensors *st);
const OftSafetensorsEntry *oft_safetensors_entry (const OftSafetensors *st, size_t i);
const OftSafetensorsEntry *oft_safetensors_find (const OftSafetensors *st, const char *name);
/* `__metadata__` (string → string); NULL when absent. Owned by st. */
GHashTable     *oft_safetensors_metadata (const OftSafetensors *st);
/* A view of an entry (data in the mapping, read-only even though the pointer is not const). */
OftTensor       oft_safetensors_view (const OftSafetensorsEntry *e);
/* Copies tensor `name` converted to f32 into dst after checking that its shape is exactly `shape`
 * (ndim < 0 skips the check and dst must hold numel floats). */
gboolean        oft_safetensors_read_f32 (const OftSafetensors *st, const char *name, float *dst,
                                          int ndim, const int64_t *shape, GError **error);
/* Newly allocated f32 copy (g_free) of tensor `name`; numel in *numel when non-NULL. */
float          *oft_safetensors_dup_f32 (const OftSafetensors *st, const char *name,
                                         int64_t *numel, GError **error);

/* Where a model's tensors come from: an open container and an optional map from the diffusers name a
 * model asks for to the container's own name (LDM single files, prefixed state dicts). The map returns
 * a newly allocated name, or NULL when the container has no such tensor. */
typedef char *(*OftNameMap) (const char *name, gpointer data);
typedef struct {
  const OftSafetensors *st;  /* NULL: a weights file that could not be opened; loading fails with open_error */
  OftNameMap map;            /* NULL: names are used as they are */
  gpointer map_data;
  const GError *open_error;
  /* st NULL and random_init: every tensor is drawn (weights N(0, 1/fan_in), 1-D weights 1 and biases
   * 0) from this seed instead of read: models of any size for benchmarks, no file needed */
  gboolean random_init;
  guint64 seed;
} OftWeightSource;

/* Writes tensors (name[i], tensors[i]) and optional metadata (string → string, may be NULL)
 * atomically: a temporary file beside `path`, fsync, rename, fsync of the folder. On any failure
 * the previous file at `path` is untouched and the temporary file is removed. */
gboolean oft_safetensors_write (const char *path, size_t n, const char *const *names,
                                const OftTensor *tensors, GHashTable *metadata, GError **error);

/* Atomic replacement of `path` by `len` bytes of `data` (same guarantees as above). */
gboolean oft_file_write_atomic (const char *path, const void *data, size_t len, GError **error);
/* Removes the temporary files (".NAME.XXXXXX" beside `path`) that writes of `path` killed midway left
 * behind; returns how many. Only for a file no other process is writing at the same time. */
int oft_file_remove_stale_temps (const char *path);

G_END_DECLS
