/* The oft: operations through the GEGL API (this build's module, see module_dir): each is
 * registered with a title and categories GIMP 2.10's GEGL tool shows. oft:generate: the floats it
 * renders are those of oft_pipeline_generate with the same settings, bit for bit; its progress goes
 * from 0 to 1 through every sampling step; a second render with unchanged settings is not sampled
 * again; with a condition image on its input and a condition encoder it equals conditioned
 * oft_pipeline_generate too; with device=cuda it runs on the CUDA module ($OFT_CUDA_MODULE: the
 * CPU stand-in with bf16 storage in the tests) and stays near the CPU's result. The tiny golden pipeline
 * at a non-square size, so a width/height mix-up shows. */
#include "test-common.h"
#include <gegl.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include <unistd.h>

enum { W = 128, H = 64, STEPS = 3 };

typedef struct {
  int calls;
  double last;
  gboolean in_order;
} Progress;

static void
on_progress (GeglNode *node, gdouble progress, gpointer data)
{
  Progress *p = data;
  if (progress < p->last || progress < 0 || progress > 1)
    p->in_order = FALSE;
  p->last = progress;
  p->calls++;
}

/* Renders the node's whole output as R'G'B'A floats. */
static float *
render (GeglNode *node)
{
  GeglRectangle box = gegl_node_get_bounding_box (node);
  g_assert_cmpint (box.x, ==, 0);
  g_assert_cmpint (box.y, ==, 0);
  g_assert_cmpint (box.width, ==, W);
  g_assert_cmpint (box.height, ==, H);
  float *rgba = g_new0 (float, 4 * W * H);
  gegl_node_blit (node, 1.0, &box, babl_format ("R'G'B'A float"), rgba, GEGL_AUTO_ROWSTRIDE, GEGL_BLIT_DEFAULT);
  return rgba;
}

/* GIMP 2.10's GEGL Operation tool leaves out an operation when any of its categories is one of these. */
static const char *const gimp_hidden_categories[] = {
  "core", "hidden", "programming", "input", "output", "transform", "video", "display", "debug", "compositors",
};

static void
test_registered (void)
{
  const char *ops[] = { "oft:canny", "oft:segmap", "oft:landmarks", "oft:generate" };
  for (size_t i = 0; i < G_N_ELEMENTS (ops); i++)
    {
      g_assert_true (gegl_has_operation (ops[i]));
      const char *title = gegl_operation_get_key (ops[i], "title");
      const char *cats = gegl_operation_get_key (ops[i], "categories");
      g_test_message ("%s: title '%s', categories '%s'", ops[i], title, cats);
      g_assert_nonnull (title);
      g_assert_nonnull (cats);
      char **list = g_strsplit (cats, ":", -1);
      g_assert_nonnull (list[0]);
      for (int k = 0; list[k]; k++)
        for (size_t h = 0; h < G_N_ELEMENTS (gimp_hidden_categories); h++)
          g_assert_cmpstr (list[k], !=, gimp_hidden_categories[h]);
      g_strfreev (list);
    }
}

static void
test_generate_matches_pipeline (void)
{
  char *model = test_golden_path ("pipeline");
  GeglNode *graph = gegl_node_new ();
  GeglNode *gen = gegl_node_new_child (graph, "operation", "oft:generate", "model", model,
                                       "prompt", "a red fox in the snow", "negative", "blurry",
                                       "seed", (guint) 1234, "steps", STEPS, "guidance", 5.0,
                                       "width", W, "height", H, NULL);
  g_assert_nonnull (gen);
  Progress prog = { 0, 0.0, TRUE };
  g_signal_connect (gen, "progress", G_CALLBACK (on_progress), &prog);
  float *got = render (gen);

  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  OftGenerateParams gp;
  oft_generate_params_init (&gp);
  gp.prompt = "a red fox in the snow";
  gp.negative = "blurry";
  gp.seed = 1234;
  gp.steps = STEPS;
  gp.guidance = 5.0f;
  gp.width = W;
  gp.height = H;
  float *want = g_new (float, 3 * W * H);
  g_assert_true (oft_pipeline_generate (p, &gp, want, NULL, NULL, NULL, &error));
  g_assert_no_error (error);

  /* the operation only moves the planar [3, H, W] result into interleaved RGBA: no tolerance */
  int n = W * H, differ = 0;
  double maxdiff = 0;
  for (int i = 0; i < n; i++)
    {
      for (int c = 0; c < 3; c++)
        {
          double d = fabs ((double) got[4 * i + c] - want[c * n + i]);
          differ += d != 0;
          maxdiff = MAX (maxdiff, d);
        }
      g_assert_cmpfloat (got[4 * i + 3], ==, 1.0f);
    }
  g_test_message ("oft:generate vs oft_pipeline_generate %d×%d: %d values differ, max |diff| %g", W, H, differ,
                  maxdiff);
  g_assert_cmpint (differ, ==, 0);

  /* one report per sampling step at least, in order, ending at 1 */
  g_test_message ("progress: %d reports, last %g", prog.calls, prog.last);
  g_assert_cmpint (prog.calls, >=, STEPS);
  g_assert_true (prog.in_order);
  g_assert_cmpfloat (prog.last, ==, 1.0);

  /* another prompt and back: GEGL's cache is invalidated, the operation's own last result is not */
  prog = (Progress) { 0, 0.0, TRUE };
  gegl_node_set (gen, "prompt", "a blue fox", NULL);
  gegl_node_set (gen, "prompt", "a red fox in the snow", NULL);
  float *again = render (gen);
  g_assert_cmpmem (again, sizeof (float) * 4 * n, got, sizeof (float) * 4 * n);
  g_test_message ("re-render with unchanged settings: %d progress reports", prog.calls);
  g_assert_cmpint (prog.calls, <, STEPS);

  g_free (again);
  g_free (want);
  g_free (got);
  oft_pipeline_free (p);
  g_object_unref (graph);
  g_free (model);
}

