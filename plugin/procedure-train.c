/* plug-in-oft-train: DreamBooth OFT training in a worker process (`oft train`), so that the plug-in
 * stays responsive and a kill loses at most the steps since the last checkpoint. GIMP's cancel SIGKILLs
 * the plug-in (its process group only when the plug-in leads one of its own, which it does not); the
 * worker then gets SIGINT (its parent-death signal), finishes the current step, checkpoints and exits.
 * Checkpoints are also written atomically into OUT/checkpoint every tenth of the run, and running the
 * procedure again with the same output folder and settings passes --resume. The Stop button sends
 * SIGINT too (tests/gimp/test-gimp-kill.sh kills the plug-in and GIMP, then resumes). Progress comes
 * from the worker's stderr lines "oft train: step N/M loss L ..." (printed when stderr is not a terminal). */
#include "oft-plugin.h"
#include <gegl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include "oft/oft.h"

void
oft_train_vals_init (OftTrainVals *v)
{
  memset (v, 0, sizeof *v);
  oft_strlcpy (v->method, "oft", sizeof v->method);
  v->eps = 6e-5;
  v->steps = 1000;
  v->lr = 6e-5;
}

/* The oft executable: $OFT_CLI (tests), then the installed one, then PATH. */
static char *
find_oft (void)
{
  const char *env = g_getenv ("OFT_CLI");
  if (env && *env)
    return g_strdup (env);
  char *installed = g_build_filename (OFT_BINDIR, "oft", NULL);
  if (g_file_test (installed, G_FILE_TEST_IS_EXECUTABLE))
    return installed;
  g_free (installed);
  return g_find_program_in_path ("oft");
}

/* Each visible top-level layer as OUT/instance-images/layer-NNN.png (RGB, 8-bit): a stable place, so that
 * a resumed run sees the same files. */
static char *
export_visible_layers (gint32 image, const char *out, GError **error)
{
  char *dir = g_build_filename (out, "instance-images", NULL);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _("Cannot create %s"), dir);
      g_free (dir);
      return NULL;
    }
  gint n = 0, count = 0;
  gint *layers = gimp_image_get_layers (image, &n);
  for (gint i = 0; i < n; i++)
    {
      if (!gimp_item_get_visible (layers[i]))
        continue;
      int w = gimp_drawable_width (layers[i]), h = gimp_drawable_height (layers[i]);
      OftImage *img = oft_image_new (w, h, 3);
      GeglBuffer *buf = gimp_drawable_get_buffer (layers[i]);
      gegl_buffer_get (buf, GEGL_RECTANGLE (0, 0, w, h), 1.0, babl_format ("R'G'B' u8"), img->pixels,
                       GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
      g_object_unref (buf);
      char *name = g_strdup_printf ("layer-%03d.png", count);
      char *path = g_build_filename (dir, name, NULL);
      gboolean ok = oft_image_save_png (img, path, error);
      oft_image_free (img);
      g_free (name);
      g_free (path);
      if (!ok)
        {
          g_free (layers);
          g_free (dir);
          return NULL;
        }
      count++;
    }
  g_free (layers);
  if (count == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("The image has no visible layers to train on"));
      g_clear_pointer (&dir, g_free);
    }
  return dir;
}

typedef struct {
  GMainLoop *loop;
  GPid pid;
  gint wait_status;
  gboolean exited, eof, stopped;
  GString *pending;        /* an incomplete stderr line */
  char *last_message;      /* the last non-progress line: the error when the worker fails */
  int step, total;
  OftStopWindow *window;
} Worker;

static void
worker_maybe_quit (Worker *w)
{
  if (w->exited && w->eof)
    g_main_loop_quit (w->loop);
}

static void
worker_line (Worker *w, const char *line)
{
  int step, total;
  double loss;
  if (sscanf (line, "oft train: step %d/%d loss %lf", &step, &total, &loss) == 3 && total > 0)
    {
      w->step = step;
      w->total = total;
      char *text = g_strdup_printf (_("Step %d of %d, loss %.4f"), step, total, loss);
      gimp_progress_set_text (text);
      gimp_progress_update ((double) step / total);
      if (w->window)
        oft_stop_window_set (w->window, (double) step / total, text);
      g_free (text);
    }
  else if (*line)
    {
      g_free (w->last_message);
      w->last_message = g_strdup (g_str_has_prefix (line, "oft train: ") ? line + 11 : line);
      if (w->window)
        oft_stop_window_set (w->window, -1, w->last_message);
      g_printerr ("%s\n", line);
    }
}

