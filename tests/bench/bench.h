/* Shared between the benchmark runner (bench.c) and its C++ peers (bench_tbb.cpp). */
#ifndef CONCUR_BENCH_H
#define CONCUR_BENCH_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Each returns seconds for one run, or < 0 when the run failed. */
double tbb_fib(int n, int threads, long *result);
double tbb_submit(long tasks, int threads);
double tbb_pfor(double *out, int64_t n, int threads);

#ifdef __cplusplus
}
#endif
#endif
