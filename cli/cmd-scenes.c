/* oft scenes: the procedural-scenes dataset (images, captions, canny and segmentation conditions,
 * manifest.jsonl) and its analyser (oft scenes analyse). */
#include "oft-cli.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

static gboolean
save (const OftImage *img, const char *dir, const char *name, GError **error)
{
  char *path = g_build_filename (dir, name, NULL);
  gboolean ok = oft_image_save_png (img, path, error);
  g_free (path);
  return ok;
}

static void
json_add_string (GString *out, const char *key, const char *value)
{
  char *esc = g_strescape (value, NULL);
  g_string_append_printf (out, "\"%s\": \"%s\", ", key, esc);
  g_free (esc);
}

static int
scenes_generate (int argc, char **argv)
{
  int count = 16, size = 64, supersample = 4, min_shapes = 1, max_shapes = 3;
  gint64 seed = 0;
  char *out_dir = NULL, *split = NULL;
  gboolean conditions = FALSE, pattern = FALSE, plain = FALSE;
  GOptionEntry entries[] = {
    { "count", 'n', 0, G_OPTION_ARG_INT, &count, "Number of scenes (default 16)", "N" },
    { "size", 's', 0, G_OPTION_ARG_INT, &size, "Image side in pixels (default 64)", "PX" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Dataset seed (default 0); scene i depends only on (seed, i)", "S" },
    { "out", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Output folder (created)", "DIR" },
    { "conditions", 0, 0, G_OPTION_ARG_NONE, &conditions, "Also write canny edges and segmentation maps "
      "(colour, data/scenes-palette.json, and class index)", NULL },
    { "pattern", 0, 0, G_OPTION_ARG_NONE, &pattern, "Pattern instances for subject finetuning: one sks star "
      "(quartered in blue and white), caption \"a sks star\"", NULL },
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, "train (default), heldout or any: which captions to draw", "SPLIT" },
    { "min-shapes", 0, 0, G_OPTION_ARG_INT, &min_shapes, "Fewest shapes per scene, 1..3 (default 1)", "K" },
    { "max-shapes", 0, 0, G_OPTION_ARG_INT, &max_shapes, "Most shapes per scene, 1..3 (default 3)", "K" },
    { "plain", 0, 0, G_OPTION_ARG_NONE, &plain, "Plain backgrounds only (no stripes or checkers)", NULL },
    { "supersample", 0, 0, G_OPTION_ARG_INT, &supersample, "Anti-aliasing samples per pixel side, 1..16 "
      "(default 4)", "K" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("--out DIR - write a procedural scenes dataset");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Writes DIR/NNNNN.png and DIR/manifest.jsonl, one line per scene: "
                                "{\"image\", \"caption\", \"split\", [\"canny\", \"segmentation\", "
                                "\"segmentation_index\"], \"scene\": {shapes, relation, background, texture}}.\n"
                                "Run 'oft scenes analyse --help' for the analyser.");
  GError *error = NULL;
  GString *manifest = g_string_new (NULL);
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  OftSceneGenParams p = OFT_SCENE_GEN_PARAMS_DEFAULT;
  p.pattern = pattern;
  p.textures = !plain;
  p.min_shapes = min_shapes, p.max_shapes = max_shapes;
  if (!split || strcmp (split, "train") == 0)
    p.split = OFT_SCENE_SPLIT_TRAIN;
  else if (strcmp (split, "heldout") == 0)
    p.split = OFT_SCENE_SPLIT_HELDOUT;
  else if (strcmp (split, "any") == 0)
    p.split = OFT_SCENE_SPLIT_ANY;
  else
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--split %s: expected train, heldout or any", split);
      goto out;
    }
  if (!out_dir || argc != 1)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected --out DIR and no other arguments "
                   "(see oft scenes --help)");
      goto out;
    }
  if (count < 1 || count > 10000000 || size < 16 || size > 4096 || min_shapes < 1 || max_shapes > 3
      || min_shapes > max_shapes || supersample < 1 || supersample > 16)
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "--count %d --size %d --min-shapes %d --max-shapes %d "
                   "--supersample %d: expected a count of 1..10000000, a size of 16..4096, 1 ≤ min ≤ max ≤ 3 "
                   "shapes and supersampling of 1..16", count, size, min_shapes, max_shapes, supersample);
      goto out;
    }
  if (g_mkdir_with_parents (out_dir, 0755) != 0)
    {
      g_set_error (&error, OFT_IO_ERROR, OFT_ERROR_FAILED, "%s: cannot create the folder: %s", out_dir,
                   g_strerror (errno));
      goto out;
    }
  OftPalette *pal = oft_scene_seg_palette ();
  CliProgress progress;
  cli_progress_init (&progress, "scenes");
  gboolean ok = TRUE;
  for (int i = 0; i < count && ok; i++)
    {
      OftScene scene;
      oft_scene_generate_nth (&scene, (uint64_t) seed, (uint64_t) i, &p);
      char name[64], canny_name[64], seg_name[64], idx_name[64];
      g_snprintf (name, sizeof name, "%05d.png", i);
      g_snprintf (canny_name, sizeof canny_name, "%05d-canny.png", i);
      g_snprintf (seg_name, sizeof seg_name, "%05d-seg.png", i);
      g_snprintf (idx_name, sizeof idx_name, "%05d-segidx.png", i);
      OftImage *img = oft_scene_render (&scene, size, size, supersample, &error), *canny = NULL, *idx = NULL,
               *seg = NULL;
      ok = img && save (img, out_dir, name, &error);
      if (ok && conditions)
        {
          ok = (canny = oft_scene_canny (img, &error)) && save (canny, out_dir, canny_name, &error)
               && (idx = oft_scene_segmentation (&scene, size, size, &error));
          if (ok)
            {
              seg = oft_image_new (size, size, 3);
              oft_segmap_colorize (seg->pixels, idx->pixels, (int64_t) size * size, pal);
              ok = save (seg, out_dir, seg_name, &error) && save (idx, out_dir, idx_name, &error);
            }
        }
      if (ok)
        {
          char *caption = oft_scene_caption (&scene), *json = oft_scene_to_json (&scene);
          OftSceneCaption cap;
          oft_scene_describe (&scene, &cap);
          g_string_append (manifest, "{");
          json_add_string (manifest, "image", name);
          json_add_string (manifest, "caption", caption);
          json_add_string (manifest, "split", oft_scene_caption_heldout (&cap) ? "heldout" : "train");
          if (conditions)
            {
              json_add_string (manifest, "canny", canny_name);
              json_add_string (manifest, "segmentation", seg_name);
              json_add_string (manifest, "segmentation_index", idx_name);
            }
          g_string_append_printf (manifest, "\"scene\": %s}\n", json);
          g_free (caption);
          g_free (json);
        }
      oft_image_free (img);
      oft_image_free (canny);
      oft_image_free (idx);
      oft_image_free (seg);
      cli_progress_update (&progress, i + 1, count);
    }
  oft_palette_free (pal);
  if (!ok)
    goto out;
  char *manifest_path = g_build_filename (out_dir, "manifest.jsonl", NULL);
  ok = oft_file_write_atomic (manifest_path, manifest->str, manifest->len, &error);
  if (ok)
    printf ("%s: %d scenes of %d×%d%s\n", manifest_path, count, size, size, conditions ? " with conditions" : "");
  g_free (manifest_path);
  if (!ok)
    goto out;
  rc = 0;
