/* Single-file checkpoints: the LDM name maps, an LDM-named .safetensors of the golden pipeline that must
 * give the folder's image, and the restricted .ckpt reader on archives this test writes byte by byte
 * (zip via libzip, pickle protocol 2 as torch.save writes a state dict), good and hostile. */
#include "test-common.h"
#include <glib/gstdio.h>
#include <zip.h>
#include <string.h>

/* ---- name maps against SD 1.5's well-known LDM keys ---- */

static void
check_name (char *got, const char *want)
{
  g_assert_cmpstr (got, ==, want);
  g_free (got);
}

static void
test_ldm_names_sd15 (void)
{
  /* SD 1.5: 4 levels, 2 resnets per level, attention in up levels 1–3 */
  OftLdmUnetMap u = { .n_levels = 4, .layers_per_block = 2, .up_attn = { false, true, true, true } };
  OftLdmVaeMap v = { .n_levels = 4 };
#define U(d, l) check_name (oft_ldm_unet_name (d, &u), "model.diffusion_model." l)
  U ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
     "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight");
  U ("time_embedding.linear_2.bias", "time_embed.2.bias");
  U ("conv_in.weight", "input_blocks.0.0.weight");
  U ("down_blocks.0.resnets.1.time_emb_proj.weight", "input_blocks.2.0.emb_layers.1.weight");
  U ("down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight");
  U ("down_blocks.1.resnets.0.conv_shortcut.bias", "input_blocks.4.0.skip_connection.bias");
  U ("down_blocks.3.resnets.1.conv2.weight", "input_blocks.11.0.out_layers.3.weight");
  U ("mid_block.resnets.1.norm1.weight", "middle_block.2.in_layers.0.weight");
  U ("mid_block.attentions.0.proj_in.weight", "middle_block.1.proj_in.weight");
  U ("up_blocks.0.resnets.2.conv1.weight", "output_blocks.2.0.in_layers.2.weight");
  U ("up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight");
  U ("up_blocks.1.upsamplers.0.conv.bias", "output_blocks.5.2.conv.bias");
  U ("up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
     "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight");
  U ("up_blocks.3.resnets.2.norm2.weight", "output_blocks.11.0.out_layers.0.weight");
  U ("conv_norm_out.bias", "out.0.bias");
  U ("conv_out.weight", "out.2.weight");
#undef U
  g_assert_null (oft_ldm_unet_name ("down_blocks.3.downsamplers.0.conv.weight", &u)); /* last level: none */
  g_assert_null (oft_ldm_unet_name ("down_blocks.0.resnets.2.conv1.weight", &u));
  g_assert_null (oft_ldm_unet_name ("up_blocks.4.resnets.0.conv1.weight", &u));
#define V(d, l) check_name (oft_ldm_vae_name (d, &v), "first_stage_model." l)
  V ("decoder.up_blocks.0.resnets.1.conv1.weight", "decoder.up.3.block.1.conv1.weight");
  V ("decoder.up_blocks.2.upsamplers.0.conv.weight", "decoder.up.1.upsample.conv.weight");
  V ("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down.1.block.0.nin_shortcut.weight");
  V ("encoder.down_blocks.0.downsamplers.0.conv.bias", "encoder.down.0.downsample.conv.bias");
  V ("encoder.mid_block.attentions.0.to_out.0.weight", "encoder.mid.attn_1.proj_out.weight");
  V ("decoder.mid_block.attentions.0.group_norm.bias", "decoder.mid.attn_1.norm.bias");
  V ("decoder.mid_block.resnets.1.norm2.weight", "decoder.mid.block_2.norm2.weight");
  V ("encoder.conv_norm_out.weight", "encoder.norm_out.weight");
  V ("post_quant_conv.weight", "post_quant_conv.weight");
#undef V
  check_name (oft_ldm_clip_name ("text_model.encoder.layers.3.mlp.fc1.weight", NULL),
              "cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight");
  g_assert_null (oft_ldm_clip_name ("encoder.layers.3.mlp.fc1.weight", NULL));
}