/* device=cuda: the pipeline goes up to the module (bf16 storage), so the floats differ from the CPU's, by
 * little. Without a module the op would fall back (auto) or warn (cuda); the test needs the stand-in. */
static void
test_generate_device (void)
{
  if (!g_getenv ("OFT_CUDA_MODULE"))
    {
      g_test_skip ("no OFT_CUDA_MODULE");
      return;
    }
  char *model = test_golden_path ("pipeline");
  GParamSpec *ps = gegl_operation_find_property ("oft:generate", "device");
  g_assert_true (ps && G_IS_PARAM_SPEC_ENUM (ps));
  GEnumClass *ec = G_PARAM_SPEC_ENUM (ps)->enum_class;
  float *out[2];
  for (int d = 0; d < 2; d++)
    {
      GeglNode *graph = gegl_node_new ();
      GeglNode *gen = gegl_node_new_child (graph, "operation", "oft:generate", "model", model,
                                           "prompt", "a red fox in the snow", "seed", (guint) 7, "steps", STEPS,
                                           "guidance", 5.0, "width", W, "height", H, NULL);
      gegl_node_set (gen, "device", g_enum_get_value_by_nick (ec, d ? "cuda" : "cpu")->value, NULL);
      out[d] = render (gen);
      g_object_unref (graph);
    }
  int differ = 0;
  double maxdiff = 0;
  for (int i = 0; i < 4 * W * H; i++)
    {
      double e = fabs ((double) out[0][i] - out[1][i]);
      differ += e != 0;
      maxdiff = MAX (maxdiff, e);
    }
  g_test_message ("device=cuda (stand-in, bf16) vs cpu: %d values differ, max |diff| %g", differ, maxdiff);
  g_assert_cmpint (differ, >, 0);
  g_assert_cmpfloat (maxdiff, <, 0.1);
  g_free (out[0]);
  g_free (out[1]);
  g_free (model);
}

/* A condition encoder whose output is not zero (a new one's last conv is), so the condition shows. */
static char *
save_random_encoder (const OftPipeline *p, const char *dir)
{
  OftCondEncoder *e = oft_cond_encoder_new (3, oft_unet_control_channels (p->unet), "canny", 7);
  test_fill_uniform (e->params, e->n_params, -0.2f, 0.2f, 11);
  char *path = g_build_filename (dir, OFT_COND_ENCODER_FILE, NULL);
  GError *error = NULL;
  g_assert_true (oft_cond_encoder_save (e, path, &error));
  g_assert_no_error (error);
  oft_cond_encoder_free (e);
  return path;
}