out:
  if (rc)
    cli_fail ("scenes", error);
  g_clear_error (&error);
  g_string_free (manifest, TRUE);
  g_free (out_dir);
  g_free (split);
  g_option_context_free (ctx);
  return rc;
}

/* One JSON line for an image: its analysis and, with a caption, whether it matches. */
static gboolean
analyse_one (const char *path, const char *caption, gboolean *matched, GString *line, GError **error)
{
  OftImage *img = oft_image_load (path, error);
  if (!img)
    return FALSE;
  OftSceneAnalysis a;
  gboolean ok = oft_scene_analyse (img, &a, error);
  oft_image_free (img);
  if (!ok)
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  char *json = oft_scene_analysis_to_json (&a);
  g_string_append (line, "{");
  json_add_string (line, "image", path);
  if (caption)
    {
      OftSceneCaption cap;
      if (!oft_scene_caption_parse (caption, &cap, error))
        {
          g_free (json);
          return FALSE;
        }
      *matched = oft_scene_matches_caption (&a, &cap);
      json_add_string (line, "caption", caption);
      g_string_append_printf (line, "\"match\": %s, ", *matched ? "true" : "false");
    }
  g_string_append_printf (line, "\"analysis\": %s}\n", json);
  g_free (json);
  return TRUE;
}

