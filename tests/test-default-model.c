/* The bundled default model (data/default-model, issue 6): its three quality figures measured on a
 * subset small enough for every test run, with the scene analyser, on what the model generates now:
 *   - captions: held-out captions of the model's scene distribution (its scenes.json) generated and
 *     checked against the caption (issue target: ≥ 80% match);
 *   - canny: the bundled canny control adapter (data/default-canny) on held-out edge maps, mean edge F1
 *     between the canny of the image and the condition (target ≥ 0.5), pixel-exact and within 1 px;
 *     skipped while there is none;
 *   - sks: OFT subject finetuning on four images of the sks pattern (a star quartered in blue and
 *     white), then the share of "a sks star" images holding the pattern before and after (targets
 *     ≤ 10% before, ≥ 70% after).
 * The figures of this very subset are recorded beside the model in quality.json when it is made (and
 * quoted in the README); the test fails when a figure moves away from the record by more than the
 * tolerance, i.e. when the model in data/ or anything on the way (tokenizer, UNet, VAE, sampler, trainer,
 * analyser) changed its pictures. Whether the targets are met is printed, not asserted (a subset
 * this small scatters around the full figure; README, "The bundled default model", has both, and why
 * the canny one is met within 1 px only). With OFT_QUALITY_RECORD=FILE the figures are
 * written there instead of compared (for a new model: FILE = data/default-model/quality.json). */
#include "test-common.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define N_CAPTIONS 40
#define N_CANNY 12
#define N_SKS 10
#define STEPS 20
#define GUIDANCE 4.0f
/* with a control the layout comes from the edges; text guidance as strong as above pulls each shape toward
 * the caption's typical one (on 96 held-out maps, edge F1 within 1 px: 0.516 at guidance 4, 0.607 at 2) */
#define CONTROL_GUIDANCE 2.0f
#define SKS_STEPS 1200
#define SKS_LR 2e-3
#define EVAL_SEED 0x0DEF417u
/* the attention and both feed-forward Linears: 1200 steps on them drew the pattern in 17, 13 and 20 of 20
 * generations over three training seeds, 800 steps on the attention alone in 15, 13 and 14 (README) */
static const char *const sks_targets[] = { "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", NULL };
/* images whose verdict may flip between machines (float rounding in a borderline picture) */
#define COUNT_TOLERANCE 2
#define F1_TOLERANCE 0.05

static char *model_dir, *canny_dir;
static OftSceneGenParams dist;
static int size;
static JsonObject *record;
static const char *record_to;  /* OFT_QUALITY_RECORD */
static GString *recorded;

static JsonObject *
read_json (const char *name)
{
  char *path = g_build_filename (model_dir, name, NULL);
  JsonParser *jp = json_parser_new ();
  GError *e = NULL;
  if (!json_parser_load_from_file (jp, path, &e))
    g_error ("%s: %s", path, e->message);
  JsonNode *root = json_parser_get_root (jp);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (root));
  JsonObject *o = json_object_ref (json_node_get_object (root));
  g_object_unref (jp);
  g_free (path);
  return o;
}

/* the model's scene distribution (written by tools/train-default-model) */
static void
read_distribution (void)
{
  JsonObject *o = read_json ("scenes.json");
  dist = OFT_SCENE_GEN_PARAMS_DEFAULT;
  dist.min_shapes = (int) json_object_get_int_member (o, "min_shapes");
  dist.max_shapes = (int) json_object_get_int_member (o, "max_shapes");
  dist.textures = json_object_get_boolean_member (o, "textures");
  dist.split = OFT_SCENE_SPLIT_HELDOUT;
  size = (int) json_object_get_int_member (o, "size");
  json_object_unref (o);
}

/* the recorded count `name` ("captions", "sks_before", ...) of `n` images; the measured one must be within
 * COUNT_TOLERANCE */
static void
check_count (const char *name, int got, int n)
{
  if (record_to)
    {
      g_string_append_printf (recorded, "%s\n  \"%s\": [%d, %d]", recorded->len > 1 ? "," : "", name, got, n);
      return;
    }
  JsonArray *a = json_object_has_member (record, name) ? json_object_get_array_member (record, name) : NULL;
  if (!a || json_array_get_length (a) != 2)
    g_error ("quality.json: no \"%s\": [count, of]", name);
  int want = (int) json_array_get_int_element (a, 0), of = (int) json_array_get_int_element (a, 1);
  g_test_message ("%s: %d/%d (recorded %d/%d)", name, got, n, want, of);
  g_assert_cmpint (of, ==, n);
  g_assert_cmpint (ABS (got - want), <=, COUNT_TOLERANCE);
}

static OftPipeline *
load_pipeline (const char *adapter)
{
  GError *e = NULL;
  OftPipeline *p = oft_pipeline_load (model_dir, &e);
  g_assert_no_error (e);
  if (adapter)
    {
      OftPeftAdapter *a = oft_peft_adapter_load (adapter, &e);
      g_assert_no_error (e);
      g_assert_true (oft_unet_apply_adapter (p->unet, a, FALSE, &e));
      g_assert_no_error (e);
      oft_peft_adapter_free (a);
    }
  return p;
}

