/* A tiny assertion and runner header for concur.h's tests: no framework needed.

   Every test program includes this file. In configurations that compile the library
   into the test itself (CONCUR_STATIC), CONCUR_TEST_IMPL pulls in the implementation
   here; otherwise it comes from impl.c / impl.cpp, so a program that calls into the
   library fails to link when the implementation is missing. */
#ifndef CONCUR_TEST_H
#define CONCUR_TEST_H

#if defined(CONCUR_TEST_IMPL) && !defined(CONCUR_IMPLEMENTATION)
#  define CONCUR_IMPLEMENTATION
#endif
#include "../concur.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test__failures;
static const char *test__current = "";

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__,          \
                    test__current, #cond);                                                \
            test__failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        long long test__a = (long long)(a), test__b = (long long)(b);                     \
        if (test__a != test__b) {                                                         \
            fprintf(stderr, "%s:%d: %s: CHECK_EQ failed: %s == %lld, %s == %lld\n",       \
                    __FILE__, __LINE__, test__current, #a, test__a, #b, test__b);         \
            test__failures++;                                                             \
        }                                                                                 \
    } while (0)

/* Fatal: for conditions after which the test cannot go on (a failed create). */
#define REQUIRE(cond)                                                                     \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s: REQUIRE failed: %s\n", __FILE__, __LINE__,        \
                    test__current, #cond);                                                \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* Iteration counts scale down under valgrind and in quick runs (CONCUR_TEST_QUICK=1):
   correctness comes from the checks, not from the count. */
static inline long test_scale(long n) {
    const char *q = getenv("CONCUR_TEST_QUICK");
    if (q && *q && *q != '0') {
        n /= 20;
        if (n < 1) n = 1;
    }
    return n;
}

/* The watchdog is a thread, not alarm(): SIGALRM belongs to the EINTR storm below,
   and a thread cannot be blocked by a test that masks signals. */
static unsigned test__watchdog_seconds;

static void *test__watchdog(void *arg) {
    static const char msg[] = "test watchdog: timed out (a hang?)\n";
    (void)arg;
    struct timespec ts = {(time_t)test__watchdog_seconds, 0};
    while (nanosleep(&ts, &ts) != 0) {}
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing more to do */ }
    _exit(124);
    return NULL;
}

/* With CONCUR_TEST_EINTR=1 in the environment, a 1 kHz SIGALRM interval timer runs
   for the whole program, with a handler installed without SA_RESTART: every blocking
   system call in the library (futex waits above all) keeps being interrupted, and
   every test must still pass. */
static volatile sig_atomic_t test__signals;
static void test__on_alarm(int sig) {
    (void)sig;
    test__signals++;
}

/* CONCUR_TEST_REPEAT=N runs every test N times; CONCUR_TEST_SHUFFLE=seed (0: from the
   clock) runs them in a random order each time, printing the seed to rerun it. Both
   shake out tests that lean on each other's leftovers and races that one order hides.
   Without them, RUN runs the test at once. */
static int test__repeat = 1, test__shuffle;
static unsigned long test__seed;

