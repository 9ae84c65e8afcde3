#include "bench-util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

double
bench_now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *t, int n)
{
  qsort (t, n, sizeof (double), cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double
time_once (BenchFn fn, void *ctx)
{
  double t0 = bench_now ();
  fn (ctx);
  return bench_now () - t0;
}

double
bench_median_seconds (BenchFn fn, void *ctx, int warmup, int reps)
{
  for (int i = 0; i < warmup; i++)
    fn (ctx);
  if (reps < 1)
    reps = 1;
  double *t = malloc (sizeof (double) * reps);
  for (int i = 0; i < reps; i++)
    t[i] = time_once (fn, ctx);
  double m = median (t, reps);
  free (t);
  return m;
}

void
bench_pair_median_seconds (BenchFn ours, BenchFn baseline, void *ctx, int warmup, int reps,
                           double *t_ours, double *t_baseline)
{
  for (int i = 0; i < warmup; i++)
    {
      ours (ctx);
      baseline (ctx);
    }
  if (reps < 1)
    reps = 1;
  double *a = malloc (sizeof (double) * reps), *b = malloc (sizeof (double) * reps);
  for (int i = 0; i < reps; i++)
    {
      a[i] = time_once (ours, ctx);
      b[i] = time_once (baseline, ctx);
    }
  *t_ours = median (a, reps);
  *t_baseline = median (b, reps);
  free (a);
  free (b);
}

void
bench_report (const char *name, const char *shape, double flops, double seconds,
              const char *baseline_name, double baseline_seconds)
{
  printf ("%-16s %-30s %8.1f GFLOP/s  %8.3f ms   %s %8.1f GFLOP/s  ratio %.2f\n",
          name, shape, flops / seconds * 1e-9, seconds * 1e3,
          baseline_name, flops / baseline_seconds * 1e-9, baseline_seconds / seconds);
  fflush (stdout);
}