/* one image as 8-bit RGB */
static OftImage *
generate (OftPipeline *p, const char *prompt, uint64_t seed, const OftCondEncoder *enc, const float *cond)
{
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = prompt, g.steps = STEPS, g.guidance = enc ? CONTROL_GUIDANCE : GUIDANCE, g.sampler = OFT_SAMPLER_DDIM;
  g.seed = seed;
  g.width = g.height = size;
  g.control = enc, g.condition = cond;
  float *rgb = g_new (float, 3 * size * size);
  GError *e = NULL;
  g_assert_true (oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &e));
  g_assert_no_error (e);
  OftImage *img = oft_image_new (size, size, 3);
  oft_image_to_rgb8 (img->pixels, rgb, size, size);
  g_free (rgb);
  return img;
}

static OftImage *
render (const OftScene *sc)
{
  GError *e = NULL;
  OftImage *img = oft_scene_render (sc, size, size, 4, &e);
  g_assert_no_error (e);
  return img;
}

static void
test_captions (void)
{
  OftPipeline *p = load_pipeline (NULL);
  int ok = 0, by[OFT_SCENE_MAX_SHAPES + 1][2] = { { 0 } };
  for (int i = 0; i < N_CAPTIONS; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, EVAL_SEED, (uint64_t) i, &dist);
      char *cap = oft_scene_caption (&sc);
      OftSceneCaption want;
      oft_scene_describe (&sc, &want);
      g_assert_true (oft_scene_caption_heldout (&want));
      OftImage *img = generate (p, cap, (uint64_t) i, NULL, NULL);
      OftSceneAnalysis an;
      gboolean m = oft_scene_analyse (img, &an, NULL) && oft_scene_matches_caption (&an, &want);
      ok += m;
      by[sc.n_shapes][0] += m, by[sc.n_shapes][1]++;
      g_test_message ("\"%s\": %s", cap, m ? "match" : "no match");
      oft_image_free (img);
      g_free (cap);
    }
  for (int k = 1; k <= OFT_SCENE_MAX_SHAPES; k++)
    if (by[k][1])
      g_test_message ("%d shape(s): %d/%d", k, by[k][0], by[k][1]);
  g_test_message ("held-out captions matched: %d/%d (%.0f%%; issue target >= 80%%: %s)", ok, N_CAPTIONS,
                  100.0 * ok / N_CAPTIONS, ok * 10 >= 8 * N_CAPTIONS ? "met" : "not met");
  check_count ("captions", ok, N_CAPTIONS);
  oft_pipeline_free (p);
}

static void
test_canny (void)
{
  if (!canny_dir)
    {
      g_test_skip ("no data/default-canny yet");
      return;
    }
  OftPipeline *p = load_pipeline (canny_dir);
  char *enc_path = g_build_filename (canny_dir, OFT_COND_ENCODER_FILE, NULL);
  GError *e = NULL;
  OftCondEncoder *enc = oft_cond_encoder_load (enc_path, &e);
  g_assert_no_error (e);
  double f1 = 0, f1w = 0;
  float *cond = g_new (float, 3 * size * size);
  for (int i = 0; i < N_CANNY; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, EVAL_SEED + 1, (uint64_t) i, &dist);
      OftImage *scene = render (&sc), *edges = oft_scene_canny (scene, &e);
      g_assert_no_error (e);
      oft_image_to_planar (cond, edges, size, size);
      char *cap = oft_scene_caption (&sc);
      OftImage *img = generate (p, cap, (uint64_t) i, enc, cond), *got = oft_scene_canny (img, &e);
      g_assert_no_error (e);
      OftEdgeMetrics m;
      oft_metrics_edges (&m, got->pixels, edges->pixels, (int64_t) size * size);
      double w = oft_metrics_edges_f1_within (got->pixels, edges->pixels, size, size, 1);
      g_test_message ("\"%s\": edge F1 %.3f, within 1 px %.3f", cap, m.f1, w);
      f1 += isnan (m.f1) ? 0 : m.f1;
      f1w += isnan (w) ? 0 : w;
      oft_image_free (scene), oft_image_free (edges), oft_image_free (img), oft_image_free (got);
      g_free (cap);
    }
  f1 /= N_CANNY, f1w /= N_CANNY;
  double want = record ? json_object_get_double_member_with_default (record, "canny_f1", NAN) : NAN;
  double want_w = record ? json_object_get_double_member_with_default (record, "canny_f1_1px", NAN) : NAN;
  g_test_message ("mean edge F1 against the condition: pixel-exact %.3f (recorded %.3f), within 1 px %.3f (recorded "
                  "%.3f); issue target >= 0.5: %s pixel-exact, %s within 1 px", f1, want, f1w, want_w,
                  f1 >= 0.5 ? "met" : "not met", f1w >= 0.5 ? "met" : "not met");
  if (record_to)
    g_string_append_printf (recorded, "%s\n  \"canny_f1\": %.3f,\n  \"canny_f1_1px\": %.3f",
                            recorded->len > 1 ? "," : "", f1, f1w);
  else
    {
      g_assert_cmpfloat (fabs (f1 - want), <=, F1_TOLERANCE);  /* NaN (not recorded) fails too */
      g_assert_cmpfloat (fabs (f1w - want_w), <=, F1_TOLERANCE);
    }
  g_free (cond);
  g_free (enc_path);
  oft_cond_encoder_free (enc);
  oft_pipeline_free (p);
}

