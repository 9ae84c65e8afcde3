/* Shared by the fuzz targets: the readers take paths, so each input is written to a file in a
 * private temporary folder first (tmpfs when /dev/shm exists, so no disk I/O per execution). */
#pragma once
#include <glib.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Writes data to <tmpdir>/<name> (replacing it) and returns the path (owned by the helper, valid
 * until the next call with the same name). Aborts on I/O failure: that is the harness, not a find. */
const char *fuzz_write (const char *name, const void *data, size_t size);
/* The private temporary folder (created on first use, removed at exit). */
const char *fuzz_dir (void);
/* Splits data at the separator FUZZ_SEP into at most n parts; parts beyond the input are empty.
 * Multi-file targets (adapter folder, tokenizer) take their files this way. */
#define FUZZ_SEP "\n=====\n"
void fuzz_split (const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int n);
/* Drops the error if any (the readers must fail cleanly; the message itself is checked elsewhere). */
void fuzz_clear (GError **error);
