/* The training noise schedule, as diffusers builds betas and ᾱ from scheduler_config.json. */
#include "oft/scheduler.h"
#include "oft/error.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

void
oft_noise_schedule_sd15 (OftNoiseSchedule *s)
{
  *s = (OftNoiseSchedule) {
    .num_train_timesteps = 1000, .beta_start = 0.00085f, .beta_end = 0.012f,
    .beta_schedule = OFT_BETA_SCALED_LINEAR, .steps_offset = 1, .spacing = OFT_SPACING_LEADING,
    .prediction = OFT_PREDICT_EPSILON, .set_alpha_to_one = false, .clip_sample = false,
    .clip_sample_range = 1.0f,
  };
}

static gboolean
pick (const char *path, const char *key, const char *value, const char *const *names, int *out, GError **error)
{
  for (int i = 0; names[i]; i++)
    if (strcmp (value, names[i]) == 0)
      {
        *out = i;
        return TRUE;
      }
  char *list = g_strjoinv (", ", (char **) names);
  g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"%s\" is \"%s\"; supported: %s", path, key, value, list);
  g_free (list);
  return FALSE;
}

typedef enum { WANT_NUMBER, WANT_INT, WANT_BOOL, WANT_STRING } Want;

/* Member `key` in *node when present and not null (NULL otherwise); a value of another type, or an
 * integer outside int, fails naming the file and the key (json-glib's typed getters would only warn). */
static gboolean
member (JsonObject *o, const char *key, Want want, JsonNode **node, const char *path, GError **error)
{
  static const char *const what[] = { "a number", "an integer", "true or false", "a string" };
  JsonNode *n = json_object_get_member (o, key);
  *node = NULL;
  if (!n || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  gboolean ok = want == WANT_NUMBER ? (t == G_TYPE_DOUBLE || t == G_TYPE_INT64)
              : want == WANT_INT ? (t == G_TYPE_INT64 && json_node_get_int (n) >= G_MININT && json_node_get_int (n) <= G_MAXINT)
              : want == WANT_BOOL ? t == G_TYPE_BOOLEAN : t == G_TYPE_STRING;
  if (!ok)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"%s\" must be %s", path, key, what[want]);
      return FALSE;
    }
  *node = n;
  return TRUE;
}

gboolean
oft_noise_schedule_load (OftNoiseSchedule *s, const char *path, GError **error)
{
  static const char *const betas[] = { "linear", "scaled_linear", "squaredcos_cap_v2", NULL };
  static const char *const spacings[] = { "leading", "trailing", "linspace", NULL };
  static const char *const predictions[] = { "epsilon", "v_prediction", NULL };
  oft_noise_schedule_sd15 (s);
  JsonParser *parser = json_parser_new ();
  gboolean ok = FALSE;
  if (!json_parser_load_from_file (parser, path, error))
    {
      g_prefix_error (error, "%s: ", path); /* json-glib's message does not name the file */
      goto out;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, OFT_IO_ERROR, OFT_ERROR_CORRUPT, "%s: not a JSON object", path);
      goto out;
    }
  JsonObject *o = json_node_get_object (root);
  JsonNode *tb = json_object_get_member (o, "trained_betas");
  if (tb && !JSON_NODE_HOLDS_NULL (tb))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID, "%s: \"trained_betas\" is not supported", path);
      goto out;
    }
  JsonNode *n;
  const char *str;
  int v;
#define GET(key, want) if (!member (o, key, want, &n, path, error)) goto out; if (n)
  GET ("num_train_timesteps", WANT_INT) s->num_train_timesteps = (int) json_node_get_int (n);
  GET ("beta_start", WANT_NUMBER) s->beta_start = (float) json_node_get_double (n);
  GET ("beta_end", WANT_NUMBER) s->beta_end = (float) json_node_get_double (n);
  GET ("steps_offset", WANT_INT) s->steps_offset = (int) json_node_get_int (n);
  GET ("set_alpha_to_one", WANT_BOOL) s->set_alpha_to_one = json_node_get_boolean (n);
  GET ("clip_sample", WANT_BOOL) s->clip_sample = json_node_get_boolean (n);
  GET ("clip_sample_range", WANT_NUMBER) s->clip_sample_range = (float) json_node_get_double (n);
  GET ("beta_schedule", WANT_STRING)
    {
      if (!pick (path, "beta_schedule", (str = json_node_get_string (n)), betas, &v, error))
        goto out;
      s->beta_schedule = (OftBetaSchedule) v;
    }
  GET ("timestep_spacing", WANT_STRING)
    {
      if (!pick (path, "timestep_spacing", (str = json_node_get_string (n)), spacings, &v, error))
        goto out;
      s->spacing = (OftTimestepSpacing) v;
    }
  GET ("prediction_type", WANT_STRING)
    {
      if (!pick (path, "prediction_type", (str = json_node_get_string (n)), predictions, &v, error))
        goto out;
      s->prediction = (OftPrediction) v;
    }
#undef GET
  if (s->num_train_timesteps < 2 || s->num_train_timesteps > 100000 || s->steps_offset < 0 ||
      !(s->beta_start > 0) || !(s->beta_end > 0) || !(s->beta_end < 1))
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_INVALID,
                   "%s: num_train_timesteps, steps_offset or beta_start/beta_end out of range", path);
      goto out;
    }
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}

/* torch.linspace in float32: the first half counts up from start, the second down from end. */
static float
linspace_f32 (float start, float end, int steps, int i)
{
  float step = (end - start) / (float) (steps - 1);
  return i < steps / 2 ? start + step * (float) i : end - step * (float) (steps - 1 - i);
}

static double
alpha_bar_cos (double t)
{
  double c = cos ((t + 0.008) / 1.008 * G_PI / 2);
  return c * c;
}

void
oft_noise_schedule_alphas_cumprod (const OftNoiseSchedule *s, float *ac)
{
  int n = s->num_train_timesteps;
  float prod = 1.0f;
  for (int i = 0; i < n; i++)
    {
      float beta;
      switch (s->beta_schedule)
        {
        case OFT_BETA_LINEAR:
          beta = linspace_f32 (s->beta_start, s->beta_end, n, i);
          break;
        case OFT_BETA_SCALED_LINEAR:
          {
            float r = linspace_f32 (sqrtf (s->beta_start), sqrtf (s->beta_end), n, i);
            beta = r * r;
          }
          break;
        default: /* squaredcos_cap_v2 (Nichol & Dhariwal), computed in double like diffusers */
          beta = (float) fmin (1.0 - alpha_bar_cos ((double) (i + 1) / n) / alpha_bar_cos ((double) i / n), 0.999);
          break;
        }
      prod *= 1.0f - beta; /* torch.cumprod over float32: a sequential product */
      ac[i] = prod;
    }
}
