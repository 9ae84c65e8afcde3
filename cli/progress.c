/* A terminal progress bar on stderr; silent when stderr is not a terminal. */
#include "oft-cli.h"
#include <stdio.h>
#include <unistd.h>

void
cli_progress_init (CliProgress *p, const char *label)
{
  p->label = label;
  p->tty = isatty (fileno (stderr));
  p->start = g_get_monotonic_time ();
}

void
cli_progress_update (CliProgress *p, int done, int total)
{
  if (!p->tty || total <= 0)
    return;
  const int width = 30;
  int fill = (int) ((int64_t) done * width / total);
  double secs = (g_get_monotonic_time () - p->start) / 1e6;
  double per = done > 0 ? secs / done : 0;
  fprintf (stderr, "\r%s [", p->label);
  for (int i = 0; i < width; i++)
    fputc (i < fill ? '#' : '-', stderr);
  fprintf (stderr, "] %d/%d  %.2f s/it  ETA %.0f s ", done, total, per, per * (total - done));
  if (done >= total)
    fputc ('\n', stderr);
  fflush (stderr);
}