/* The bundled SD 1.5 configs parse: with no weights file the loaders get past the config and stop at the
 * weights' own error. */
static void
test_sd15_configs (void)
{
  char *dir = oft_sd15_config_dir ();
  GError *open_error = g_error_new (OFT_IO_ERROR, OFT_ERROR_NOT_FOUND, "no weights here"), *error = NULL;
  OftWeightSource src = { .open_error = open_error };
  const char *cfgs[3] = { "unet", "vae", "text_encoder" };
  for (int i = 0; i < 3; i++)
    {
      char *cfg = g_build_filename (dir, cfgs[i], "config.json", NULL);
      gpointer m = i == 0 ? (gpointer) oft_unet_load_from (cfg, &src, &error)
                 : i == 1 ? (gpointer) oft_vae_load_from (cfg, &src, &error)
                          : (gpointer) oft_clip_text_load_from (cfg, &src, &error);
      g_assert_null (m);
      g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
      g_assert_cmpstr (error->message, ==, "no weights here");
      g_clear_error (&error);
      g_free (cfg);
    }
  char *ucfg = g_build_filename (dir, "unet", "config.json", NULL), *sched = g_build_filename (dir, "scheduler",
                                                                                               "scheduler_config.json", NULL);
  OftLdmUnetMap u;
  g_assert_true (oft_ldm_unet_map_init (&u, ucfg, &error));
  g_assert_cmpint (u.n_levels, ==, 4);
  g_assert_cmpint (u.layers_per_block, ==, 2);
  g_assert_true (!u.up_attn[0] && u.up_attn[1] && u.up_attn[3]);
  OftNoiseSchedule s;
  g_assert_true (oft_noise_schedule_load (&s, sched, &error));
  g_assert_no_error (error);
  g_free (ucfg);
  g_free (sched);
  g_error_free (open_error);
  g_free (dir);
}

/* ---- an LDM-named single file built from the golden pipeline folder ---- */

typedef struct {
  GPtrArray *names;   /* owned */
  GArray *tensors;    /* OftTensor views into the open files */
} StateDict;

static void
add_component (StateDict *sd, const OftSafetensors *st, OftNameMap map, gpointer data)
{
  for (size_t i = 0; i < oft_safetensors_count (st); i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, i);
      char *ldm = map (e->name, data);
      if (!ldm)
        g_error ("no LDM name for %s", e->name);
      OftTensor t = oft_safetensors_view (e);
      /* real LDM files keep the VAE mid attention as 1×1 convolutions */
      if (strstr (ldm, ".mid.attn_1.") && g_str_has_suffix (ldm, ".weight") && t.ndim == 2)
        t.ndim = 4, t.shape[2] = t.shape[3] = 1;
      g_ptr_array_add (sd->names, ldm);
      g_array_append_val (sd->tensors, t);
    }
}

typedef struct {
  char *tmp, *pipe_dir;
  OftSafetensors *unet, *vae, *text;
  StateDict sd;
} Golden;

static void
golden_open (Golden *g)
{
  GError *error = NULL;
  g->tmp = g_dir_make_tmp ("oft-single-XXXXXX", &error);
  g_assert_no_error (error);
  g->pipe_dir = test_golden_path ("pipeline");
  g->unet = test_open_golden ("pipeline/unet/diffusion_pytorch_model.safetensors");
  g->vae = test_open_golden ("pipeline/vae/diffusion_pytorch_model.safetensors");
  g->text = test_open_golden ("pipeline/text_encoder/model.safetensors");
  char *ucfg = g_build_filename (g->pipe_dir, "unet", "config.json", NULL);
  char *vcfg = g_build_filename (g->pipe_dir, "vae", "config.json", NULL);
  OftLdmUnetMap um;
  OftLdmVaeMap vm;
  g_assert_true (oft_ldm_unet_map_init (&um, ucfg, &error));
  g_assert_true (oft_ldm_vae_map_init (&vm, vcfg, &error));
  g_assert_no_error (error);
  g->sd.names = g_ptr_array_new_with_free_func (g_free);
  g->sd.tensors = g_array_new (FALSE, FALSE, sizeof (OftTensor));
  add_component (&g->sd, g->unet, oft_ldm_unet_name, &um);
  add_component (&g->sd, g->vae, oft_ldm_vae_name, &vm);
  add_component (&g->sd, g->text, oft_ldm_clip_name, NULL);
  g_free (ucfg);
  g_free (vcfg);
}

