/* GTK 2 dialogs of the OFT filters (gimpui). Each dialog is a table of fields described by data, so a
 * procedure's dialog is a list of its values; the values come back only when the user presses OK. */
#include "oft-plugin.h"
#include <libgimp/gimpui.h>
#include <string.h>

typedef enum { F_TEXT, F_INT, F_DOUBLE, F_CHOICE, F_DRAWABLE } FieldKind;

typedef struct {
  FieldKind kind;
  const char *label;       /* translated */
  void *value;             /* char[size], gint32 or gdouble */
  size_t size;
  double min, max, step;
  int digits;
  const char *const *choices; /* F_CHOICE: NULL-terminated, stored as the string itself */
  const char *tooltip;     /* translated, may be NULL */
  GtkWidget *widget;
} Field;

static GtkWidget *
field_widget (Field *f)
{
  switch (f->kind)
    {
    case F_TEXT:
      {
        GtkWidget *e = gtk_entry_new ();
        gtk_entry_set_text (GTK_ENTRY (e), f->value);
        gtk_entry_set_width_chars (GTK_ENTRY (e), 40);
        gtk_entry_set_activates_default (GTK_ENTRY (e), TRUE);
        return e;
      }
    case F_INT:
    case F_DOUBLE:
      {
        GtkWidget *s = gtk_spin_button_new_with_range (f->min, f->max, f->step);
        gtk_spin_button_set_digits (GTK_SPIN_BUTTON (s), f->kind == F_INT ? 0 : f->digits);
        gtk_spin_button_set_value (GTK_SPIN_BUTTON (s), f->kind == F_INT ? *(gint32 *) f->value
                                                                          : *(gdouble *) f->value);
        gtk_entry_set_activates_default (GTK_ENTRY (s), TRUE);
        return s;
      }
    case F_CHOICE:
      {
        GtkWidget *c = gtk_combo_box_text_new ();
        int active = 0;
        for (int i = 0; f->choices[i]; i++)
          {
            gtk_combo_box_text_append_text (GTK_COMBO_BOX_TEXT (c), f->choices[i]);
            if (strcmp (f->choices[i], f->value) == 0)
              active = i;
          }
        gtk_combo_box_set_active (GTK_COMBO_BOX (c), active);
        return c;
      }
    case F_DRAWABLE:
      {
        GtkWidget *c = gimp_drawable_combo_box_new (NULL, NULL);
        gimp_int_combo_box_prepend (GIMP_INT_COMBO_BOX (c), GIMP_INT_STORE_VALUE, -1, GIMP_INT_STORE_LABEL,
                                    _("(none)"), -1);
        gint32 id = *(gint32 *) f->value;
        if (!gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (c), id))
          gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (c), -1);
        return c;
      }
    }
  return NULL;
}

static void
field_read (Field *f)
{
  switch (f->kind)
    {
    case F_TEXT:
      oft_strlcpy (f->value, gtk_entry_get_text (GTK_ENTRY (f->widget)), f->size);
      break;
    case F_INT:
      *(gint32 *) f->value = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (f->widget));
      break;
    case F_DOUBLE:
      *(gdouble *) f->value = gtk_spin_button_get_value (GTK_SPIN_BUTTON (f->widget));
      break;
    case F_CHOICE:
      {
        int i = gtk_combo_box_get_active (GTK_COMBO_BOX (f->widget));
        if (i >= 0)
          oft_strlcpy (f->value, f->choices[i], f->size);
        break;
      }
    case F_DRAWABLE:
      {
        gint id = -1;
        gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (f->widget), &id);
        *(gint32 *) f->value = id;
        break;
      }
    }
}