static gboolean
on_stderr (GIOChannel *ch, GIOCondition cond, gpointer data)
{
  Worker *w = data;
  char buf[4096];
  gsize n = 0;
  GIOStatus st = g_io_channel_read_chars (ch, buf, sizeof buf, &n, NULL);
  if (n > 0)
    {
      g_string_append_len (w->pending, buf, n);
      char *nl;
      while ((nl = memchr (w->pending->str, '\n', w->pending->len)))
        {
          *nl = '\0';
          /* the CLI's terminal bar uses \r; keep the text after the last one */
          char *line = strrchr (w->pending->str, '\r');
          worker_line (w, line ? line + 1 : w->pending->str);
          g_string_erase (w->pending, 0, nl - w->pending->str + 1);
        }
      return TRUE;
    }
  if (st == G_IO_STATUS_AGAIN)
    return TRUE;
  if (w->pending->len)
    worker_line (w, w->pending->str);
  w->eof = TRUE;
  worker_maybe_quit (w);
  return FALSE;
}

static void
on_worker_exit (GPid pid, gint status, gpointer data)
{
  Worker *w = data;
  w->wait_status = status;
  w->exited = TRUE;
  g_spawn_close_pid (pid);
  worker_maybe_quit (w);
}

static void
on_stop (gpointer data)
{
  Worker *w = data;
  w->stopped = TRUE;
  kill (w->pid, SIGINT);
}

/* In the worker before exec: if the plug-in dies (GIMP's cancel SIGKILLs the plug-in alone), stop after
 * the current step and checkpoint. Its stderr then has no reader: without ignoring SIGPIPE the next
 * progress line would kill it before that checkpoint is written. */
static void
child_setup (gpointer data)
{
  signal (SIGPIPE, SIG_IGN);
  prctl (PR_SET_PDEATHSIG, SIGINT);
}

static void
add_arg (GPtrArray *a, const char *opt, const char *value)
{
  g_ptr_array_add (a, g_strdup (opt));
  if (value)
    g_ptr_array_add (a, g_strdup (value));
}

static void
add_num (GPtrArray *a, const char *opt, double value)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  add_arg (a, opt, g_ascii_dtostr (buf, sizeof buf, value));
}

static char *
default_out (const OftPrefs *prefs, gint32 image)
{
  /* the image's name ("[Untitled]" when unsaved) as a plain folder name */
  char *name = image != -1 ? gimp_image_get_name (image) : g_strdup ("adapter");
  char *dot = strrchr (name, '.');
  if (dot && dot != name)
    *dot = '\0';
  GString *clean = g_string_new (NULL);
  for (const char *c = name; *c; c++)
    if (g_ascii_isalnum (*c) || *c == '-' || *c == '_' || (*c & 0x80))
      g_string_append_c (clean, *c);
    else if (clean->len && clean->str[clean->len - 1] != '_' && c[1])
      g_string_append_c (clean, '_');
  char *out = g_build_filename (prefs->adapter_folder, clean->len ? clean->str : "adapter", NULL);
  g_string_free (clean, TRUE);
  g_free (name);
  return out;
}