static void
golden_close (Golden *g)
{
  g_ptr_array_unref (g->sd.names);
  g_array_unref (g->sd.tensors);
  oft_safetensors_close (g->unet);
  oft_safetensors_close (g->vae);
  oft_safetensors_close (g->text);
  g_rmdir (g->tmp);
  g_free (g->tmp);
  g_free (g->pipe_dir);
}

/* prompt 0 of the golden DDIM run (10 steps, 128×128, golden noise), or a short seeded 64×64 run */
static void
generate (OftPipeline *p, const float *init, float *rgb)
{
  GError *error = NULL;
  OftGenerateParams gp;
  oft_generate_params_init (&gp);
  gp.prompt = "a photo of a cat";
  gp.guidance = 7.5f;
  gp.steps = init ? 10 : 3;
  gp.width = gp.height = init ? 128 : 64;
  gp.init_noise = init;
  gp.seed = 7;
  g_assert_true (oft_pipeline_generate (p, &gp, rgb, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
}

static void
test_ldm_safetensors_golden_ddim (void)
{
  Golden g;
  golden_open (&g);
  GError *error = NULL;
  char *file = g_build_filename (g.tmp, "tiny-sd.safetensors", NULL);
  g_assert_true (oft_safetensors_write (file, g.sd.names->len, (const char *const *) g.sd.names->pdata,
                                        (const OftTensor *) g.sd.tensors->data, NULL, &error));
  g_assert_no_error (error);
  OftPipeline *single = oft_pipeline_load_single (file, g.pipe_dir, &error);
  g_assert_no_error (error);
  OftPipeline *folder = oft_pipeline_load (g.pipe_dir, &error);
  g_assert_no_error (error);

  OftSafetensors *ref = test_open_golden ("pipeline/reference.safetensors");
  float *init = test_load (ref, "ddim_init_latents", NULL), *img = test_load (ref, "ddim_image", NULL);
  const int64_t np = 3 * 128 * 128;
  float *a = g_new (float, np), *b = g_new (float, np);
  generate (single, init, a);
  /* as tests/test-pipeline.c: fp32 vs diffusers' batch of 4 (GEMM blocking), see its comment */
  test_assert_close ("single-file prompt 0 ddim_image", a, img, np, 1e-4);
  /* the same weights through a name map: the very same computation as from the folder (a shorter run
   * than the golden one keeps the test fast) */
  const int64_t ns = 3 * 64 * 64;
  generate (single, NULL, a);
  generate (folder, NULL, b);
  g_assert_cmpmem (a, ns * sizeof (float), b, ns * sizeof (float));

  /* the map cannot invent tensors: a file without the text encoder fails naming the LDM tensor */
  char *partial = g_build_filename (g.tmp, "no-text.safetensors", NULL);
  GPtrArray *keep_names = g_ptr_array_new ();
  GArray *keep = g_array_new (FALSE, FALSE, sizeof (OftTensor));
  for (guint i = 0; i < g.sd.names->len; i++)
    if (!g_str_has_prefix (g.sd.names->pdata[i], "cond_stage_model.") ||
        strstr (g.sd.names->pdata[i], "embeddings")) /* keep a few, so the layout check passes */
      {
        g_ptr_array_add (keep_names, g.sd.names->pdata[i]);
        g_array_append_val (keep, g_array_index (g.sd.tensors, OftTensor, i));
      }
  g_assert_true (oft_safetensors_write (partial, keep->len, (const char *const *) keep_names->pdata,
                                        (const OftTensor *) keep->data, NULL, &error));
  g_ptr_array_unref (keep_names);
  g_array_unref (keep);
  g_assert_null (oft_pipeline_load_single (partial, g.pipe_dir, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "cond_stage_model.transformer.text_model.encoder.layers.0."));
  g_clear_error (&error);
  /* a diffusers file is not an LDM checkpoint */
  char *unet_file = g_build_filename (g.pipe_dir, "unet", "diffusion_pytorch_model.safetensors", NULL);
  g_assert_null (oft_pipeline_load_single (unet_file, g.pipe_dir, &error));
  g_assert_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "model.diffusion_model"));
  g_clear_error (&error);

  g_remove (file);
  g_remove (partial);
  g_free (unet_file);
  g_free (partial);
  g_free (file);
  g_free (a);
  g_free (b);
  g_free (init);
  g_free (img);
  oft_safetensors_close (ref);
  oft_pipeline_free (single);
  oft_pipeline_free (folder);
  golden_close (&g);
}

