/* The typed-task macros expand in the user's code, so they must compile as C++ too:
   fib and a void task with a struct argument, at 2 threads, with a deque small
   enough that spawns also run beyond it. */
#include "../concur.h"

#include <cstdio>

CONCUR_TASK_1(long, cpp_fib, int, n) {
    if (n < 2) return n;
    CONCUR_SPAWN(cpp_fib, n - 1);
    long b = CONCUR_CALL(cpp_fib, n - 2);
    return CONCUR_SYNC(cpp_fib) + b;
}

struct span { long *at; int n; };

CONCUR_VOID_TASK_1(cpp_fill, span, s) {
    if (s.n == 1) {
        *s.at = 7;
        return;
    }
    span left = {s.at, s.n / 2}, right = {s.at + s.n / 2, s.n - s.n / 2};
    CONCUR_SPAWN(cpp_fill, left);
    CONCUR_CALL(cpp_fill, right);
    CONCUR_SYNC(cpp_fill);
}

static long fib_plain(int n) { return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2); }

int main() {
    concur_pool_desc d = concur_pool_desc();
    d.threads = 2;
    d.deque_size = 8;
    concur_pool *pool = concur_pool_create(&d);
    if (!pool) return 1;
    int failed = 0;
    long r = 0;
    if (CONCUR_RUN(pool, cpp_fib, &r, 22) != 0 || r != fib_plain(22)) failed++;
    static long cells[1000];
    span all = {cells, 1000};
    if (CONCUR_RUN(pool, cpp_fill, NULL, all) != 0) failed++;
    for (int i = 0; i < 1000; i++) failed += cells[i] != 7;
    if (concur_pool_destroy(pool) != 0) failed++;
    std::printf("%s typed tasks from C++\n", failed ? "FAIL" : "ok  ");
    return failed != 0;
}