/* Runs a dialog of `n` fields for `proc`; TRUE (values written back) on OK. */
static gboolean
run_fields (const char *proc, const char *title, Field *fields, int n)
{
  GtkWidget *dialog = gimp_dialog_new (title, OFT_PLUG_IN_BINARY, NULL, 0, gimp_standard_help_func, proc,
                                       _("_Cancel"), GTK_RESPONSE_CANCEL, _("_OK"), GTK_RESPONSE_OK, NULL);
  gtk_dialog_set_alternative_button_order (GTK_DIALOG (dialog), GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL, -1);
  gimp_window_set_transient (GTK_WINDOW (dialog));
  GtkWidget *table = gtk_table_new (n, 2, FALSE);
  gtk_table_set_col_spacings (GTK_TABLE (table), 6);
  gtk_table_set_row_spacings (GTK_TABLE (table), 4);
  gtk_container_set_border_width (GTK_CONTAINER (table), 12);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (dialog))), table, TRUE, TRUE, 0);
  for (int i = 0; i < n; i++)
    {
      fields[i].widget = field_widget (&fields[i]);
      if (fields[i].tooltip)
        gimp_help_set_help_data (fields[i].widget, fields[i].tooltip, NULL);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, i, fields[i].label, 0.0, 0.5, fields[i].widget, 1, FALSE);
    }
  gtk_widget_show_all (dialog);
  gboolean ok = gimp_dialog_run (GIMP_DIALOG (dialog)) == GTK_RESPONSE_OK;
  if (ok)
    for (int i = 0; i < n; i++)
      field_read (&fields[i]);
  gtk_widget_destroy (dialog);
  return ok;
}

#define TEXT(l, v, tip) { F_TEXT, l, v, sizeof v, 0, 0, 0, 0, NULL, tip, NULL }
#define INT(l, v, lo, hi, tip) { F_INT, l, &(v), 0, lo, hi, 1, 0, NULL, tip, NULL }
#define DBL(l, v, lo, hi, st, dg, tip) { F_DOUBLE, l, &(v), 0, lo, hi, st, dg, NULL, tip, NULL }
#define CHOICE(l, v, ch) { F_CHOICE, l, v, sizeof v, 0, 0, 0, 0, ch, NULL, NULL }