/* ---- .ckpt writing: pickle protocol 2 as torch.save emits it, zip members stored ---- */

static void
pk_byte (GByteArray *b, uint8_t c)
{
  g_byte_array_append (b, &c, 1);
}

static void
pk_u32 (GByteArray *b, uint32_t v)
{
  uint8_t le[4] = { v, v >> 8, v >> 16, v >> 24 };
  g_byte_array_append (b, le, 4);
}

static void
pk_str (GByteArray *b, const char *s)
{
  pk_byte (b, 'X');
  pk_u32 (b, (uint32_t) strlen (s));
  g_byte_array_append (b, (const uint8_t *) s, (guint) strlen (s));
}

static void
pk_int (GByteArray *b, int64_t v)
{
  if (v >= 0 && v < 256)
    {
      pk_byte (b, 'K');
      pk_byte (b, (uint8_t) v);
    }
  else
    {
      pk_byte (b, 'J');
      pk_u32 (b, (uint32_t) v);
    }
}

static void
pk_global (GByteArray *b, const char *module, const char *name)
{
  pk_byte (b, 'c');
  g_byte_array_append (b, (const uint8_t *) module, (guint) strlen (module));
  pk_byte (b, '\n');
  g_byte_array_append (b, (const uint8_t *) name, (guint) strlen (name));
  pk_byte (b, '\n');
}

/* BINPUT, or LONG_BINPUT past 255, as pickle does */
static void
pk_put (GByteArray *b, int *memo)
{
  if (*memo < 256)
    {
      pk_byte (b, 'q');
      pk_byte (b, (uint8_t) *memo);
    }
  else
    {
      pk_byte (b, 'r');
      pk_u32 (b, (uint32_t) *memo);
    }
  (*memo)++;
}

static void
pk_tuple_ints (GByteArray *b, int n, const int64_t *v)
{
  pk_byte (b, '(');
  for (int i = 0; i < n; i++)
    pk_int (b, v[i]);
  pk_byte (b, 't');
}

typedef struct {
  const char *name, *storage_type, *key;
  int64_t storage_numel, offset;
  int ndim;
  int64_t size[4], stride[4];
  gboolean parameter;
} PkTensor;

/* key → _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()) pairs, as in
 * torch's pickle of a state dict (memo 0 is the OrderedDict global). */
static void
pk_tensor (GByteArray *b, const PkTensor *t, int *memo)
{
  pk_str (b, t->name);
  pk_put (b, memo);
  if (t->parameter)
    pk_global (b, "torch._utils", "_rebuild_parameter");
  if (t->parameter)
    pk_byte (b, '(');
  pk_global (b, "torch._utils", "_rebuild_tensor_v2");
  pk_put (b, memo);
  pk_byte (b, '(');
  pk_byte (b, '(');
  pk_str (b, "storage");
  pk_put (b, memo);
  pk_global (b, "torch", t->storage_type);
  pk_put (b, memo);
  pk_str (b, t->key);
  pk_str (b, "cpu");
  pk_int (b, t->storage_numel);
  pk_byte (b, 't');
  pk_byte (b, 'Q');
  pk_int (b, t->offset);
  pk_tuple_ints (b, t->ndim, t->size);
  pk_tuple_ints (b, t->ndim, t->stride);
  pk_byte (b, 0x89); /* requires_grad False */
  pk_byte (b, 'h');
  pk_byte (b, 0);
  pk_byte (b, ')');
  pk_byte (b, 'R'); /* OrderedDict() backward hooks */
  pk_byte (b, 't');
  pk_byte (b, 'R');
  if (t->parameter)
    {
      pk_byte (b, 0x88);
      pk_byte (b, 'h');
      pk_byte (b, 0);
      pk_byte (b, ')');
      pk_byte (b, 'R');
      pk_byte (b, 't');
      pk_byte (b, 'R');
    }
}

