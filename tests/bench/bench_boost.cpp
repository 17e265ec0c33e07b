// Boost.Context peers for W4 and W5: the raw fcontext switch (what Boost.Coroutine2
// and Boost.Fiber build on), with plain malloc'd stacks for spawning.
#include <boost/context/detail/fcontext.hpp>
#include <chrono>
#include <cstdlib>
#include <vector>
#include "bench.h"

namespace ctx = boost::context::detail;

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static long switch_rounds;

static void pinger(ctx::transfer_t t) {
    for (long i = 0; i < switch_rounds; i++) t = ctx::jump_fcontext(t.fctx, nullptr);
    ctx::jump_fcontext(t.fctx, nullptr);
}

extern "C" double boost_switch(long n) {
    const std::size_t size = 64 * 1024;
    char *stack = static_cast<char *>(std::malloc(size));
    if (!stack) return -1;
    switch_rounds = n;
    ctx::fcontext_t c = ctx::make_fcontext(stack + size, size, pinger);
    double t0 = now_s();
    ctx::transfer_t t = ctx::jump_fcontext(c, nullptr);
    for (long i = 0; i < n; i++) t = ctx::jump_fcontext(t.fctx, nullptr);
    double t1 = now_s();
    std::free(stack);
    return (t1 - t0) / (2.0 * (double)n); // a round is two switches
}

static void one_yield(ctx::transfer_t t) {
    t = ctx::jump_fcontext(t.fctx, nullptr); // the yield
    ctx::jump_fcontext(t.fctx, nullptr);     // finished
}

// reuse_stacks: the window's stacks are allocated once, outside the timing, and each
// coroutine takes a stack from the same slot: the floor for this access pattern (no
// allocator, no scheduler), against which concur's spawn cost can be read.
extern "C" double boost_spawn(long n, long window, int reuse_stacks) {
    const std::size_t size = 64 * 1024;
    std::vector<ctx::fcontext_t> live(window);
    std::vector<char *> stacks(window);
    if (reuse_stacks) {
        for (long i = 0; i < window; i++)
            if (!(stacks[i] = static_cast<char *>(std::malloc(size)))) return -1;
    }
    double t0 = now_s();
    for (long done = 0; done < n; done += window) {
        long k = n - done < window ? n - done : window;
        for (long i = 0; i < k; i++) {
            if (!reuse_stacks && !(stacks[i] = static_cast<char *>(std::malloc(size)))) return -1;
            live[i] = ctx::jump_fcontext(ctx::make_fcontext(stacks[i] + size, size, one_yield), nullptr).fctx;
        }
        for (long i = 0; i < k; i++) {
            ctx::jump_fcontext(live[i], nullptr);
            if (!reuse_stacks) std::free(stacks[i]);
        }
    }
    double t = (now_s() - t0) / (double)n;
    if (reuse_stacks)
        for (long i = 0; i < window; i++) std::free(stacks[i]);
    return t;
}
