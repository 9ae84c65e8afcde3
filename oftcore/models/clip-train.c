/* Full-parameter training of the CLIP text encoder (for a small encoder trained jointly with the
 * UNet): a forward that keeps every layer's activations, and the backward from ∂loss/∂output to every
 * weight, the token and the position embeddings. clip_skip is 0 (the last layer feeds the final norm). */
#include "clip-private.h"
#include "oft/nn.h"
#include <string.h>

typedef struct {
  float *x_in, *h1, *m1, *r1, *q, *k, *v, *att, *a, *x_mid, *h2, *m2, *r2, *f, *g;
} LayerSave;

struct ClipTape {
  int B;
  int32_t *ids;
  LayerSave *layers;
  float *x_last, *mf, *rf;
  /* the backward's buffers, taken by the forward so that a backward (which returns nothing) cannot
   * run out of memory: only the forward can, and it reports it */
  float *dx, *dh, *dt, *dq, *dk, *dv, *df, *dg, *scratch;
  OftArenaMark mark;
};

gboolean
oft_clip_text_attach_full_training (OftClipText *m, GError **error)
{
  (void) error;
  oft_params_alloc_grads (m->params_list);
  return TRUE;
}

OftParams *
oft_clip_text_params (OftClipText *m)
{
  return m->params_list;
}

static void
act_forward (OftActivation act, float *out, const float *inp, int64_t n)
{
  switch (act)
    {
    case OFT_ACT_QUICK_GELU: oft_quick_gelu_forward (out, inp, n); break;
    case OFT_ACT_GELU: oft_gelu_forward (out, inp, n); break;
    default: oft_gelu_tanh_forward (out, inp, n); break;
    }
}

static void
act_backward (OftActivation act, float *dinp, const float *dout, const float *inp, int64_t n)
{
  switch (act)
    {
    case OFT_ACT_QUICK_GELU: oft_quick_gelu_backward (dinp, dout, inp, n); break;
    case OFT_ACT_GELU: oft_gelu_backward (dinp, dout, inp, n); break;
    default: oft_gelu_tanh_backward (dinp, dout, inp, n); break;
    }
}

static void
tape_release (OftClipText *m)
{
  if (!m->tape)
    return;
  OftArenaMark mark = m->tape->mark;
  g_free (m->tape->layers);
  g_free (m->tape->ids);
  g_clear_pointer (&m->tape, g_free);
  oft_arena_reset (&m->train_acts, mark);
}

void
oft_clip_text_discard_tape (OftClipText *m)
{
  tape_release (m);
}

gboolean
oft_clip_text_train_forward (OftClipText *m, const int32_t *ids, int B, float *out, GError **error)
{
  const OftClipConfig *c = &m->cfg;
  int T = c->max_positions, H = c->hidden, I = c->intermediate, NH = c->n_heads;
  int64_t N = (int64_t) B * T;
  if (!oft_params_have_grads (m->params_list))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "CLIP training: full training is not attached");
      return FALSE;
    }
  for (int64_t i = 0; i < N; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      {
        g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "token id %d outside the vocabulary of %d", ids[i],
                     c->vocab_size);
        return FALSE;
      }
  tape_release (m);
  OftArena *a = &m->train_acts;
  struct ClipTape *t = g_new0 (struct ClipTape, 1);
  t->mark = oft_arena_mark (a);
  t->B = B;
  t->ids = g_memdup2 (ids, sizeof (int32_t) * (size_t) N);
  t->layers = g_new0 (LayerSave, c->n_layers);
  m->tape = t;
  oft_arena_begin_checked (a);
  float *x = oft_arena_scratch (a, N * H);
  for (int64_t i = 0; x && i < N; i++)
    {
      const float *te = m->tok_emb + (int64_t) ids[i] * H, *pe = m->pos_emb + (i % T) * H;
      for (int j = 0; j < H; j++)
        x[i * H + j] = te[j] + pe[j];
    }
  for (int l = 0; l < c->n_layers; l++)
    {
      ClipLayer *y = &m->layers[l];
      LayerSave *s = &t->layers[l];
      *s = (LayerSave) {
        .x_in = x, .h1 = oft_arena_scratch (a, N * H), .m1 = oft_arena_scratch (a, N), .r1 = oft_arena_scratch (a, N),
        .q = oft_arena_scratch (a, N * H), .k = oft_arena_scratch (a, N * H), .v = oft_arena_scratch (a, N * H),
        .att = oft_arena_scratch (a, (size_t) B * NH * T * T), .a = oft_arena_scratch (a, N * H),
        .x_mid = oft_arena_scratch (a, N * H), .h2 = oft_arena_scratch (a, N * H), .m2 = oft_arena_scratch (a, N),
        .r2 = oft_arena_scratch (a, N), .f = oft_arena_scratch (a, N * I), .g = oft_arena_scratch (a, N * I),
      };
      float *tmp = oft_arena_scratch (a, N * H), *x_out = oft_arena_scratch (a, N * H);
      if (oft_arena_failed (a))
        break;
      oft_layernorm_forward (s->h1, s->m1, s->r1, x, y->ln1_w, y->ln1_b, N, H, c->ln_eps);
      oft_linear_forward (s->q, s->h1, y->q_w, y->q_b, N, H, H);
      oft_linear_forward (s->k, s->h1, y->k_w, y->k_b, N, H, H);
      oft_linear_forward (s->v, s->h1, y->v_w, y->v_b, N, H, H);
      oft_attention_forward (s->a, s->att, s->q, s->k, s->v, B, T, T, NH, H / NH, true);
      oft_linear_forward (tmp, s->a, y->o_w, y->o_b, N, H, H);
      oft_add_forward (s->x_mid, x, tmp, N * H);
      oft_layernorm_forward (s->h2, s->m2, s->r2, s->x_mid, y->ln2_w, y->ln2_b, N, H, c->ln_eps);
      oft_linear_forward (s->f, s->h2, y->fc1_w, y->fc1_b, N, H, I);
      act_forward (c->act, s->g, s->f, N * I);
      oft_linear_forward (tmp, s->g, y->fc2_w, y->fc2_b, N, I, H);
      oft_add_forward (x_out, s->x_mid, tmp, N * H);
      x = x_out;
    }
  t->x_last = x;
  t->mf = oft_arena_scratch (a, N);
  t->rf = oft_arena_scratch (a, N);
  t->dx = oft_arena_floats (a, N * H), t->dh = oft_arena_floats (a, N * H), t->dt = oft_arena_floats (a, N * H);
  t->dq = oft_arena_floats (a, N * H), t->dk = oft_arena_floats (a, N * H), t->dv = oft_arena_floats (a, N * H);
  t->df = oft_arena_floats (a, N * I), t->dg = oft_arena_floats (a, N * I);
  t->scratch = oft_arena_scratch (a, oft_attention_scratch_floats (B, T, T, NH, H / NH));
  if (oft_arena_failed (a))
    {
      tape_release (m);
      oft_arena_end_checked (a, error);
      g_prefix_error (error, "CLIP text encoder training forward of %d×%d tokens: ", B, T);
      return FALSE;
    }
  oft_arena_end_checked (a, NULL);
  oft_layernorm_forward (out, t->mf, t->rf, x, m->final_w, m->final_b, N, H, c->ln_eps);
  return TRUE;
}