gboolean
oft_procedure_train (gint32 image, gint32 drawable, const OftTrainVals *v, gboolean interactive, GError **error)
{
  if (!v->instance_prompt[0])
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, _("The instance prompt is empty"));
      return FALSE;
    }
  if (v->steps < 1 || v->block_size < 0 || v->resolution < 0 || !(v->lr > 0) || !(v->eps > 0)
      || !isfinite (v->lr) || !isfinite (v->eps))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Training settings: expected steps >= 1, block size >= 0, resolution >= 0, learning rate > 0 "
                     "and eps > 0"));
      return FALSE;
    }
  OftPrefs prefs;
  oft_prefs_load (&prefs, NULL);
  char *oft = find_oft ();
  if (!oft)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   _("The oft program was not found in %s or on PATH (set OFT_CLI to its path)"), OFT_BINDIR);
      return FALSE;
    }
  char *model = oft_prefs_resolve_model (&prefs, v->model, error);
  /* a relative output is a name in the adapter folder, where generate looks bare names up */
  char *out = !v->out[0]                   ? default_out (&prefs, image)
              : g_path_is_absolute (v->out) ? g_strdup (v->out)
                                            : g_build_filename (prefs.adapter_folder, v->out, NULL);
  char *images = NULL;
  gboolean ok = FALSE;
  GPtrArray *argv = g_ptr_array_new_with_free_func (g_free);
  Worker w = { 0 };
  if (!model)
    goto out;
  if (g_mkdir_with_parents (out, 0755) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _("Cannot create the output folder %s"), out);
      goto out;
    }
  images = v->images[0] ? g_strdup (v->images) : export_visible_layers (image, out, error);
  if (!images)
    goto out;

  add_arg (argv, oft, NULL);
  add_arg (argv, "train", NULL);
  add_arg (argv, "--model", model);
  add_arg (argv, "--images", images);
  add_arg (argv, "--prompt", v->instance_prompt);
  if (v->class_prompt[0])
    {
      char *class_dir = g_build_filename (out, "class-images", NULL);
      add_arg (argv, "--class-prompt", v->class_prompt);
      add_arg (argv, "--class-images", class_dir);
      g_free (class_dir);
    }
  add_arg (argv, "--method", v->method);
  if (v->block_size > 0)
    add_num (argv, "--block-size", v->block_size);
  add_num (argv, "--eps", v->eps);
  add_num (argv, "--steps", v->steps);
  add_num (argv, "--lr", v->lr);
  if (v->resolution > 0)
    add_num (argv, "--resolution", v->resolution);
  add_num (argv, "--seed", v->seed);
  /* the GPU trains OFT and COFT adapters; BOFT stays on the CPU whatever the preference */
  if (strcmp (prefs.device, "cpu") != 0 && strcmp (v->method, "boft") != 0)
    add_arg (argv, "--device", prefs.device);
  add_num (argv, "--checkpoint-every", CLAMP (v->steps / 10, 1, 100));
  char *state = g_build_filename (out, "checkpoint", "state.safetensors", NULL);
  gboolean resume = g_file_test (state, G_FILE_TEST_IS_REGULAR);
  g_free (state);
  if (resume)
    add_arg (argv, "--resume", NULL);
  add_arg (argv, "--out", out);
  g_ptr_array_add (argv, NULL);

  gint err_fd = -1;
  if (!g_spawn_async_with_pipes (NULL, (char **) argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL,
                                 &w.pid, NULL, NULL, &err_fd, error))
    goto out;
  gimp_progress_init (resume ? _("Resuming OFT training") : _("Training OFT adapter"));
  w.loop = g_main_loop_new (NULL, FALSE);
  w.pending = g_string_new (NULL);
  GIOChannel *ch = g_io_channel_unix_new (err_fd);
  g_io_channel_set_close_on_unref (ch, TRUE);
  g_io_channel_set_encoding (ch, NULL, NULL);
  g_io_channel_set_flags (ch, G_IO_FLAG_NONBLOCK, NULL);
  g_io_add_watch (ch, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stderr, &w);
  g_child_watch_add (w.pid, on_worker_exit, &w);
  if (interactive)
    w.window = oft_stop_window_new (_("OFT Training"), on_stop, &w);
  g_main_loop_run (w.loop);
  oft_stop_window_free (w.window);
  g_io_channel_unref (ch);
  g_main_loop_unref (w.loop);

  GError *exit_error = NULL;
  if (g_spawn_check_wait_status (w.wait_status, &exit_error))
    {
      ok = TRUE;
      gimp_progress_update (1.0);
    }
  else if (w.stopped)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                 _("Training stopped after step %d of %d; the checkpoint in %s is kept: run again with the same "
                   "settings to resume"), w.step, w.total, out);
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _("Training failed: %s"),
                 w.last_message ? w.last_message : exit_error->message);
  g_clear_error (&exit_error);
  g_string_free (w.pending, TRUE);
  g_free (w.last_message);
out:
  g_ptr_array_unref (argv);
  g_free (oft);
  g_free (model);
  g_free (out);
  g_free (images);
  return ok;
}
