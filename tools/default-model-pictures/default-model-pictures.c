/* The README's pictures of the bundled default model (docs/default-model-*.png):
 *
 *   default-model-pictures MODEL CANNY SKS_IMAGES SKS_ADAPTER OUTDIR
 *
 * captions.png: held-out captions (never seen in training), each as the scene generator draws it and as
 *   the model generates it, with the analyser's verdict;
 * canny.png: held-out canny conditions and what the model draws with the canny control adapter;
 * sks.png: the four sks training images, "a sks star" before finetuning and after (SKS_ADAPTER).
 * Images are shown 2× (nearest neighbour), captions in the built-in 5×7 font. Same settings as
 * tests/test-default-model.c: DDIM 20 steps, guidance 4, 2 with the canny control. */
#include "oft/oft.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZOOM 2
#define PAD 8

static const uint8_t ink[3] = { 20, 20, 20 }, good[3] = { 0, 120, 0 }, bad[3] = { 170, 0, 0 };
static int size;

static void
die (GError *e)
{
  fprintf (stderr, "default-model-pictures: %s\n", e ? e->message : "failed");
  exit (1);
}

static OftImage *
canvas (int w, int h)
{
  OftImage *c = oft_image_new (w, h, 3);
  memset (c->pixels, 255, (size_t) w * h * 3);
  return c;
}

/* img (1 or 3 channels) at ZOOM× with its top-left corner at x, y */
static void
paste (OftImage *c, const OftImage *img, int x, int y)
{
  for (int j = 0; j < img->height * ZOOM; j++)
    for (int i = 0; i < img->width * ZOOM; i++)
      {
        const uint8_t *s = img->pixels + ((size_t) (j / ZOOM) * img->width + i / ZOOM) * img->channels;
        uint8_t *d = c->pixels + ((size_t) (y + j) * c->width + x + i) * 3;
        for (int k = 0; k < 3; k++)
          d[k] = s[img->channels == 3 ? k : 0];
      }
}

/* text wrapped at `cols` characters, lines 10 px apart */
static void
text (OftImage *c, int x, int y, const char *s, int cols, const uint8_t rgb[3])
{
  char **words = g_strsplit (s, " ", -1);
  GString *line = g_string_new (NULL);
  for (int i = 0; words[i]; i++)
    {
      if (line->len && line->len + 1 + strlen (words[i]) > (size_t) cols)
        {
          oft_font_draw (c, x, y, line->str, 1, rgb);
          y += 10;
          g_string_truncate (line, 0);
        }
      g_string_append_printf (line, "%s%s", line->len ? " " : "", words[i]);
    }
  if (line->len)
    oft_font_draw (c, x, y, line->str, 1, rgb);
  g_string_free (line, TRUE);
  g_strfreev (words);
}

static OftPipeline *
load (const char *model, const char *adapter)
{
  GError *e = NULL;
  OftPipeline *p = oft_pipeline_load (model, &e);
  OftPeftAdapter *a = p && adapter ? oft_peft_adapter_load (adapter, &e) : NULL;
  if (!p || (adapter && (!a || !oft_unet_apply_adapter (p->unet, a, FALSE, &e))))
    die (e);
  oft_peft_adapter_free (a);
  return p;
}

static OftImage *
generate (OftPipeline *p, const char *prompt, uint64_t seed, const OftCondEncoder *enc, const float *cond)
{
  OftGenerateParams g;
  oft_generate_params_init (&g);
  g.prompt = prompt, g.steps = 20, g.guidance = enc ? 2.0f : 4.0f, g.sampler = OFT_SAMPLER_DDIM, g.seed = seed;
  g.width = g.height = size, g.control = enc, g.condition = cond;
  float *rgb = g_new (float, 3 * size * size);
  GError *e = NULL;
  if (!oft_pipeline_generate (p, &g, rgb, NULL, NULL, NULL, &e))
    die (e);
  OftImage *img = oft_image_new (size, size, 3);
  oft_image_to_rgb8 (img->pixels, rgb, size, size);
  g_free (rgb);
  return img;
}

static void
save (OftImage *c, const char *dir, const char *name)
{
  char *path = g_build_filename (dir, name, NULL);
  GError *e = NULL;
  if (!oft_image_save_png (c, path, &e))
    die (e);
  printf ("wrote %s\n", path);
  g_free (path);
  oft_image_free (c);
}

static OftSceneGenParams
distribution (const char *model)
{
  char *path = g_build_filename (model, "scenes.json", NULL), *json = NULL;
  GError *e = NULL;
  if (!g_file_get_contents (path, &json, NULL, &e))
    die (e);
  OftSceneGenParams d = OFT_SCENE_GEN_PARAMS_DEFAULT;
  const char *s;
  size = (s = strstr (json, "\"size\":")) ? atoi (s + 7) : 64;
  d.min_shapes = (s = strstr (json, "\"min_shapes\":")) ? atoi (s + 13) : 1;
  d.max_shapes = (s = strstr (json, "\"max_shapes\":")) ? atoi (s + 13) : 3;
  d.textures = !strstr (json, "\"textures\": false");
  d.split = OFT_SCENE_SPLIT_HELDOUT;
  g_free (json);
  g_free (path);
  return d;
}