static void
test_generate_conditioned (void)
{
  char *model = test_golden_path ("pipeline");
  char *cond_path = test_golden_path ("conditions/canny/astronaut__rgb100_200.png");
  char *dir = g_dir_make_tmp ("test-gegl-XXXXXX", NULL);
  GError *error = NULL;
  OftPipeline *p = oft_pipeline_load (model, &error);
  g_assert_no_error (error);
  char *encoder_path = save_random_encoder (p, dir);

  /* the condition as GEGL sees it: the gray edge PNG as R'G'B'A u8 in a buffer */
  OftImage *cond = oft_image_load (cond_path, &error);
  g_assert_no_error (error);
  OftImage *rgb = oft_image_convert (cond, 3);
  GeglRectangle cbox = { 0, 0, rgb->width, rgb->height };
  GeglBuffer *buf = gegl_buffer_new (&cbox, babl_format ("R'G'B' u8"));
  gegl_buffer_set (buf, &cbox, 0, babl_format ("R'G'B' u8"), rgb->pixels, GEGL_AUTO_ROWSTRIDE);

  GeglNode *graph = gegl_node_new ();
  GeglNode *src = gegl_node_new_child (graph, "operation", "gegl:buffer-source", "buffer", buf, NULL);
  GeglNode *gen = gegl_node_new_child (graph, "operation", "oft:generate", "model", model, "control", encoder_path,
                                       "prompt", "a red fox in the snow", "seed", (guint) 99, "steps", STEPS,
                                       "width", W, "height", H, "condition-scale", 0.8, NULL);
  gegl_node_set (gen, "condition-type", 1 /* canny */, NULL);
  gegl_node_link (src, gen);
  float *got = render (gen);
  gegl_node_set (gen, "condition-type", 0 /* none */, NULL);
  float *plain = render (gen);

  OftCondEncoder *e = oft_cond_encoder_load (encoder_path, &error);
  g_assert_no_error (error);
  float *planar = g_new (float, 3 * W * H), *want = g_new (float, 3 * W * H);
  oft_image_to_planar (planar, rgb, W, H);
  OftGenerateParams gp;
  oft_generate_params_init (&gp);
  gp.prompt = "a red fox in the snow";
  gp.seed = 99;
  gp.steps = STEPS;
  gp.width = W;
  gp.height = H;
  gp.control = e;
  gp.condition = planar;
  gp.control_scale = 0.8f;
  g_assert_true (oft_pipeline_generate (p, &gp, want, NULL, NULL, NULL, &error));
  g_assert_no_error (error);

  int n = W * H, differ = 0, moved = 0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 3; c++)
      {
        differ += got[4 * i + c] != want[c * n + i];
        moved += fabsf (got[4 * i + c] - plain[4 * i + c]) > 1.0f / 255;
      }
  g_test_message ("conditioned oft:generate vs oft_pipeline_generate: %d values differ; %d of %d values move by "
                  "more than 1/255 without the condition", differ, moved, 3 * n);
  g_assert_cmpint (differ, ==, 0);
  /* the encoder's features are not small: the condition must visibly change the image */
  g_assert_cmpint (moved, >, n / 10);

  g_remove (encoder_path);
  g_rmdir (dir);
  g_free (planar);
  g_free (want);
  g_free (got);
  g_free (plain);
  oft_cond_encoder_free (e);
  g_object_unref (graph);
  g_object_unref (buf);
  oft_image_free (rgb);
  oft_image_free (cond);
  oft_pipeline_free (p);
  g_free (encoder_path);
  g_free (dir);
  g_free (cond_path);
  g_free (model);
}

/* GEGL_PATH for this process: our module (OFT_GEGL_MODULE_DIR) and, from GEGL's own folder
 * (OFT_GEGL_SYSTEM_DIR), only the core and common operations (buffer-source): its other modules
 * (ffmpeg, text, ...) keep allocations to exit that LeakSanitizer would report. Links in a temporary
 * folder, removed at the end. */
static const char *const system_modules[] = {
  "gegl-core.so", "gegl-common.so", "gegl-common-x86_64-v2.so", "gegl-common-x86_64-v3.so",
};

static char *
module_dir (void)
{
  const char *ours = g_getenv ("OFT_GEGL_MODULE_DIR"), *sys = g_getenv ("OFT_GEGL_SYSTEM_DIR");
  g_assert_nonnull (ours);
  g_assert_nonnull (sys);
  char *dir = g_dir_make_tmp ("test-gegl-modules-XXXXXX", NULL);
  g_assert_nonnull (dir);
  char *target = g_build_filename (ours, "gegl-oft.so", NULL), *link = g_build_filename (dir, "gegl-oft.so", NULL);
  g_assert_cmpint (symlink (target, link), ==, 0);
  g_free (target);
  g_free (link);
  for (size_t i = 0; i < G_N_ELEMENTS (system_modules); i++)
    {
      target = g_build_filename (sys, system_modules[i], NULL);
      link = g_build_filename (dir, system_modules[i], NULL);
      if (g_file_test (target, G_FILE_TEST_EXISTS))
        g_assert_cmpint (symlink (target, link), ==, 0);
      g_free (target);
      g_free (link);
    }
  g_setenv ("GEGL_PATH", dir, TRUE);
  return dir;
}

static void
remove_module_dir (char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      char *path = g_build_filename (dir, name, NULL);
      g_remove (path);
      g_free (path);
    }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* GEGL logs its own runtime checks as warnings; g_test_init would make them fatal */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  char *mods = module_dir ();
  gegl_init (&argc, &argv);
  g_test_add_func ("/gegl/registered", test_registered);
  g_test_add_func ("/gegl/generate/matches-pipeline", test_generate_matches_pipeline);
  g_test_add_func ("/gegl/generate/conditioned", test_generate_conditioned);
  g_test_add_func ("/gegl/generate/device", test_generate_device);
  int rc = g_test_run ();
  /* no gegl_exit: babl's teardown drops blocks still listed as in use, which LeakSanitizer reports */
  remove_module_dir (mods);
  return rc;
}
