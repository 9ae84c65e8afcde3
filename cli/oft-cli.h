/* The `oft` command: one file per subcommand, each an `int cmd_<name> (int argc, char **argv)`
 * returning the process exit status. Errors go to stderr as "oft <cmd>: <message>". */
#pragma once
#include <glib.h>
#include "oft/oft.h"

int cmd_selfcheck (int argc, char **argv);
int cmd_inspect (int argc, char **argv);
int cmd_adapter (int argc, char **argv);
int cmd_generate (int argc, char **argv);
int cmd_tokenize (int argc, char **argv);
int cmd_canny (int argc, char **argv);
int cmd_segmap (int argc, char **argv);
int cmd_eval (int argc, char **argv);
int cmd_faces (int argc, char **argv);
int cmd_landmarks (int argc, char **argv);
int cmd_eval_landmarks (int argc, char **argv);
int cmd_eval_energy (int argc, char **argv);
int cmd_train (int argc, char **argv);
int cmd_scenes (int argc, char **argv);

/* Prints "oft <cmd>: <error->message>" and returns 1. */
int cli_fail (const char *cmd, const GError *error);

/* --model's default: the bundled default model (data/default-model), announced on stderr. */
char *cli_default_model (const char *cmd, GError **error);

/* Progress bar for long jobs: drawn only on a terminal. */
typedef struct {
  const char *label;
  gboolean tty;
  gint64 start;
} CliProgress;
void cli_progress_init (CliProgress *p, const char *label);
void cli_progress_update (CliProgress *p, int done, int total);