static int
scenes_analyse (int argc, char **argv)
{
  char *caption = NULL, *manifest = NULL;
  GOptionEntry entries[] = {
    { "caption", 'c', 0, G_OPTION_ARG_STRING, &caption, "Also check every image against this caption", "TEXT" },
    { "manifest", 'm', 0, G_OPTION_ARG_FILENAME, &manifest, "Check the images of a manifest.jsonl (paths relative "
      "to it) against their captions; prints one line per image and a summary", "FILE" },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new ("IMG... - analyse procedural-scene pictures (JSON lines)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx, "Background colour, shapes (class, colour, centre, size, invariants), the "
                                "relation of the two largest, the sks pattern. A caption matches when its "
                                "background colour is the image's, each of its shapes has its own component of "
                                "that class, colour and pattern, the relation holds, and no other component is "
                                "more than half as large as the smallest matched one.");
  GError *error = NULL;
  GString *out = g_string_new (NULL);
  JsonParser *parser = NULL;
  int rc = 1;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    goto out;
  if ((argc < 2) == !manifest || (manifest && caption))
    {
      g_set_error (&error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "expected images (optionally with --caption) or "
                   "--manifest FILE (see oft scenes analyse --help)");
      goto out;
    }
  int total = 0, matched_n = 0;
  if (manifest)
    {
      char *text = NULL;
      if (!g_file_get_contents (manifest, &text, NULL, &error))
        goto out;
      char **lines = g_strsplit (text, "\n", -1), *dir = g_path_get_dirname (manifest);
      g_free (text);
      parser = json_parser_new ();
      gboolean ok = TRUE;
      for (int i = 0; lines[i] && ok; i++)
        {
          if (!*g_strstrip (lines[i]))
            continue;
          JsonObject *o = NULL;
          const char *image = NULL, *cap = NULL;
          if (json_parser_load_from_data (parser, lines[i], -1, NULL) && JSON_NODE_HOLDS_OBJECT
              (json_parser_get_root (parser)))
            {
              o = json_node_get_object (json_parser_get_root (parser));
              image = json_object_get_string_member_with_default (o, "image", NULL);
              cap = json_object_get_string_member_with_default (o, "caption", NULL);
            }
          if (!image || !cap)
            {
              g_set_error (&error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: line %d: expected a JSON object with "
                           "string members \"image\" and \"caption\"", manifest, i + 1);
              ok = FALSE;
              break;
            }
          char *path = g_path_is_absolute (image) ? g_strdup (image) : g_build_filename (dir, image, NULL);
          gboolean m = FALSE;
          ok = analyse_one (path, cap, &m, out, &error);
          total++, matched_n += m;
          g_free (path);
        }
      g_strfreev (lines);
      g_free (dir);
      if (!ok)
        goto out;
      g_string_append_printf (out, "{\"images\": %d, \"matched\": %d, \"match_rate\": %.4f}\n", total, matched_n,
                              total ? (double) matched_n / total : 0.0);
    }
  else
    for (int i = 1; i < argc; i++)
      {
        gboolean m = FALSE;
        if (!analyse_one (argv[i], caption, &m, out, &error))
          goto out;
      }
  fputs (out->str, stdout);
  rc = 0;
out:
  if (rc)
    cli_fail ("scenes analyse", error);
  g_clear_error (&error);
  if (parser)
    g_object_unref (parser);
  g_string_free (out, TRUE);
  g_free (caption);
  g_free (manifest);
  g_option_context_free (ctx);
  return rc;
}

int
cmd_scenes (int argc, char **argv)
{
  if (argc >= 2 && (strcmp (argv[1], "analyse") == 0 || strcmp (argv[1], "analyze") == 0))
    return scenes_analyse (argc - 1, argv + 1);
  return scenes_generate (argc, argv);
}
