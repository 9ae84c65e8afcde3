/* oft train: DreamBooth-style OFT/BOFT fine-tuning of a pipeline's UNet into a PEFT adapter folder, an
 * optional magnitude-fitting stage after it, and the replay mode that repeats AdamW steps on one fixed
 * batch (for comparisons with PEFT). */
#include "oft-cli.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <json-glib/json-glib.h>

static volatile gint cancel_flag;

static void
on_sigint (int sig)
{
  (void) sig;
  g_atomic_int_set (&cancel_flag, 1);
}

typedef struct {
  CliProgress bar;
  int last_line;
} TrainBar;

static gboolean
on_progress (const OftTrainProgress *pr, gpointer data)
{
  TrainBar *b = data;
  cli_progress_update (&b->bar, pr->step, pr->total);
  if (b->bar.tty)
    {
      if (pr->step < pr->total)
        fprintf (stderr, " loss %.4f lr %.2e ", pr->loss, pr->lr);
    }
  else if (pr->step == pr->total || pr->step - b->last_line >= MAX (1, pr->total / 10))
    {
      fprintf (stderr, "oft train: step %d/%d loss %.6f lr %.3e ETA %.0f s\n", pr->step, pr->total, pr->loss, pr->lr,
               pr->eta_s);
      b->last_line = pr->step;
    }
  return TRUE;
}

static void
on_log (gpointer msg, gpointer data)
{
  (void) data;
  fprintf (stderr, "oft train: %s\n", (const char *) msg);
}

/* --images: folders (their PNG/JPEG files) and single files, in the order given. */
static GPtrArray *
collect_images (char **args, GError **error)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; args && args[i]; i++)
    if (g_file_test (args[i], G_FILE_TEST_IS_DIR))
      {
        GPtrArray *l = oft_train_list_images (args[i], error);
        if (!l)
          {
            g_ptr_array_unref (files);
            return NULL;
          }
        for (guint j = 0; j < l->len; j++)
          g_ptr_array_add (files, g_strdup (g_ptr_array_index (l, j)));
        g_ptr_array_unref (l);
      }
    else if (g_file_test (args[i], G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (files, g_strdup (args[i]));
    else
      {
        g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no such image file or folder", args[i]);
        g_ptr_array_unref (files);
        return NULL;
      }
  if (files->len == 0)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "--images: no PNG or JPEG files found");
      g_ptr_array_unref (files);
      return NULL;
    }
  g_ptr_array_add (files, NULL);
  return files;
}

/* --pairs MANIFEST.jsonl: one {"image", "condition", "caption"} per line, paths relative to the manifest.
 * Without "condition", the key named by the condition type is read ("canny": `oft scenes --conditions`
 * manifests train as they are). */
typedef struct {
  GPtrArray *images, *conditions, *captions;  /* NULL-terminated string arrays */
} Pairs;

static void
pairs_clear (Pairs *p)
{
  g_clear_pointer (&p->images, g_ptr_array_unref);
  g_clear_pointer (&p->conditions, g_ptr_array_unref);
  g_clear_pointer (&p->captions, g_ptr_array_unref);
}

static gboolean
read_pairs (const char *manifest, const char *cond_type, Pairs *out, GError **error)
{
  char *text = NULL;
  if (!g_file_get_contents (manifest, &text, NULL, error))
    return FALSE;
  char *dir = g_path_get_dirname (manifest);
  char **lines = g_strsplit (text, "\n", -1);
  out->images = g_ptr_array_new_with_free_func (g_free);
  out->conditions = g_ptr_array_new_with_free_func (g_free);
  out->captions = g_ptr_array_new_with_free_func (g_free);
  gboolean ok = TRUE;
  JsonParser *parser = json_parser_new ();
  for (int i = 0; ok && lines[i]; i++)
    {
      char *line = g_strstrip (lines[i]);
      if (!*line)
        continue;
      JsonNode *root = NULL;
      if (json_parser_load_from_data (parser, line, -1, NULL))
        root = json_parser_get_root (parser);
      JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
      const char *keys[3] = { "image", "condition", "caption" }, *val[3] = { NULL };
      if (o && !json_object_has_member (o, "condition") && json_object_has_member (o, cond_type))
        keys[1] = cond_type;
      for (int k = 0; o && k < 3; k++)
        {
          JsonNode *n = json_object_get_member (o, keys[k]);
          val[k] = n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n) : NULL;
        }
      if (!val[0] || !val[1] || !val[2])
        {
          g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: line %d: expected {\"image\": ..., \"condition\": ..., "
                       "\"caption\": ...} with three strings", manifest, i + 1);
          ok = FALSE;
          break;
        }
      for (int k = 0; k < 2; k++)
        {
          char *path = g_path_is_absolute (val[k]) ? g_strdup (val[k]) : g_build_filename (dir, val[k], NULL);
          if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
            {
              g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: line %d: %s %s does not exist", manifest, i + 1,
                           keys[k], path);
              g_free (path);
              ok = FALSE;
              break;
            }
          g_ptr_array_add (k == 0 ? out->images : out->conditions, path);
        }
      g_ptr_array_add (out->captions, g_strdup (val[2]));
    }
  g_object_unref (parser);
  if (ok && out->images->len == 0)
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "%s: no pairs", manifest);
      ok = FALSE;
    }
  if (ok)
    {
      g_ptr_array_add (out->images, NULL);
      g_ptr_array_add (out->conditions, NULL);
      g_ptr_array_add (out->captions, NULL);
    }
  else
    pairs_clear (out);
  g_strfreev (lines);
  g_free (text);
  g_free (dir);
  return ok;
}

