/* PEFT adapter folders (adapter_config.json + adapter_model.safetensors) for OFT and BOFT.
 * Keys: base_model.model.<module>.oft_R.weight, or base_model.model.<module>.boft_R / .boft_s; our
 * extension for a fitted magnitude: "gimp_oft_magnitude": true and <module>.oft_s [out, 1] (see
 * OftAdapterConfig.magnitude; PEFT loads such a folder as plain OFT, without the scales).
 * The config is kept as read, unknown keys included, so that a load → save round trip loses nothing. */
#pragma once
#include <glib.h>
#include "oft/tensor.h"
#include "oft/adapters.h"

G_BEGIN_DECLS

typedef struct {
  char *module;        /* module path inside the base model, e.g. "down_blocks.0.attentions.0.proj_in" */
  OftTensor param;     /* oft_R.weight or boft_R, f32, owned */
  OftTensor scale;     /* boft_s, or OFT's magnitude oft_s, f32, owned; ndim 0 when absent */
} OftAdapterModule;

typedef struct _OftPeftAdapter OftPeftAdapter;

/* Reads and validates a folder: config keys PEFT needs (peft_type; oft_block_size or r for OFT;
 * boft_block_size/boft_block_num and boft_n_butterfly_factor for BOFT), tensor keys and shapes.
 * Errors name the file and the key. */
OftPeftAdapter *oft_peft_adapter_load (const char *dir, GError **error);
/* A new adapter with PEFT's default config for `cfg`, no modules yet. */
OftPeftAdapter *oft_peft_adapter_new (const OftAdapterConfig *cfg, const char *const *target_modules);
void            oft_peft_adapter_free (OftPeftAdapter *a);
/* Writes both files atomically into dir (created if missing). */
gboolean        oft_peft_adapter_save (const OftPeftAdapter *a, const char *dir, GError **error);

const OftAdapterConfig *oft_peft_adapter_config (const OftPeftAdapter *a);
size_t                  oft_peft_adapter_n_modules (const OftPeftAdapter *a);
const OftAdapterModule *oft_peft_adapter_module (const OftPeftAdapter *a, size_t i);
const OftAdapterModule *oft_peft_adapter_find (const OftPeftAdapter *a, const char *module);
/* Replaces (copies) module i's per-output scale ([out, 1]): boft_s, or for OFT the fitted magnitude,
 * which turns on "gimp_oft_magnitude" (then every module needs one before the adapter is saved). */
gboolean oft_peft_adapter_set_scale (OftPeftAdapter *a, size_t i, const OftTensor *scale, GError **error);
/* Adds (copies) one module's tensors; scale may be NULL (required for BOFT and for OFT with magnitude). */
gboolean oft_peft_adapter_add_module (OftPeftAdapter *a, const char *module, const OftTensor *param,
                                      const OftTensor *scale, GError **error);
/* The config as JSON text (pretty-printed, PEFT's key order kept); g_free. */
char *oft_peft_adapter_config_json (const OftPeftAdapter *a);

G_END_DECLS
