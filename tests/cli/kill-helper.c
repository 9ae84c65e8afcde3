/* Runs a command and SIGKILLs it at a chosen point, for the crash-safety test (test-train-kill.sh).
 * Polling a folder from a shell misses writes that take a millisecond; inotify sees every file the
 * moment it is created or renamed into place, and the kill follows within microseconds.
 *
 *   kill-helper ERRFILE WATCHDIR1:WATCHDIR2 MODE ARG1 ARG2 -- CMD ARGS...
 *     delay MS 0       kill MS milliseconds after the start
 *     step S MS        kill MS milliseconds after the command reports step S on stderr ("step S/")
 *     create PREFIX N  kill when the N-th file whose name starts with PREFIX is created (a write under way)
 *     moved NAME N     kill when a file is renamed to NAME for the N-th time (just published)
 * The command's stderr goes to ERRFILE. The watched folders are created first. Prints "killed" or
 * "finished (exit N)". */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int
main (int argc, char **argv)
{
  if (argc < 8 || strcmp (argv[6], "--") != 0)
    {
      fprintf (stderr, "usage: kill-helper ERRFILE DIR1:DIR2 MODE ARG1 ARG2 -- CMD ARGS...\n");
      return 2;
    }
  const char *errfile = argv[1], *mode = argv[3], *arg1 = argv[4];
  long arg2 = strtol (argv[5], NULL, 10);
  int in = inotify_init1 (IN_CLOEXEC | IN_NONBLOCK);
  char **dirs = g_strsplit (argv[2], ":", -1);
  for (char **d = dirs; *d; d++)
    if (g_mkdir_with_parents (*d, 0755) != 0 || inotify_add_watch (in, *d, IN_CREATE | IN_MOVED_TO) < 0)
      {
        fprintf (stderr, "kill-helper: %s: %s\n", *d, g_strerror (errno));
        return 2;
      }
  g_strfreev (dirs);
  int out = open (errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), p[2];
  if (out < 0 || pipe2 (p, O_CLOEXEC) != 0)
    return 2;
  pid_t pid = fork ();
  if (pid == 0)
    {
      dup2 (p[1], 2);
      execvp (argv[7], argv + 7);
      _exit (127);
    }
  close (p[1]);
  double start = now_ms (), deadline = -1;
  if (strcmp (mode, "delay") == 0)
    deadline = start + strtod (arg1, NULL);
  char want_step[32];
  g_snprintf (want_step, sizeof want_step, "step %s/", arg1);
  GString *err = g_string_new (NULL);
  long seen = 0;
  gboolean killed = FALSE, eof = FALSE;
  while (!eof && !killed)
    {
      int timeout = deadline < 0 ? -1 : MAX (0, (int) (deadline - now_ms ()));
      struct pollfd fds[2] = { { .fd = p[0], .events = POLLIN }, { .fd = in, .events = POLLIN } };
      if (poll (fds, 2, timeout) < 0 && errno != EINTR)
        break;
      if (deadline >= 0 && now_ms () >= deadline)
        {
          killed = kill (pid, SIGKILL) == 0;
          break;
        }
      char buf[4096] __attribute__ ((aligned (__alignof__ (struct inotify_event))));
      ssize_t n;
      while ((n = read (in, buf, sizeof buf)) > 0 && !killed)
        for (char *q = buf; q < buf + n; q += sizeof (struct inotify_event) + ((struct inotify_event *) q)->len)
          {
            const struct inotify_event *ev = (const struct inotify_event *) q;
            const char *name = ev->len ? ev->name : "";
            gboolean hit = (strcmp (mode, "create") == 0 && (ev->mask & IN_CREATE) && g_str_has_prefix (name, arg1)) ||
                           (strcmp (mode, "moved") == 0 && (ev->mask & IN_MOVED_TO) && strcmp (name, arg1) == 0);
            if (hit && ++seen >= arg2)
              {
                killed = kill (pid, SIGKILL) == 0;
                break;
              }
          }
      if (killed)
        break;
      if (fds[0].revents & (POLLIN | POLLHUP))
        {
          n = read (p[0], buf, sizeof buf);
          if (n <= 0)
            eof = TRUE;
          else
            {
              if (write (out, buf, (size_t) n) != n)
                break;
              g_string_append_len (err, buf, n);
              if (strcmp (mode, "step") == 0 && deadline < 0 && strstr (err->str, want_step))
                deadline = now_ms () + (double) arg2;
            }
        }
    }
  int status = 0;
  waitpid (pid, &status, 0);
  /* whatever the command wrote before it died */
  ssize_t n;
  char buf[4096];
  while ((n = read (p[0], buf, sizeof buf)) > 0)
    if (write (out, buf, (size_t) n) != n)
      break;
  close (out);
  g_string_free (err, TRUE);
  if (killed && WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL)
    printf ("killed\n");
  else
    printf ("finished (exit %d)\n", WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status));
  return 0;
}
