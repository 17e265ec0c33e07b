/* Version, error names, clock and threads; also the compile check that every
   configuration's implementation is really linked in. */
#include "test.h"

static void test_version(void) {
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", CONCUR_VERSION_MAJOR, CONCUR_VERSION_MINOR,
             CONCUR_VERSION_PATCH);
    CHECK(strcmp(CONCUR_VERSION, expect) == 0);
    CHECK(strcmp(concur_version(), CONCUR_VERSION) == 0);
}

static void test_strerror(void) {
    static const int codes[] = {CONCUR_ECLOSED, CONCUR_EDONE, CONCUR_EWORKERDIED,
                                CONCUR_EBROKEN, CONCUR_ESHUTDOWN, -EINVAL, -ENOMEM,
                                -ETIMEDOUT, -ECANCELED, -EPIPE, -EBUSY, -EALREADY,
                                -EDEADLK, -EPERM, -EOVERFLOW, -EINPROGRESS};
    enum { N = sizeof codes / sizeof codes[0] };
    for (int i = 0; i < N; i++) {
        const char *s = concur_strerror(codes[i]);
        REQUIRE(s);
        CHECK(strlen(s) > 0);
        CHECK(strcmp(s, "unknown error") != 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(s, concur_strerror(codes[j])) != 0);
    }
    CHECK(strcmp(concur_strerror(-ETIMEDOUT), "timed out") == 0);
    CHECK(strcmp(concur_strerror(CONCUR_ECLOSED), "channel closed") == 0);
    CHECK(concur_strerror(-EIO) != NULL);          /* any errno gets the system's name */
    CHECK(strcmp(concur_strerror(12345), "unknown error") == 0);
    CHECK(strcmp(concur_strerror(0), "success") == 0);
}

static void test_clock(void) {
    double a = concur_now(), b = concur_now();
    CHECK(a > 0);
    CHECK(b >= a);
}

static void *thread_returns_arg(void *arg) { return arg; }
static void *join_self(void *arg) {
    concur_thread **self = (concur_thread **)arg;
    while (!__atomic_load_n(self, __ATOMIC_ACQUIRE)) {}
    return (void *)(intptr_t)concur_thread_join(*self, NULL);
}

static void test_threads_api(void) {
    int x = 3;
    concur_thread *t = concur_thread_create(thread_returns_arg, &x);
    REQUIRE(t);
    void *ret = NULL;
    CHECK_EQ(concur_thread_join(t, &ret), 0);
    CHECK(ret == &x);
    CHECK_EQ(concur_thread_join(NULL, NULL), -EINVAL);
    errno = 0;
    CHECK(concur_thread_create(NULL, NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    concur_thread *self = NULL;
    t = concur_thread_create(join_self, &self);
    REQUIRE(t);
    __atomic_store_n(&self, t, __ATOMIC_RELEASE);
    ret = NULL;
    /* The thread's own join is refused, so ours succeeds. */
    CHECK_EQ(concur_thread_join(t, &ret), 0);
    CHECK_EQ((intptr_t)ret, -EDEADLK);
}

int main(void) {
    test_begin(60);
    RUN(test_version);
    RUN(test_strerror);
    RUN(test_clock);
    RUN(test_threads_api);
    return test_end();
}