void
oft_clip_text_train_backward (OftClipText *m, const float *dout)
{
  struct ClipTape *t = m->tape;
  g_return_if_fail (t != NULL);
  const OftClipConfig *c = &m->cfg;
  const OftParams *g = m->params_list;
  int B = t->B, T = c->max_positions, H = c->hidden, I = c->intermediate, NH = c->n_heads;
  int64_t N = (int64_t) B * T;
#define GR(p) oft_params_grad (g, p)
  float *dx = t->dx, *dh = t->dh, *dt = t->dt, *dq = t->dq, *dk = t->dk, *dv = t->dv, *df = t->df, *dg = t->dg;
  float *scratch = t->scratch;
  oft_layernorm_backward (dx, GR (m->final_w), GR (m->final_b), dout, t->x_last, m->final_w, t->mf, t->rf, N, H);
  for (int l = c->n_layers - 1; l >= 0; l--)
    {
      ClipLayer *y = &m->layers[l];
      LayerSave *s = &t->layers[l];
      /* x_out = x_mid + fc2(act(fc1(LN2(x_mid)))): dx passes the residual unchanged */
      memset (dg, 0, sizeof (float) * (size_t) (N * I));
      memset (df, 0, sizeof (float) * (size_t) (N * I));
      memset (dh, 0, sizeof (float) * (size_t) (N * H));
      oft_linear_backward (dg, GR (y->fc2_w), GR (y->fc2_b), dx, s->g, y->fc2_w, N, I, H);
      act_backward (c->act, df, dg, s->f, N * I);
      oft_linear_backward (dh, GR (y->fc1_w), GR (y->fc1_b), df, s->h2, y->fc1_w, N, H, I);
      oft_layernorm_backward (dx, GR (y->ln2_w), GR (y->ln2_b), dh, s->x_mid, y->ln2_w, s->m2, s->r2, N, H);
      /* x_mid = x_in + o(attn(q(h1), k(h1), v(h1))), causal */
      memset (dt, 0, sizeof (float) * (size_t) (N * H));
      memset (dq, 0, sizeof (float) * (size_t) (N * H));
      memset (dk, 0, sizeof (float) * (size_t) (N * H));
      memset (dv, 0, sizeof (float) * (size_t) (N * H));
      memset (dh, 0, sizeof (float) * (size_t) (N * H));
      oft_linear_backward (dt, GR (y->o_w), GR (y->o_b), dx, s->a, y->o_w, N, H, H);
      oft_attention_backward (dq, dk, dv, dt, s->att, s->q, s->k, s->v, B, T, T, NH, H / NH, scratch);
      oft_linear_backward (dh, GR (y->q_w), GR (y->q_b), dq, s->h1, y->q_w, N, H, H);
      oft_linear_backward (dh, GR (y->k_w), GR (y->k_b), dk, s->h1, y->k_w, N, H, H);
      oft_linear_backward (dh, GR (y->v_w), GR (y->v_b), dv, s->h1, y->v_w, N, H, H);
      oft_layernorm_backward (dx, GR (y->ln1_w), GR (y->ln1_b), dh, s->x_in, y->ln1_w, s->m1, s->r1, N, H);
    }
  /* x = tok_emb[ids] + pos_emb */
  float *dtok = GR (m->tok_emb), *dpos = GR (m->pos_emb);
  for (int64_t i = 0; i < N; i++)
    for (int j = 0; j < H; j++)
      {
        dtok[(int64_t) t->ids[i] * H + j] += dx[i * H + j];
        dpos[(i % T) * H + j] += dx[i * H + j];
      }
#undef GR
  tape_release (m);
}
