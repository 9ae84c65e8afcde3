/* For readers of other containers (torch .ckpt) that hand their tensors to the OftSafetensors
 * accessors: an instance built from entries whose data lives in buffers the instance then owns. */
#pragma once
#include "oft/safetensors.h"

/* Takes ownership of `entries` (n of them, g_new; each name g_strdup'ed, each data pointing into one
 * of `buffers`) and of `buffers` (a GPtrArray freeing its elements). Fails (and frees all of it) when
 * two entries share a name. */
OftSafetensors *oft_safetensors_new_owned (const char *path, OftSafetensorsEntry *entries, size_t n,
                                           GPtrArray *buffers, GError **error);

/* Sets an OFT_IO_ERROR "<path>: <message>" and returns FALSE. */
gboolean oft_io_fail (GError **error, int code, const char *path, const char *fmt, ...) G_GNUC_PRINTF (4, 5);