static inline void test_begin(unsigned seconds) {
    pthread_t t;
    pthread_attr_t attr;
    const char *rep = getenv("CONCUR_TEST_REPEAT"), *shuf = getenv("CONCUR_TEST_SHUFFLE");
    if (rep && atoi(rep) > 1) test__repeat = atoi(rep);
    if (shuf && *shuf) {
        test__shuffle = 1;
        test__seed = strtoul(shuf, NULL, 10);
        if (!test__seed) test__seed = (unsigned long)time(NULL) ^ (unsigned long)getpid();
        printf("(test order shuffled with CONCUR_TEST_SHUFFLE=%lu)\n", test__seed);
    }
    test__watchdog_seconds = seconds * (unsigned)test__repeat;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, test__watchdog, NULL) != 0) {
        fprintf(stderr, "cannot start the watchdog thread\n");
        exit(1);
    }
    pthread_attr_destroy(&attr);
    const char *storm = getenv("CONCUR_TEST_EINTR");
    if (storm && *storm && *storm != '0') {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = test__on_alarm; /* no SA_RESTART: interrupted calls fail with EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it;
        it.it_interval.tv_sec = 0;
        it.it_interval.tv_usec = 1000;
        it.it_value = it.it_interval;
        setitimer(ITIMER_REAL, &it, NULL);
    }
}

static inline void test__run_one(void (*fn)(void), const char *name) {
    int before = test__failures;
    test__current = name;
    fn();
    printf("%s %s\n", test__failures == before ? "ok  " : "FAIL", name);
    fflush(stdout);
}

typedef struct test__entry { void (*fn)(void); const char *name; } test__entry;
static test__entry test__list[64];
static int test__count;

static inline void test__add(void (*fn)(void), const char *name) {
    if (test__repeat == 1 && !test__shuffle) {
        test__run_one(fn, name);
        return;
    }
    if (test__count == (int)(sizeof test__list / sizeof test__list[0])) {
        fprintf(stderr, "too many tests for CONCUR_TEST_REPEAT/SHUFFLE\n");
        exit(1);
    }
    test__list[test__count].fn = fn;
    test__list[test__count].name = name;
    test__count++;
}

#define RUN(fn) test__add(fn, #fn)

/* Runs what RUN collected, when repeating or shuffling. */
static inline void test__run_collected(void) {
    unsigned long long x = test__seed;
    for (int r = 0; r < test__repeat && test__count; r++) {
        if (test__shuffle) {
            for (int i = test__count - 1; i > 0; i--) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                int j = (int)((x >> 33) % (unsigned long long)(i + 1));
                test__entry e = test__list[i];
                test__list[i] = test__list[j];
                test__list[j] = e;
            }
        }
        for (int i = 0; i < test__count; i++) test__run_one(test__list[i].fn, test__list[i].name);
    }
}

static inline int test_end(void) {
    test__run_collected();
    if (getenv("CONCUR_TEST_EINTR")) printf("(%d SIGALRM delivered during the run)\n", (int)test__signals);
    if (test__failures) fprintf(stderr, "%d check(s) failed\n", test__failures);
    return test__failures ? 1 : 0;
}

/* Open fds of this process (for leak checks). valgrind keeps its own fds near the
   top of the limit: only the program's are counted. */
static inline int test_count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && atoi(de->d_name) < 512) n++;
    closedir(d);
    return n;
}

/* Death tests: runs child() in a forked process with its stderr captured into err
   (NUL-terminated) and returns its wait status. */
static inline int test_run_child(void (*child)(void), char *err, size_t size) {
    int errp[2];
    REQUIRE(pipe(errp) == 0);
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(errp[1], 2);
        child();
        _exit(0);
    }
    close(errp[1]);
    size_t got = 0;
    ssize_t n;
    while (got < size - 1) { /* the EINTR storm interrupts these reads */
        n = read(errp[0], err + got, size - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    err[got] = 0;
    close(errp[0]);
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
    REQUIRE(w == pid);
    return status;
}

/* Measures a wait: elapsed seconds since start. */
static inline double test_since(double start) { return concur_now() - start; }

/* A thread set for hammer tests. */
#define TEST_MAX_THREADS 16
typedef struct test_threads { int n; concur_thread *t[TEST_MAX_THREADS]; } test_threads;

static inline void test_threads_start(test_threads *ts, int n, void *(*fn)(void *), void *arg) {
    ts->n = n;
    for (int i = 0; i < n; i++) {
        ts->t[i] = concur_thread_create(fn, arg);
        REQUIRE(ts->t[i] != NULL);
    }
}

static inline void test_threads_join(test_threads *ts) {
    for (int i = 0; i < ts->n; i++) CHECK_EQ(concur_thread_join(ts->t[i], NULL), 0);
    ts->n = 0;
}

#endif
