/* Reading a model's config.json: typed getters with defaults and range checks, sticky error. */
#pragma once
#include <json-glib/json-glib.h>
#include "oft/error.h"

typedef struct {
  char *path;
  JsonParser *parser;
  JsonObject *obj;
  GError *error;  /* the first failure, owned */
} OftConfig;

gboolean    oft_config_open (OftConfig *c, const char *path, GError **error);
void        oft_config_close (OftConfig *c);
/* A missing key gives `def`; a present key of the wrong type or outside [min, max] fails. */
int         oft_config_int (OftConfig *c, const char *key, int def, int min, int max);
double      oft_config_double (OftConfig *c, const char *key, double def, double min, double max);
gboolean    oft_config_bool (OftConfig *c, const char *key, gboolean def);
const char *oft_config_string (OftConfig *c, const char *key, const char *def);
/* An int array (or a single int repeated n times); fails unless it has n elements in [min, max]. */
gboolean    oft_config_int_list (OftConfig *c, const char *key, int *out, int n, int def, int min, int max);
/* A string array of exactly n elements (NULL-terminated copy, g_strfreev) or NULL on failure. */
char      **oft_config_string_list (OftConfig *c, const char *key, int *n);
gboolean    oft_config_finish (OftConfig *c, GError **error);