/* {"epoch": 3, "global_step": 70000, "lr": 1e-4, "state_dict": OrderedDict(tensors)} or the bare dict. */
static GByteArray *
pk_state_dict (const PkTensor *t, int n, gboolean wrapped)
{
  GByteArray *b = g_byte_array_new ();
  int memo = 1; /* memo 0 is the OrderedDict global */
  pk_byte (b, 0x80);
  pk_byte (b, 2);
  if (wrapped)
    {
      pk_byte (b, '}');
      pk_byte (b, '(');
      pk_str (b, "epoch");
      pk_int (b, 3);
      pk_str (b, "global_step");
      pk_int (b, 70000);
      pk_str (b, "lr");
      static const uint8_t lr[9] = { 'G', 0x3f, 0x1a, 0x36, 0xe2, 0xeb, 0x1c, 0x43, 0x2d };
      g_byte_array_append (b, lr, 9);
      pk_str (b, "state_dict");
    }
  pk_global (b, "collections", "OrderedDict");
  pk_byte (b, 'q');
  pk_byte (b, 0);
  pk_byte (b, ')');
  pk_byte (b, 'R');
  pk_put (b, &memo);
  pk_byte (b, '(');
  for (int i = 0; i < n; i++)
    pk_tensor (b, &t[i], &memo);
  pk_byte (b, 'u');
  /* the state dict's _metadata attribute, set through BUILD */
  pk_byte (b, '}');
  pk_str (b, "_metadata");
  pk_byte (b, '}');
  pk_byte (b, 's');
  pk_byte (b, 'b');
  if (wrapped)
    pk_byte (b, 'u');
  pk_byte (b, '.');
  return b;
}

/* "archive/byteorder" as torch ≥ 1.13 writes it; NULL: none, as older torch */
static const char *zip_byteorder;

/* Writes a zip: "archive/data.pkl" (unless NULL), "archive/data/<key>" members, all stored, and
 * "archive/byteorder". */
