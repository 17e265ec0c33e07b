// oneTBB peers for W1-W3, written the way TBB's documentation shows them.
#include "bench.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static long fib_tg(int n) {
    if (n < 2) return n;
    long x = 0, y = 0;
    tbb::task_group g;
    g.run([&] { x = fib_tg(n - 1); });
    y = fib_tg(n - 2);
    g.wait();
    return x + y;
}

double tbb_fib(int n, int threads, long *result) {
    tbb::task_arena arena(threads);
    long r = 0;
    arena.execute([] {}); // start the workers outside the timing
    auto t0 = std::chrono::steady_clock::now();
    arena.execute([&] { r = fib_tg(n); });
    double s = seconds_since(t0);
    *result = r;
    return s;
}

// An outside thread enqueues every task; the arena's workers run them.
double tbb_submit(long tasks, int threads) {
    // oneTBB caps its workers at one less than the CPUs (here: 1), and an arena with
    // no slot for the submitting thread would then run on one worker ("The number of
    // workers is currently limited to 1"). Lift the cap so that it gets two, as
    // every other W2 pool does.
    tbb::global_control workers(tbb::global_control::max_allowed_parallelism, (size_t)threads + 1);
    tbb::task_arena arena(threads, 0); // no slot reserved for the submitting thread
    std::atomic<long> done{0};
    arena.execute([] {});
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < tasks; i++) arena.enqueue([&done] { done.fetch_add(1, std::memory_order_relaxed); });
    while (done.load(std::memory_order_acquire) < tasks) std::this_thread::yield();
    return seconds_since(t0);
}

double tbb_pfor(double *out, int64_t n, int threads) {
    tbb::task_arena arena(threads);
    arena.execute([] {});
    auto t0 = std::chrono::steady_clock::now();
    arena.execute([&] {
        tbb::parallel_for(tbb::blocked_range<int64_t>(0, n), [&](const tbb::blocked_range<int64_t> &r) {
            for (int64_t i = r.begin(); i < r.end(); i++) out[i] = std::sqrt((double)i) * 1.0001;
        });
    });
    return seconds_since(t0);
}
