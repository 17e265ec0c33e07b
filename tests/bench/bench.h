/* Shared between the benchmark runner (bench.c) and its C++ peers (bench_tbb.cpp). */
#ifndef CONCUR_BENCH_H
#define CONCUR_BENCH_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The runner's shared pieces (bench.c). */
extern int opt_json, opt_quick, opt_runs;
void report(const char *workload, const char *impl, int threads, double value, const char *unit,
            const char *note);
double median_of(double (*fn)(void *), void *arg);
/* Medians of opt_runs rounds in which each of the n functions runs once, the round
   starting one further along each time, so that a slow phase of the machine lands
   on all of them; out[i] < 0 when one of fns[i]'s runs failed. */
void medians_interleaved(double (*const *fns)(void *), void *arg, int n, double *out);
double run_peer_command(const char *cmd);
double bench_raw_switch(long rounds);
void w4(void);
void w5(void);
void w6(void);
void w7(void);
void w8(void);
void w9(void);

/* Peers in C++ (bench_boost.cpp): seconds for the run, < 0 when it failed. */
double boost_switch(long n);
double boost_spawn(long n, long window, int reuse_stacks);

/* Each returns seconds for one run, or < 0 when the run failed. */
double tbb_fib(int n, int threads, long *result);
double tbb_submit(long tasks, int threads);
double tbb_pfor(double *out, int64_t n, int threads);

#ifdef __cplusplus
}
#endif
#endif
