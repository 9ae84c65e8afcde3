/* Timing helpers for the benchmarks: medians of repeated runs after a warm-up, and one printed line
 * per measurement with its same-run baseline beside it. */
#pragma once
#include <stdbool.h>

typedef void (*BenchFn) (void *ctx);

/* Seconds on a monotonic clock. */
double bench_now (void);
/* Runs fn(ctx) `warmup` times untimed, then `reps` times; returns the median duration in seconds. */
double bench_median_seconds (BenchFn fn, void *ctx, int warmup, int reps);
/* Times `ours` and `baseline` alternately (warm-up, then reps pairs) so that load from other processes
 * hits both alike; medians in *t_ours and *t_baseline. */
void bench_pair_median_seconds (BenchFn ours, BenchFn baseline, void *ctx, int warmup, int reps,
                                double *t_ours, double *t_baseline);
/* "<name> <shape>  <rate> GFLOP/s  <baseline name> <rate> GFLOP/s  ratio <ours/baseline>" */
void bench_report (const char *name, const char *shape, double flops, double seconds,
                   const char *baseline_name, double baseline_seconds);
