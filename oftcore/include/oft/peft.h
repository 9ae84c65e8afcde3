/* PEFT adapter folders (adapter_config.json + adapter_model.safetensors) for OFT and BOFT.
 * Keys: base_model.model.<module>.oft_R.weight, or base_model.model.<module>.boft_R / .boft_s.
 * The config is kept as read, unknown keys included, so that a load → save round trip loses nothing. */
#pragma once
#include <glib.h>
#include "oft/tensor.h"
#include "oft/adapters.h"

G_BEGIN_DECLS

typedef struct {
  char *module;        /* module path inside the base model, e.g. "down_blocks.0.attentions.0.proj_in" */
  OftTensor param;     /* oft_R.weight or boft_R, f32, owned */
  OftTensor scale;     /* boft_s, f32, owned; ndim 0 for OFT */
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
/* Adds (copies) one module's tensors; scale may be NULL. */
gboolean oft_peft_adapter_add_module (OftPeftAdapter *a, const char *module, const OftTensor *param,
                                      const OftTensor *scale, GError **error);
/* The config as JSON text (pretty-printed, PEFT's key order kept); g_free. */
char *oft_peft_adapter_config_json (const OftPeftAdapter *a);

G_END_DECLS