static void
write_zip (const char *path, GByteArray *pkl, int n, const char *const *keys, const void *const *data,
           const size_t *sizes)
{
  int zerr = 0;
  zip_t *z = zip_open (path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  g_assert_nonnull (z);
  for (int i = -1; i < n; i++)
    {
      if (i < 0 && !pkl)
        continue;
      char *name = i < 0 ? g_strdup ("archive/data.pkl") : g_strconcat ("archive/data/", keys[i], NULL);
      zip_source_t *src = i < 0 ? zip_source_buffer (z, pkl->data, pkl->len, 0) : zip_source_buffer (z, data[i], sizes[i], 0);
      zip_int64_t idx = zip_file_add (z, name, src, ZIP_FL_ENC_UTF_8);
      g_assert_cmpint (idx, >=, 0);
      g_assert_cmpint (zip_set_file_compression (z, (zip_uint64_t) idx, ZIP_CM_STORE, 0), ==, 0);
      g_free (name);
    }
  if (zip_byteorder)
    g_assert_cmpint (zip_file_add (z, "archive/byteorder",
                                   zip_source_buffer (z, zip_byteorder, strlen (zip_byteorder), 0), 0), >=, 0);
  g_assert_cmpint (zip_close (z), ==, 0);
}

static const float f_vals[6] = { 1.5f, -2.25f, 3.0f, 0.125f, -7.0f, 1e-3f };
static const float h_vals[6] = { 0.5f, -1.0f, 2.0f, 65504.0f, -0.25f, 3.0f }; /* exact in f16 */

static void
write_ckpt (const char *path, const PkTensor *t, int n, gboolean wrapped)
{
  uint16_t h[6];
  for (int i = 0; i < 6; i++)
    h[i] = oft_f32_to_f16 (h_vals[i]);
  const char *keys[2] = { "0", "1" };
  const void *data[2] = { f_vals, h };
  size_t sizes[2] = { sizeof f_vals, sizeof h };
  GByteArray *pkl = pk_state_dict (t, n, wrapped);
  write_zip (path, pkl, 2, keys, data, sizes);
  g_byte_array_unref (pkl);
}

/* Storage 0: 6 floats; storage 1: 6 halves. */
static const PkTensor good[3] = {
  { "model.diffusion_model.out.2.weight", "FloatStorage", "0", 6, 0, 2, { 2, 3 }, { 3, 1 }, FALSE },
  { "first_stage_model.decoder.norm_out.bias", "HalfStorage", "1", 6, 2, 1, { 3 }, { 1 }, FALSE },
  /* a Parameter viewing the same float storage from element 4, with a size-1 dim of any stride */
  { "cond_stage_model.transformer.w", "FloatStorage", "0", 6, 4, 3, { 2, 1, 1 }, { 1, 7, 1 }, TRUE },
};

static void
test_ckpt_reader (void)
{
  char *tmp = g_dir_make_tmp ("oft-ckpt-XXXXXX", NULL);
  char *path = g_build_filename (tmp, "model.ckpt", NULL);
  for (int wrapped = 0; wrapped < 2; wrapped++)
    {
      zip_byteorder = wrapped ? "little" : NULL;
      write_ckpt (path, good, 3, wrapped);
      GError *error = NULL;
      OftSafetensors *st = oft_ckpt_open (path, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (oft_safetensors_count (st), ==, 3);
      g_assert_null (oft_safetensors_metadata (st));
      const OftSafetensorsEntry *e = oft_safetensors_entry (st, 0);
      g_assert_cmpstr (e->name, ==, good[0].name);
      g_assert_cmpint (e->dtype, ==, OFT_DTYPE_F32);
      g_assert_cmpint (e->ndim, ==, 2);
      g_assert_cmpint (e->shape[0], ==, 2);
      g_assert_cmpint (e->shape[1], ==, 3);
      float got[6];
      g_assert_true (oft_safetensors_read_f32 (st, good[0].name, got, 2, (int64_t[]) { 2, 3 }, &error));
      g_assert_cmpmem (got, sizeof f_vals, f_vals, sizeof f_vals);
      e = oft_safetensors_find (st, good[1].name);
      g_assert_nonnull (e);
      g_assert_cmpint (e->dtype, ==, OFT_DTYPE_F16);
      g_assert_cmpint (e->ndim, ==, 1);
      g_assert_cmpint (e->shape[0], ==, 3);
      g_assert_true (oft_safetensors_read_f32 (st, good[1].name, got, 1, (int64_t[]) { 3 }, &error));
      g_assert_cmpmem (got, 3 * sizeof (float), h_vals + 2, 3 * sizeof (float));
      e = oft_safetensors_find (st, good[2].name);
      g_assert_cmpint (e->ndim, ==, 3);
      g_assert_true (oft_safetensors_read_f32 (st, good[2].name, got, -1, NULL, &error));
      g_assert_cmpmem (got, 2 * sizeof (float), f_vals + 4, 2 * sizeof (float));
      g_assert_no_error (error);
      oft_safetensors_close (st);
      /* oft_weights_open picks the reader by extension */
      st = oft_weights_open (path, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (oft_safetensors_count (st), ==, 3);
      oft_safetensors_close (st);
    }
  zip_byteorder = NULL;
  g_remove (path);
  g_rmdir (tmp);
  g_free (path);
  g_free (tmp);
}

/* Opening must fail with a message holding every string in `want` (and the file's path). */
static void
expect_refused (const char *path, const char *const *want)
{
  GError *error = NULL;
  g_assert_null (oft_ckpt_open (path, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  for (int i = 0; want[i]; i++)
    if (!strstr (error->message, want[i]))
      g_error ("'%s' not in '%s'", want[i], error->message);
  g_error_free (error);
}

#define REFUSED(path, ...) expect_refused (path, (const char *const[]) { __VA_ARGS__, NULL })

static void
write_pickle_only (const char *path, GByteArray *pkl)
{
  const char *keys[2] = { "0", "1" };
  uint16_t h[6] = { 0 };
  const void *data[2] = { f_vals, h };
  size_t sizes[2] = { sizeof f_vals, sizeof h };
  write_zip (path, pkl, 2, keys, data, sizes);
}

static void
test_ckpt_hostile (void)
{
  char *tmp = g_dir_make_tmp ("oft-ckpt-XXXXXX", NULL);
  char *path = g_build_filename (tmp, "evil.ckpt", NULL);

  /* os.system("echo pwned") through GLOBAL + REDUCE: refused before anything is called */
  GByteArray *b = g_byte_array_new ();
  pk_byte (b, 0x80);
  pk_byte (b, 2);
  pk_global (b, "os", "system");
  pk_str (b, "echo pwned");
  pk_byte (b, 0x85);
  pk_byte (b, 'R');
  pk_byte (b, '.');
  write_pickle_only (path, b);
  REFUSED (path, "os.system", "refusing");
  /* the same with STACK_GLOBAL (protocol 4) and builtins.eval */
  g_byte_array_set_size (b, 2);
  pk_str (b, "builtins");
  pk_str (b, "eval");
  pk_byte (b, 0x93);
  pk_str (b, "1+1");
  pk_byte (b, 0x85);
  pk_byte (b, 'R');
  pk_byte (b, '.');
  write_pickle_only (path, b);
  REFUSED (path, "builtins.eval");
  /* an unknown opcode (INST, which would instantiate a class) */
  g_byte_array_set_size (b, 2);
  pk_byte (b, '(');
  pk_byte (b, 'i');
  write_pickle_only (path, b);
  REFUSED (path, "opcode 0x69", "byte 3");
  /* a pickle cut short */
  g_byte_array_set_size (b, 2);
  pk_byte (b, 'X');
  pk_u32 (b, 1000);
  write_pickle_only (path, b);
  REFUSED (path, "truncated");
  /* BINGET of a memo slot never stored */
  g_byte_array_set_size (b, 2);
  pk_byte (b, 'h');
  pk_byte (b, 9);
  write_pickle_only (path, b);
  REFUSED (path, "memo entry 9");
  /* an unsupported storage type */
  g_byte_array_set_size (b, 2);
  pk_global (b, "torch", "DoubleStorage");
  write_pickle_only (path, b);
  REFUSED (path, "torch.DoubleStorage", "not supported");
  g_byte_array_unref (b);

  /* tensors that do not fit their storage */
  PkTensor t = good[0];
  t.key = "7";
  write_ckpt (path, &t, 1, FALSE);
  REFUSED (path, "storage '7'", "archive/data/7");
  t = good[0];
  t.offset = 1;
  write_ckpt (path, &t, 1, FALSE);
  REFUSED (path, "runs past the end of storage '0'");
  t = good[0];
  t.storage_numel = 7; /* the member holds 6 */
  write_ckpt (path, &t, 1, FALSE);
  REFUSED (path, "archive/data/0", "holds 24 bytes");
  t = good[0];
  t.stride[0] = 1, t.stride[1] = 2;
  write_ckpt (path, &t, 1, FALSE);
  REFUSED (path, "not contiguous");
  zip_byteorder = "big";
  write_ckpt (path, good, 3, FALSE);
  REFUSED (path, "big-endian");
  zip_byteorder = NULL;

  /* broken archives */
  write_ckpt (path, good, 3, TRUE);
  gchar *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  g_assert_true (g_file_set_contents (path, bytes, (gssize) len / 2, NULL));
  REFUSED (path, "zip");
  g_assert_true (g_file_set_contents (path, "\x80\x02}q\x00.", 6, NULL));
  REFUSED (path, "legacy");
  g_free (bytes);
  const char *keys[1] = { "0" };
  const void *data[1] = { f_vals };
  size_t sizes[1] = { sizeof f_vals };
  write_zip (path, NULL, 1, keys, data, sizes);
  REFUSED (path, "data.pkl");
  GError *error = NULL;
  char *missing = g_build_filename (tmp, "missing.ckpt", NULL);
  g_assert_null (oft_ckpt_open (missing, &error));
  g_assert_error (error, OFT_IO_ERROR, OFT_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_free (missing);
  g_remove (path);
  g_rmdir (tmp);
  g_free (path);
  g_free (tmp);
}

/* The whole golden pipeline as an LDM .ckpt (every tensor its own f32 storage): the same tensors as
 * the .safetensors single file, and a pipeline loads from it. */
static void
test_ckpt_golden_pipeline (void)
{
  Golden g;
  golden_open (&g);
  guint n = g.sd.names->len;
  PkTensor *t = g_new0 (PkTensor, n);
  char **keys = g_new0 (char *, n + 1);
  const void **data = g_new (const void *, n);
  size_t *sizes = g_new (size_t, n);
  for (guint i = 0; i < n; i++)
    {
      const OftTensor *x = &g_array_index (g.sd.tensors, OftTensor, i);
      g_assert_cmpint (x->dtype, ==, OFT_DTYPE_F32);
      keys[i] = g_strdup_printf ("%u", i);
      t[i] = (PkTensor) { .name = g.sd.names->pdata[i], .storage_type = "FloatStorage", .key = keys[i],
                          .storage_numel = oft_tensor_numel (x), .ndim = x->ndim, .parameter = i % 2 };
      int64_t stride = 1;
      for (int d = x->ndim - 1; d >= 0; d--)
        {
          t[i].size[d] = x->shape[d];
          t[i].stride[d] = stride;
          stride *= x->shape[d];
        }
      data[i] = x->data;
      sizes[i] = (size_t) oft_tensor_numel (x) * sizeof (float);
    }
  GByteArray *pkl = pk_state_dict (t, (int) n, TRUE);
  char *path = g_build_filename (g.tmp, "tiny-sd.ckpt", NULL);
  write_zip (path, pkl, (int) n, (const char *const *) keys, data, sizes);
  GError *error = NULL;
  OftSafetensors *st = oft_ckpt_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (oft_safetensors_count (st), ==, n);
  for (guint i = 0; i < n; i++)
    {
      const OftSafetensorsEntry *e = oft_safetensors_find (st, g.sd.names->pdata[i]);
      const OftTensor *x = &g_array_index (g.sd.tensors, OftTensor, i);
      g_assert_nonnull (e);
      g_assert_cmpint (e->ndim, ==, x->ndim);
      g_assert_cmpmem (e->shape, sizeof (int64_t) * e->ndim, x->shape, sizeof (int64_t) * x->ndim);
      g_assert_cmpmem (e->data, sizes[i], x->data, sizes[i]);
    }
  oft_safetensors_close (st);
  OftPipeline *p = oft_pipeline_load_single (path, g.pipe_dir, &error);
  g_assert_no_error (error);
  g_assert_cmpint (oft_unet_context_dim (p->unet), ==, 32);
  oft_pipeline_free (p);
  g_remove (path);
  g_free (path);
  g_byte_array_unref (pkl);
  g_strfreev (keys);
  g_free (t);
  g_free (data);
  g_free (sizes);
  golden_close (&g);
}

int
main (int argc, char **argv)
{
  test_init (&argc, &argv);
  g_test_add_func ("/single-file/ldm-names-sd15", test_ldm_names_sd15);
  g_test_add_func ("/single-file/sd15-configs", test_sd15_configs);
  g_test_add_func ("/single-file/ckpt-reader", test_ckpt_reader);
  g_test_add_func ("/single-file/ckpt-hostile", test_ckpt_hostile);
  g_test_add_func ("/single-file/ckpt-golden-pipeline", test_ckpt_golden_pipeline);
  g_test_add_func ("/single-file/golden/ldm-safetensors-ddim", test_ldm_safetensors_golden_ddim);
  return g_test_run ();
}
