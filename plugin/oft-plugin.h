/* The GIMP 2.10 host of gimp-oft: procedure values, the procedures themselves (GIMP-independent work
 * goes through oftcore), dialogs, preferences and the recipe parasite. oft-plugin.c registers and
 * dispatches; a GIMP 3 host can keep the value structs, prefs.c and recipe.c and replace the rest. */
#pragma once
#include "oft-config.h"
#include <libgimp/gimp.h>
#include "oft/image.h"
#include <glib/gi18n-lib.h>

#define OFT_PROC_GENERATE  "plug-in-oft-generate"
#define OFT_PROC_TRAIN     "plug-in-oft-train"
#define OFT_PROC_CONDITION "plug-in-oft-condition"
#define OFT_PROC_PREFS     "plug-in-oft-preferences"
#define OFT_PLUG_IN_BINARY "gimp-oft"
#define OFT_RECIPE_PARASITE "oft-recipe"

/* Strings live in fixed arrays so that a struct can be stored with gimp_set_data as it is. */
#define OFT_TEXT_MAX 1024
#define OFT_PATH_MAX 2048

typedef struct {
  char prompt[OFT_TEXT_MAX];
  char negative[OFT_TEXT_MAX];
  char model[OFT_PATH_MAX];        /* "" = preferences */
  char adapters[OFT_PATH_MAX];     /* ';'-separated, "" = none */
  gint32 seed;                     /* -1 = random */
  gint32 steps;
  gdouble guidance;
  char scheduler[32];
  gint32 width, height;            /* 0 = image size */
  char condition[32];              /* none, canny, landmarks, segmentation */
  gint32 condition_drawable;       /* -1 = none */
  gdouble condition_scale;
} OftGenerateVals;

typedef struct {
  char images[OFT_PATH_MAX];       /* "" = the image's visible layers */
  char instance_prompt[OFT_TEXT_MAX];
  char class_prompt[OFT_TEXT_MAX];
  char model[OFT_PATH_MAX];
  char method[16];                 /* oft, coft, boft */
  gint32 block_size;               /* 0 = the trainer's default (4 blocks per module) */
  gdouble eps;
  gint32 steps;
  gdouble lr;
  gint32 resolution;               /* 0 = the model's */
  gint32 seed;
  char out[OFT_PATH_MAX];          /* adapter folder; "" = <adapter folder>/<image name> */
} OftTrainVals;

typedef struct {
  char type[32];                   /* canny, landmarks, segmentation */
  gdouble low, high;               /* Canny thresholds */
} OftConditionVals;

typedef struct {
  char model_folder[OFT_PATH_MAX]; /* default model: diffusers folder or single-file checkpoint */
  char adapter_folder[OFT_PATH_MAX];
  char device[32];                 /* cpu, cuda or auto (oft_device_parse): where generate and train run */
} OftPrefs;

void oft_generate_vals_init (OftGenerateVals *v);
void oft_train_vals_init (OftTrainVals *v);
void oft_condition_vals_init (OftConditionVals *v);

/* Procedures: 0 or a layer id on success; FALSE with *error set otherwise (G_IO_ERROR_CANCELLED when stopped). */
gboolean oft_procedure_generate (gint32 image, gint32 drawable, const OftGenerateVals *v, gint32 *layer,
                                 GError **error);
gboolean oft_procedure_train (gint32 image, gint32 drawable, const OftTrainVals *v, gboolean interactive,
                              GError **error);
gboolean oft_procedure_condition (gint32 image, gint32 drawable, const OftConditionVals *v, gint32 *layer,
                                  GError **error);

/* Dialogs (interactive mode): TRUE when the user pressed OK. */
gboolean oft_dialog_generate (gint32 image, OftGenerateVals *v);
gboolean oft_dialog_train (OftTrainVals *v);
gboolean oft_dialog_condition (OftConditionVals *v);
gboolean oft_dialog_prefs (OftPrefs *p);

/* The training window (interactive mode): a progress bar and a Stop button calling on_stop(data). */
typedef struct _OftStopWindow OftStopWindow;
OftStopWindow *oft_stop_window_new (const char *title, void (*on_stop) (gpointer), gpointer data);
void           oft_stop_window_set (OftStopWindow *w, double fraction, const char *text); /* fraction < 0: keep */
void           oft_stop_window_free (OftStopWindow *w);

/* Preferences: gimp_directory()/oft-preferences.json. A missing file gives the defaults; an unreadable
 * one gives the defaults and a warning in *error (load still succeeds). */
char    *oft_prefs_path (void);
void     oft_prefs_load (OftPrefs *p, GError **warning);
gboolean oft_prefs_save (const OftPrefs *p, GError **error);
/* The model to use: `model` when set, else the preference, else $OFT_DEFAULT_MODEL, else the bundled
 * default model (oft_data_path "default-model"). g_free; NULL with an error saying how to set one. */
char    *oft_prefs_resolve_model (const OftPrefs *p, const char *model, GError **error);
/* An adapter name: an existing path as is, else relative to the preference's adapter folder. */
char    *oft_prefs_resolve_adapter (const OftPrefs *p, const char *name);

/* The generation recipe as JSON (what the "oft-recipe" parasite holds). seed is the one actually used. */
char    *oft_recipe_to_json (const OftGenerateVals *v, const char *model, char **adapters, gint64 seed,
                             int width, int height);
/* Parses a recipe back (for tests and "generate again"); unknown keys are ignored. */
gboolean oft_recipe_from_json (const char *json, OftGenerateVals *v, GError **error);

/* A new RGB layer of rgb8 (interleaved, w×h) named `name`, directly above `anchor` (a layer, or -1 for
 * the top) at its offsets; -1 with *error set on failure. The caller opens the undo group. */
gint32 oft_layer_from_rgb8 (gint32 image, gint32 anchor, const char *name, const guint8 *rgb8, int w, int h,
                            GError **error);

/* Copies s into a fixed array, truncating on a UTF-8 boundary. */
void oft_strlcpy (char *dst, const char *s, size_t size);
/* gimp_progress_update with the fraction done/total. */
gboolean oft_progress_cb (int done, int total, gpointer user_data);

/* A drawable's pixels as 8-bit non-linear RGBA. */
OftImage *oft_plugin_read_drawable (gint32 drawable);
