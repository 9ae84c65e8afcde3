/* The oft: operations through the GEGL API (the module found on GEGL_PATH, set by meson): each is
 * registered with a title and categories GIMP 2.10's GEGL tool shows. oft:generate: the floats it
 * renders are those of oft_pipeline_generate with the same settings, bit for bit; its progress goes
 * from 0 to 1 through every sampling step; a second render with unchanged settings is not sampled
 * again. The tiny golden pipeline at a non-square size, so a width/height mix-up shows. */
#include "test-common.h"
#include <gegl.h>
#include <math.h>
#include <string.h>

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

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* GEGL logs its own runtime checks as warnings; g_test_init would make them fatal */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  gegl_init (&argc, &argv);
  g_test_add_func ("/gegl/registered", test_registered);
  g_test_add_func ("/gegl/generate/matches-pipeline", test_generate_matches_pipeline);
  return g_test_run ();
}
