/* oft: train, generate, convert and inspect OFT adapters from a terminal. */
#include "oft-cli.h"
#include "oft-config.h"
#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "generate", cmd_generate, "generate an image from a prompt (txt2img)" },
  { "tokenize", cmd_tokenize, "print CLIP token ids of texts as JSON" },
  { "selfcheck", cmd_selfcheck, "check the OFT invariants on random data" },
  { "inspect", cmd_inspect, "list tensors of a .safetensors file or an adapter folder" },
  { "adapter", cmd_adapter, "adapter tools: merge an adapter into base weights" },
  { "train", cmd_train, "train an OFT adapter on subject images (DreamBooth)" },
  { "canny", cmd_canny, "Canny edge condition of an image (as cv2.Canny)" },
  { "segmap", cmd_segmap, "snap a painted segmentation map to the ADE20K palette; index map, legend" },
  { "eval", cmd_eval, "metrics: canny IoU/F1, segmentation mIoU/mAcc/aAcc" },
  { "faces", cmd_faces, "Haar-cascade face boxes of an image as JSON" },
  { "landmarks", cmd_landmarks, "68 face landmarks (dlib) as JSON and a condition image" },
  { "scenes", cmd_scenes, "procedural scenes dataset (images, captions, conditions); scenes analyse: check captions" },
};

static void
usage (FILE *f)
{
  fprintf (f, "Usage: oft COMMAND [OPTIONS...]\n\n"
              "Orthogonal Finetuning (OFT) of Stable Diffusion.\n\nCommands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\nRun 'oft COMMAND --help' for a command's options; 'oft --version' for the version.\n");
}

int
cli_fail (const char *cmd, const GError *error)
{
  fprintf (stderr, "oft %s: %s\n", cmd, error ? error->message : "failed");
  return 1;
}

char *
cli_default_model (const char *cmd, GError **error)
{
  GError *e = NULL;
  char *path = oft_data_path ("default-model", &e);
  if (!path)
    {
      g_set_error (error, OFT_MODEL_ERROR, OFT_ERROR_NOT_FOUND, "no --model given, and the bundled default model "
                   "is missing: %s", e->message);
      g_error_free (e);
      return NULL;
    }
  fprintf (stderr, "oft %s: no --model given: the bundled default model %s\n", cmd, path);
  return path;
}

int
main (int argc, char **argv)
{
  oft_runtime_tune_process (argv);
  setlocale (LC_ALL, "");
  if (argc < 2)
    {
      usage (stderr);
      return 2;
    }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "help") == 0)
    {
      usage (stdout);
      return 0;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("oft %s (liboftcore %s)\n", OFT_VERSION, oft_version ());
      return 0;
    }
  for (size_t i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "oft: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