/* device: the UNet's (the training step runs there: OFT/COFT adapters only on the GPU) */
static int
replay (const char *model, const char *batch, const char *init, int steps, double lr, double wd, const char *out,
        OftDevice device, OftDType dtype)
{
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  double *losses = g_new0 (double, steps + 1);
  int rc = 1;
  if (p && device != OFT_DEVICE_CPU && !oft_unet_set_device (p->unet, device, dtype, &error))
    g_clear_pointer (&p, oft_pipeline_free);
  if (p && oft_train_replay (p->unet, &p->schedule, batch, init, steps, lr, wd, out, losses, &error))
    {
      printf ("{\"losses\": [");
      for (int k = 0; k <= steps; k++)
        printf ("%s%.9g", k ? ", " : "", losses[k]);
      printf ("]}\n");
      rc = 0;
    }
  else
    cli_fail ("train", error);
  g_clear_error (&error);
  g_free (losses);
  oft_pipeline_free (p);
  return rc;
}

int
cmd_train (int argc, char **argv)
{
  char *model = NULL, *prompt = NULL, *class_prompt = NULL, *class_dir = NULL, *method = NULL, *targets = NULL;
  char *schedule = NULL, *timesteps = NULL, *init = NULL, *merged = NULL, *out = NULL, *replay_batch = NULL;
  char *device_name = NULL, *precision = NULL;
  char *task = NULL, *pairs_file = NULL, *cond_type = NULL;
  Pairs pairs = { 0 };
  char **images = NULL;
  int num_class = -1, block_size = 0, blocks = 0, terms = 5, steps = 1000, warmup = 0, batch = 1, accum = 1;
  int resolution = 0, every = 0, factors = 1, fit_magnitude = 0;
  double prior = 1.0, eps = -1, lr = -1, wd = 1e-2, max_norm = 1.0;  /* eps, lr < 0: the task's default */
  double magnitude_lr = 0;
  gint64 seed = 0;
  gboolean exact = FALSE, share = FALSE, flip = FALSE, resume = FALSE, gc = FALSE;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Stable Diffusion pipeline folder (diffusers layout; default: the bundled default model)", "PATH" },
    { "task", 0, 0, G_OPTION_ARG_STRING, &task, "dreambooth (default: subject images and one prompt) or control "
      "(image/condition/caption pairs, a condition encoder trained with the adapter)", "NAME" },
    { "pairs", 0, 0, G_OPTION_ARG_FILENAME, &pairs_file, "Control task: JSON lines {\"image\", \"condition\" (or the --condition-type key), \"caption\"}, "
      "paths relative to the file", "MANIFEST.jsonl" },
    { "condition-type", 0, 0, G_OPTION_ARG_STRING, &cond_type, "Control task: canny (default), landmarks or segmentation", "TYPE" },
    { "images", 'i', 0, G_OPTION_ARG_FILENAME_ARRAY, &images, "Subject images: a folder or a file (repeatable)", "DIR" },
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "Instance prompt, e.g. \"a photo of sks dog\"", "TEXT" },
    { "class-prompt", 0, 0, G_OPTION_ARG_STRING, &class_prompt, "Class prompt for prior preservation, e.g. \"a photo of a dog\"", "TEXT" },
    { "class-images", 0, 0, G_OPTION_ARG_FILENAME, &class_dir, "Class image folder (missing images are generated into it)", "DIR" },
    { "prior-weight", 0, 0, G_OPTION_ARG_DOUBLE, &prior, "Weight of the prior-preservation loss (default 1.0)", "W" },
    { "num-class-images", 0, 0, G_OPTION_ARG_INT, &num_class, "Class images to use (default 100)", "N" },
    { "method", 0, 0, G_OPTION_ARG_STRING, &method, "oft (default), coft (constrained, radius --eps) or boft "
      "(PEFT BOFT: butterfly factors, exact Cayley, a trained per-output scale)", "NAME" },
    { "block-size", 0, 0, G_OPTION_ARG_INT, &block_size, "Block size b of every module (BOFT: boft_block_size)", "B" },
    { "blocks", 0, 0, G_OPTION_ARG_INT, &blocks, "Number of blocks r per module (default 4, the paper's; BOFT: "
      "boft_block_num)", "R" },
    { "butterfly-factors", 0, 0, G_OPTION_ARG_INT, &factors, "BOFT: boft_n_butterfly_factor (default 1, PEFT's)", "N" },
    { "eps", 0, 0, G_OPTION_ARG_DOUBLE, &eps, "COFT radius (default 6e-5; control task 1e-3)", "E" },
    { "neumann-terms", 0, 0, G_OPTION_ARG_INT, &terms, "Cayley–Neumann terms (default 5)", "N" },
    { "exact-cayley", 0, 0, G_OPTION_ARG_NONE, &exact, "Exact Cayley transform instead of the Neumann series", NULL },
    { "block-share", 0, 0, G_OPTION_ARG_NONE, &share, "One block shared by all blocks of a module", NULL },
    { "targets", 0, 0, G_OPTION_ARG_STRING, &targets, "Module name suffixes (default to_q,to_k,to_v,to_out.0; control "
      "task: also ff.net.0.proj)", "LIST" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "Optimizer steps (default 1000)", "N" },
    { "lr", 0, 0, G_OPTION_ARG_DOUBLE, &lr, "Learning rate (default 6e-5; control task 1e-5)", "LR" },
    { "lr-schedule", 0, 0, G_OPTION_ARG_STRING, &schedule, "constant (default), cosine or linear", "NAME" },
    { "timesteps", 0, 0, G_OPTION_ARG_STRING, &timesteps,
      "Training timesteps: uniform (default) or cubic (T2I-Adapter's, mostly the noisy steps where layout is decided)",
      "NAME" },
    { "warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Warmup steps (default 0)", "N" },
    { "weight-decay", 0, 0, G_OPTION_ARG_DOUBLE, &wd, "AdamW weight decay (default 1e-2)", "WD" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "Images per micro-batch (default 1)", "B" },
    { "grad-accum", 0, 0, G_OPTION_ARG_INT, &accum, "Micro-batches per optimizer step (default 1)", "K" },
    { "max-grad-norm", 0, 0, G_OPTION_ARG_DOUBLE, &max_norm, "Clip the total gradient norm (default 1.0; 0 = off)", "G" },
    { "fit-magnitude", 0, 0, G_OPTION_ARG_INT, &fit_magnitude, "After --steps, N more steps with the rotations frozen "
      "training a per-output scale (the paper's train_with_norm; stored as oft_s, see README)", "N" },
    { "magnitude-lr", 0, 0, G_OPTION_ARG_DOUBLE, &magnitude_lr, "Constant learning rate of the magnitude stage "
      "(default: --lr)", "LR" },
    { "resolution", 0, 0, G_OPTION_ARG_INT, &resolution, "Training resolution in pixels (default: the model's)", "PX" },
    { "flip", 0, 0, G_OPTION_ARG_NONE, &flip, "Random horizontal flips", NULL },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (default 0)", "S" },
    { "checkpoint-every", 0, 0, G_OPTION_ARG_INT, &every, "Checkpoint every N steps (default: only at the end)", "N" },
    { "resume", 0, 0, G_OPTION_ARG_NONE, &resume, "Continue from OUT/checkpoint", NULL },
    { "init-adapter", 0, 0, G_OPTION_ARG_FILENAME, &init, "Start from this PEFT OFT adapter (its config is used)", "DIR" },
    { "gradient-checkpointing", 0, 0, G_OPTION_ARG_NONE, &gc, "Recompute activations in the backward (less memory)", NULL },
    { "merged-out", 0, 0, G_OPTION_ARG_FILENAME, &merged, "Also write a pipeline folder with the adapter merged", "DIR" },
    { "replay-batch", 0, 0, G_OPTION_ARG_FILENAME, &replay_batch, "Replay mode: AdamW steps on this fixed batch (needs --init-adapter)", "FILE" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device_name, "cpu (default), cuda or auto: where the UNet's training "
      "step runs (OFT/COFT adapters on the GPU)", "DEV" },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &precision, "With --device: the GPU's storage type, bf16 (default) or "
      "fp32", "P" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output adapter folder (checkpoints in OUT/checkpoint)", "DIR" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("- train an OFT or BOFT adapter on subject images (DreamBooth)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  GError *error = NULL;
  int rc = 1;
  OftPipeline *p = NULL;
  GPtrArray *files = NULL;
  char **target_list = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if (!out)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--out is required (see --help)");
      goto out;
    }
  if (!model && !(model = cli_default_model ("train", &error)))
    goto out;
  if (eps < 0)
    eps = task && strcmp (task, "control") == 0 ? 1e-3 : 6e-5;
  if (lr < 0)
    lr = task && strcmp (task, "control") == 0 ? 1e-5 : 6e-5;
  OftDevice device = OFT_DEVICE_CPU;
  OftDType dtype = g_strcmp0 (precision, "fp32") == 0 ? OFT_DTYPE_F32 : OFT_DTYPE_BF16;
  if (device_name && !oft_device_parse (device_name, &device, &error))
    goto out;
  if (precision && dtype != OFT_DTYPE_F32 && g_strcmp0 (precision, "bf16") != 0)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--precision %s: expected bf16 or fp32", precision);
      goto out;
    }
  if (replay_batch)
    {
      if (!init || fit_magnitude)
        {
          g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                       "--replay-batch needs --init-adapter (and takes no --fit-magnitude)");
          goto out;
        }
      rc = replay (model, replay_batch, init, steps, lr, wd, out, device, dtype);
      goto out;
    }
  OftTrainParams t;
  oft_train_params_init (&t);
  /* the paper's control setting: COFT ε = 1e-3, lr 1e-5, every attention Linear and the GEGLU projection */
  gboolean control = task && strcmp (task, "control") == 0;
  if (task && !control && strcmp (task, "dreambooth") != 0)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--task %s: expected dreambooth or control", task);
      goto out;
    }
  if (control)
    {
      if (!pairs_file || images)
        {
          g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--task control takes --pairs MANIFEST.jsonl (not --images)");
          goto out;
        }
      if (!read_pairs (pairs_file, cond_type ? cond_type : "canny", &pairs, &error))
        goto out;
      if (!method)
        method = g_strdup ("coft");
      if (!targets)
        targets = g_strdup ("to_q,to_k,to_v,to_out.0,ff.net.0.proj");
      t.captions = (const char *const *) pairs.captions->pdata;
      t.conditions = (const char *const *) pairs.conditions->pdata;
      t.condition_type = cond_type ? cond_type : "canny";
      if (!prompt)
        prompt = g_strdup (t.captions[0]);
    }
  if (!control && (!images || !prompt))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--images and --prompt are required (see --help)");
      goto out;
    }
  if (block_size > 0 && blocks > 0)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "give --block-size or --blocks, not both");
      goto out;
    }
  gboolean boft = method && strcmp (method, "boft") == 0;
  if (method && strcmp (method, "oft") != 0 && strcmp (method, "coft") != 0 && !boft)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--method %s: expected oft, coft or boft", method);
      goto out;
    }
  if (device != OFT_DEVICE_CPU && (boft || fit_magnitude || (task && strcmp (task, "control") == 0)))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--device %s: the GPU trains OFT and COFT adapters "
                   "only (not BOFT, --fit-magnitude or --task control); use --device cpu", device_name);
      goto out;
    }
  if (boft && share)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--block-share: PEFT's BOFT has no shared block");
      goto out;
    }
  if (factors < 1 || factors > 16 || fit_magnitude < 0 || magnitude_lr < 0)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "--butterfly-factors must be 1..16, --fit-magnitude and --magnitude-lr >= 0");
      goto out;
    }
  if (schedule && !oft_lr_schedule_from_name (schedule, &t.schedule))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--lr-schedule %s: expected constant, cosine or linear",
                   schedule);
      goto out;
    }
  if (timesteps && !oft_timestep_sampling_from_name (timesteps, &t.timesteps))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--timesteps %s: expected uniform or cubic", timesteps);
      goto out;
    }
  if (class_prompt && !class_dir)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--class-prompt needs --class-images DIR");
      goto out;
    }
  if (terms < 1 || !(eps > 0))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--neumann-terms must be >= 1 and --eps > 0");
      goto out;
    }
  if (!control && !(files = collect_images (images, &error)))
    goto out;
  t.images = (const char *const *) (control ? pairs.images->pdata : files->pdata);
  t.prompt = prompt;
  t.class_prompt = class_prompt;
  t.class_dir = class_dir;
  if (num_class >= 0)
    t.num_class_images = num_class;
  t.prior_weight = prior;
  t.adapter.coft = method && strcmp (method, "coft") == 0;
  t.adapter.eps = eps;
  t.adapter.neumann = !exact;
  t.adapter.n_terms = terms;
  t.adapter.block_share = share;
  t.adapter.oft_block_size = block_size;
  if (boft)
    {
      /* BOFT is always the exact Cayley transform (--eps, --neumann-terms do not apply) */
      t.adapter.kind = OFT_ADAPTER_BOFT;
      t.adapter.boft_block_size = block_size;
      t.adapter.boft_n_factors = factors;
    }
  t.fit_magnitude = fit_magnitude;
  t.magnitude_lr = magnitude_lr;
  t.blocks = block_size > 0 ? 0 : blocks > 0 ? blocks : 4;
  if (targets)
    {
      target_list = g_strsplit (targets, ",", -1);
      for (char **s = target_list; *s; s++)
        g_strstrip (*s);
      t.targets = (const char *const *) target_list;
    }
  t.init_adapter = init;
  t.steps = steps;
  t.lr = lr;
  t.warmup = warmup;
  t.adamw.weight_decay = wd;
  t.batch = batch;
  t.grad_accum = accum;
  t.max_grad_norm = max_norm;
  t.resolution = resolution;
  t.flip = flip;
  t.seed = (uint64_t) seed;
  t.checkpoint_every = every;
  t.resume = resume;
  t.gradient_checkpointing = gc;
  t.out_dir = out;
  t.cancel = &cancel_flag;
  TrainBar bar = { 0 };
  cli_progress_init (&bar.bar, "train");
  t.progress = on_progress;
  t.progress_data = &bar;
  t.log = on_log;
  if (!(p = oft_pipeline_load (model, &error)))
    goto out;
  /* the UNet's training step and the VAE decoder (class images) on the GPU; encoders stay on the CPU */
  if (device != OFT_DEVICE_CPU)
    {
      if (!oft_pipeline_set_device (p, device, dtype, &error))
        goto out;
      if (oft_unet_device (p->unet) == OFT_DEVICE_CUDA)
        fprintf (stderr, "oft train: the UNet trains on the GPU (%s)\n", dtype == OFT_DTYPE_F32 ? "fp32" : "bf16");
    }
  struct sigaction sa = { 0 }, old;
  sa.sa_handler = on_sigint;
  sigaction (SIGINT, &sa, &old);
  gboolean ok = oft_train_run (p, &t, &error);
  sigaction (SIGINT, &old, NULL);
  if (!ok)
    goto out;
  if (fit_magnitude)
    printf ("adapter written to %s (%d steps, then %d magnitude steps)\n", out, steps, fit_magnitude);
  else
    printf ("adapter written to %s (%d steps)\n", out, steps);
  rc = 0;
  if (merged)
    {
      /* the same code path as `oft adapter merge --base MODEL_DIR` */
      char *margv[] = { "adapter", "merge", "--base", model, "--adapter", out, "--out", merged, NULL };
      rc = cmd_adapter (8, margv);
    }
out:
  if (rc && error)
    cli_fail ("train", error);
  g_clear_error (&error);
  oft_pipeline_free (p);
  if (files)
    g_ptr_array_unref (files);
  g_strfreev (target_list);
  g_strfreev (images);
  g_free (model);
  g_free (prompt);
  g_free (class_prompt);
  g_free (class_dir);
  g_free (method);
  g_free (targets);
  g_free (schedule);
  g_free (timesteps);
  g_free (init);
  g_free (merged);
  g_free (out);
  g_free (replay_batch);
  g_free (device_name);
  g_free (precision);
  g_free (task);
  g_free (pairs_file);
  g_free (cond_type);
  pairs_clear (&pairs);
  g_option_context_free (ctx);
  return rc;
}
