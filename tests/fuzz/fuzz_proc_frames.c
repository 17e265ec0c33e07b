/* libFuzzer target for the process pool's frame decoder, end to end: a task writes the
   input bytes into its worker's channel to the program (as a task with a stray write
   to the wrong fd would), then returns normally. Whatever the bytes say, the program
   must not crash, hang or leak: the task's future completes (with its own answer, an
   error, or CONCUR_EWORKERDIED when the worker had to be dropped), and the next task
   gets the right answer from the same pool. Built and run by the clang configuration
   (tests/meson.build), for a bounded time. */
#define CONCUR_IMPLEMENTATION
#include "../../concur.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MUST(c)                                                                        \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: violated: %s\n", __FILE__, __LINE__, #c);         \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static concur_procpool *pool;

/* The worker's channel is its only Unix stream socket. */
static int channel_fd(void) {
    for (int fd = 3; fd < 1024; fd++) {
        int type = 0, domain = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
        len = sizeof domain;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX) return fd;
    }
    return -1;
}

static int scribble(const void *in, size_t len, concur_proc_out *out) {
    int fd = channel_fd();
    if (fd >= 0) {
        const char *p = (const char *)in;
        while (len > 0) {
            ssize_t n = write(fd, p, len);
            if (n <= 0) break;
            p += n;
            len -= (size_t)n;
        }
    }
    return concur_proc_write(out, "done", 4);
}

static int square(const void *in, size_t len, concur_proc_out *out) {
    int64_t x;
    if (len != sizeof x) return -EINVAL;
    memcpy(&x, in, sizeof x);
    x *= x;
    return concur_proc_write(out, &x, sizeof x);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* Dropping a worker counts as a crash: with the default limit, the pool would
       (rightly) call itself broken after twenty bad inputs in ten seconds. */
    pool = concur_procpool_create(&(concur_procpool_desc){.workers = 1, .max_restarts = -1});
    MUST(pool);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    concur_future *f = concur_procpool_submit(pool, scribble, data, size);
    MUST(f);
    int rc = concur_future_wait(f, 20);
    MUST(rc == 0); /* no hang */
    int err = concur_future_error(f);
    size_t len = 0;
    const void *b = concur_future_bytes(f, &len);
    (void)b;
    MUST(err <= 0);
    concur_future_release(f);

    static int64_t x = 1;
    x = x % 1000000 + 1;
    concur_future *g = concur_procpool_submit(pool, square, &x, sizeof x);
    MUST(g);
    MUST(concur_future_wait(g, 20) == 0);
    int gerr = concur_future_error(g);
    if (gerr == 0) {
        const int64_t *v = (const int64_t *)concur_future_bytes(g, &len);
        MUST(v && len == sizeof *v && *v == x * x);
    } else {
        /* The scribbled worker may still have been in the slot: at most one more loss. */
        if (gerr != CONCUR_EWORKERDIED) fprintf(stderr, "next task: %s\n", concur_strerror(gerr));
        MUST(gerr == CONCUR_EWORKERDIED);
        concur_future *h = concur_procpool_submit(pool, square, &x, sizeof x);
        MUST(h && concur_future_wait(h, 20) == 0 && concur_future_error(h) == 0);
        concur_future_release(h);
    }
    concur_future_release(g);
    return 0;
}