gboolean
oft_dialog_generate (gint32 image, OftGenerateVals *v)
{
  static const char *const schedulers[] = { "ddim", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", NULL };
  static const char *const conditions[] = { "none", "canny", "landmarks", "segmentation", NULL };
  Field f[] = {
    TEXT (_("_Prompt:"), v->prompt, NULL),
    TEXT (_("_Negative prompt:"), v->negative, NULL),
    TEXT (_("_Model:"), v->model, _("Diffusers pipeline folder or SD 1.x checkpoint; empty = the preference")),
    TEXT (_("_Adapters:"), v->adapters, _("Adapter folders separated by ';', applied in order")),
    INT (_("_Seed:"), v->seed, -1, G_MAXINT32, _("-1 = a new random seed each time")),
    INT (_("S_teps:"), v->steps, 1, 1000, NULL),
    DBL (_("_Guidance:"), v->guidance, 0, 50, 0.5, 1, NULL),
    CHOICE (_("Sc_heduler:"), v->scheduler, schedulers),
    INT (_("_Width:"), v->width, 0, 4096, _("0 = the image width")),
    INT (_("H_eight:"), v->height, 0, 4096, _("0 = the image height")),
    CHOICE (_("_Condition:"), v->condition, conditions),
    { F_DRAWABLE, _("Condition _layer:"), &v->condition_drawable, 0, 0, 0, 0, 0, NULL, NULL, NULL },
    DBL (_("Condition _scale:"), v->condition_scale, 0, 2, 0.05, 2, NULL),
  };
  return run_fields (OFT_PROC_GENERATE, _("OFT Generate"), f, G_N_ELEMENTS (f));
}

gboolean
oft_dialog_train (OftTrainVals *v)
{
  static const char *const methods[] = { "oft", "coft", "boft", NULL };
  Field f[] = {
    TEXT (_("_Images folder:"), v->images, _("Empty = the image's visible layers")),
    TEXT (_("_Instance prompt:"), v->instance_prompt, NULL),
    TEXT (_("C_lass prompt:"), v->class_prompt, _("Empty = no prior preservation")),
    TEXT (_("_Model:"), v->model, _("Diffusers pipeline folder; empty = the preference")),
    CHOICE (_("M_ethod:"), v->method, methods),
    INT (_("_Block size:"), v->block_size, 0, 4096, _("0 = four blocks per module")),
    DBL (_("COFT _eps:"), v->eps, 0, 1, 1e-5, 6, NULL),
    INT (_("S_teps:"), v->steps, 1, 100000, NULL),
    DBL (_("_Learning rate:"), v->lr, 0, 1, 1e-5, 7, NULL),
    INT (_("_Resolution:"), v->resolution, 0, 2048, _("0 = the model's")),
    INT (_("_Seed:"), v->seed, 0, G_MAXINT32, NULL),
    TEXT (_("_Output folder:"), v->out, _("An existing checkpoint there is resumed")),
  };
  return run_fields (OFT_PROC_TRAIN, _("OFT Train Adapter"), f, G_N_ELEMENTS (f));
}

gboolean
oft_dialog_condition (OftConditionVals *v)
{
  static const char *const types[] = { "canny", "landmarks", "segmentation", NULL };
  Field f[] = {
    CHOICE (_("_Type:"), v->type, types),
    DBL (_("_Low threshold:"), v->low, 0, 1000, 1, 0, _("Canny only")),
    DBL (_("_High threshold:"), v->high, 0, 1000, 1, 0, _("Canny only")),
  };
  return run_fields (OFT_PROC_CONDITION, _("OFT Condition Layer"), f, G_N_ELEMENTS (f));
}

gboolean
oft_dialog_prefs (OftPrefs *p)
{
  static const char *const devices[] = { "cpu", "auto", "cuda", NULL };
  Field f[] = {
    TEXT (_("Default _model:"), p->model_folder, NULL),
    TEXT (_("_Adapter folder:"), p->adapter_folder, NULL),
    CHOICE (_("_Device:"), p->device, devices),
  };
  return run_fields (OFT_PROC_PREFS, _("OFT Preferences"), f, G_N_ELEMENTS (f));
}

/* ---- the training window: progress and a Stop button that asks the worker to checkpoint and exit ---- */

struct _OftStopWindow {
  GtkWidget *dialog, *bar, *label;
  void (*on_stop) (gpointer);
  gpointer data;
};

static void
on_response (GtkDialog *d, gint response, OftStopWindow *w)
{
  gtk_widget_set_sensitive (gtk_dialog_get_widget_for_response (d, GTK_RESPONSE_CANCEL), FALSE);
  gtk_label_set_text (GTK_LABEL (w->label), _("Stopping: writing a checkpoint..."));
  w->on_stop (w->data);
}

static gboolean
on_delete (GtkWidget *widget, GdkEvent *event, OftStopWindow *w)
{
  if (gtk_widget_get_sensitive (gtk_dialog_get_widget_for_response (GTK_DIALOG (w->dialog), GTK_RESPONSE_CANCEL)))
    on_response (GTK_DIALOG (w->dialog), GTK_RESPONSE_CANCEL, w);
  return TRUE;
}

OftStopWindow *
oft_stop_window_new (const char *title, void (*on_stop) (gpointer), gpointer data)
{
  OftStopWindow *w = g_new0 (OftStopWindow, 1);
  w->on_stop = on_stop;
  w->data = data;
  w->dialog = gimp_dialog_new (title, OFT_PLUG_IN_BINARY, NULL, 0, NULL, NULL, _("_Stop"), GTK_RESPONSE_CANCEL, NULL);
  GtkWidget *box = gtk_vbox_new (FALSE, 6);
  gtk_container_set_border_width (GTK_CONTAINER (box), 12);
  w->label = gtk_label_new (_("Starting the worker..."));
  gtk_misc_set_alignment (GTK_MISC (w->label), 0.0, 0.5);
  w->bar = gtk_progress_bar_new ();
  gtk_widget_set_size_request (w->bar, 360, -1);
  gtk_box_pack_start (GTK_BOX (box), w->label, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (box), w->bar, FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (w->dialog))), box, TRUE, TRUE, 0);
  g_signal_connect (w->dialog, "response", G_CALLBACK (on_response), w);
  /* closing the window asks the worker to stop, like the button; the window goes when the worker has */
  g_signal_connect (w->dialog, "delete-event", G_CALLBACK (on_delete), w);
  gtk_widget_show_all (w->dialog);
  gtk_widget_grab_focus (gtk_dialog_get_widget_for_response (GTK_DIALOG (w->dialog), GTK_RESPONSE_CANCEL));
  return w;
}

void
oft_stop_window_set (OftStopWindow *w, double fraction, const char *text)
{
  if (fraction >= 0)
    gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (w->bar), CLAMP (fraction, 0.0, 1.0));
  if (text)
    gtk_label_set_text (GTK_LABEL (w->label), text);
}

void
oft_stop_window_free (OftStopWindow *w)
{
  if (!w)
    return;
  gtk_widget_destroy (w->dialog);
  g_free (w);
}