/* images of N_SKS seeds holding a pattern component */
static int
count_pattern (OftPipeline *p)
{
  int n = 0;
  for (int i = 0; i < N_SKS; i++)
    {
      OftImage *img = generate (p, "a sks star", 1000 + (uint64_t) i, NULL, NULL);
      OftSceneAnalysis an;
      gboolean has = FALSE;
      if (oft_scene_analyse (img, &an, NULL))
        for (int c = 0; c < an.n_components; c++)
          has |= an.components[c].pattern;
      n += has;
      oft_image_free (img);
    }
  return n;
}

static void
test_sks (void)
{
  if (UNDER_ASAN)
    {
      /* 1200 training steps took 13 minutes in the sanitizers' -O0 build (cores shared with another run);
       * the trainer runs under them in test-train and test-adapter-train, this figure in the normal build */
      g_test_skip ("sks finetuning is measured in the normal build");
      return;
    }
  char *dir = g_dir_make_tmp ("oft-sks-XXXXXX", NULL);
  char *images = g_build_filename (dir, "images", NULL), *out = g_build_filename (dir, "adapter", NULL);
  g_mkdir (images, 0755);
  OftSceneGenParams pp = dist;
  pp.pattern = TRUE;
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  GError *e = NULL;
  for (int i = 0; i < 4; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, EVAL_SEED + 2, (uint64_t) i, &pp);
      OftImage *img = render (&sc);
      char *f = g_strdup_printf ("%s/%d.png", images, i);
      g_assert_true (oft_image_save_png (img, f, &e));
      g_assert_no_error (e);
      g_ptr_array_add (files, f);
      oft_image_free (img);
    }
  g_ptr_array_add (files, NULL);

  OftPipeline *p = load_pipeline (NULL);
  int before = count_pattern (p);
  OftTrainParams t;
  oft_train_params_init (&t);
  t.images = (const char *const *) files->pdata;
  t.prompt = "a sks star";
  t.steps = SKS_STEPS, t.lr = SKS_LR, t.seed = 1, t.out_dir = out;
  t.targets = sks_targets;
  g_assert_true (oft_train_run (p, &t, &e));
  g_assert_no_error (e);
  oft_pipeline_free (p);
  p = load_pipeline (out);
  int after = count_pattern (p);
  oft_pipeline_free (p);
  g_test_message ("the sks pattern in \"a sks star\" images: %d/%d before finetuning, %d/%d after "
                  "(issue targets <= 10%% before, >= 70%% after: %s)", before, N_SKS, after, N_SKS,
                  before * 10 <= N_SKS && after * 10 >= 7 * N_SKS ? "met" : "not met");
  check_count ("sks_before", before, N_SKS);
  check_count ("sks_after", after, N_SKS);

  g_ptr_array_unref (files);
  char *argv[] = { "rm", "-rf", dir, NULL };
  g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
  g_free (images), g_free (out), g_free (dir);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  GError *e = NULL;
  model_dir = oft_data_path ("default-model", &e);
  if (!model_dir)
    g_error ("%s", e->message);
  /* beside the model, so that an installed adapter cannot stand in for this tree's */
  char *data = g_path_get_dirname (model_dir);
  canny_dir = g_build_filename (data, "default-canny", NULL);
  g_free (data);
  if (!g_file_test (canny_dir, G_FILE_TEST_IS_DIR))
    g_clear_pointer (&canny_dir, g_free);
  read_distribution ();
  record_to = g_getenv ("OFT_QUALITY_RECORD");
  if (record_to)
    recorded = g_string_new ("{");
  else
    record = read_json ("quality.json");
  g_test_add_func ("/default-model/captions", test_captions);
  g_test_add_func ("/default-model/canny", test_canny);
  g_test_add_func ("/default-model/sks", test_sks);
  int rc = g_test_run ();
  if (record_to)
    {
      g_string_append (recorded, "\n}\n");
      GError *e2 = NULL;
      if (rc == 0 && !g_file_set_contents (record_to, recorded->str, -1, &e2))
        g_error ("%s", e2->message);
      g_string_free (recorded, TRUE);
    }
  else
    json_object_unref (record);
  g_free (model_dir);
  g_free (canny_dir);
  return rc;
}