int
main (int argc, char **argv)
{
  /* as `oft` does: OpenMP workers sleep instead of spinning against OpenBLAS's threads, and the BLAS
   * kernels of this CPU (without it most of the time went to spinning) */
  oft_runtime_tune_process (argv);
  if (argc != 6)
    {
      fprintf (stderr, "usage: default-model-pictures MODEL CANNY SKS_IMAGES SKS_ADAPTER OUTDIR\n");
      return 2;
    }
  const char *model = argv[1], *canny = argv[2], *sks_images = argv[3], *sks = argv[4], *dir = argv[5];
  OftSceneGenParams d = distribution (model);
  GError *e = NULL;
  int cell = size * ZOOM, cols = 4;

  /* held-out captions: reference | generated, caption and verdict below */
  OftPipeline *p = load (model, NULL);
  int cw = 2 * cell + 3 * PAD, ch = cell + 5 * 10 + 2 * PAD;
  OftImage *c = canvas (cols * cw, 2 * ch);
  for (int i = 0; i < 2 * cols; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, 0x0DEF417u, (uint64_t) i, &d);
      char *cap = oft_scene_caption (&sc);
      OftImage *ref = oft_scene_render (&sc, size, size, 4, &e), *img = generate (p, cap, (uint64_t) i, NULL, NULL);
      if (!ref)
        die (e);
      OftSceneCaption want;
      OftSceneAnalysis an;
      oft_scene_describe (&sc, &want);
      gboolean m = oft_scene_analyse (img, &an, NULL) && oft_scene_matches_caption (&an, &want);
      int x = (i % cols) * cw + PAD, y = (i / cols) * ch + PAD;
      paste (c, ref, x, y);
      paste (c, img, x + cell + PAD, y);
      text (c, x, y + cell + 4, cap, (2 * cell + PAD) / 6, ink);
      oft_font_draw (c, x, y + cell + 4 + 3 * 10, m ? "analyser: match" : "analyser: no match", 1, m ? good : bad);
      oft_image_free (ref), oft_image_free (img);
      g_free (cap);
    }
  save (c, dir, "default-model-captions.png");
  oft_pipeline_free (p);

  /* canny: condition | generated */
  p = load (model, canny);
  char *enc_path = g_build_filename (canny, OFT_COND_ENCODER_FILE, NULL);
  OftCondEncoder *enc = oft_cond_encoder_load (enc_path, &e);
  if (!enc)
    die (e);
  c = canvas (cols * cw, 2 * ch);
  float *cond = g_new (float, 3 * size * size);
  for (int i = 0; i < 2 * cols; i++)
    {
      OftScene sc;
      oft_scene_generate_nth (&sc, 0x0DEF417u + 1, (uint64_t) i, &d);
      char *cap = oft_scene_caption (&sc);
      OftImage *ref = oft_scene_render (&sc, size, size, 4, &e), *edges = ref ? oft_scene_canny (ref, &e) : NULL;
      if (!edges)
        die (e);
      oft_image_to_planar (cond, edges, size, size);
      OftImage *img = generate (p, cap, (uint64_t) i, enc, cond), *got = oft_scene_canny (img, &e);
      if (!got)
        die (e);
      OftEdgeMetrics m;
      oft_metrics_edges (&m, got->pixels, edges->pixels, (int64_t) size * size);
      int x = (i % cols) * cw + PAD, y = (i / cols) * ch + PAD;
      paste (c, edges, x, y);
      paste (c, img, x + cell + PAD, y);
      text (c, x, y + cell + 4, cap, (2 * cell + PAD) / 6, ink);
      double w = oft_metrics_edges_f1_within (got->pixels, edges->pixels, size, size, 1);
      char *f1 = g_strdup_printf ("edge F1 %.2f, %.2f within 1 px", m.f1, w);
      oft_font_draw (c, x, y + cell + 4 + 3 * 10, f1, 1, ink);
      g_free (f1);
      oft_image_free (ref), oft_image_free (edges), oft_image_free (img), oft_image_free (got);
      g_free (cap);
    }
  g_free (cond);
  g_free (enc_path);
  oft_cond_encoder_free (enc);
  oft_pipeline_free (p);
  save (c, dir, "default-model-canny.png");

  /* sks: the training images, then "a sks star" before and after, four seeds each */
  int n = 4, rw = n * (cell + PAD) + PAD + 110, rh = cell + 2 * PAD;
  c = canvas (rw, 3 * rh);
  const char *rows[3] = { "training images", "before", "after OFT" };
  for (int r = 0; r < 3; r++)
    {
      oft_font_draw (c, PAD, r * rh + PAD + cell / 2 - 4, rows[r], 1, ink);
      p = r == 0 ? NULL : load (model, r == 2 ? sks : NULL);
      for (int i = 0; i < n; i++)
        {
          OftImage *img;
          if (r == 0)
            {
              char *f = g_strdup_printf ("%s/%05d.png", sks_images, i);
              if (!(img = oft_image_load (f, &e)))
                die (e);
              g_free (f);
            }
          else
            img = generate (p, "a sks star", 1000 + (uint64_t) i, NULL, NULL);
          paste (c, img, 110 + i * (cell + PAD), r * rh + PAD);
          oft_image_free (img);
        }
      if (p)
        oft_pipeline_free (p);
    }
  save (c, dir, "default-model-sks.png");
  return 0;
}
