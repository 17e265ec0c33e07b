/* concur.h - threads, futures, pools, processes and coroutines for C, in one header.

   concur.h gives a C program what Python spreads over threading, concurrent.futures,
   multiprocessing and asyncio: sync primitives (mutex, semaphore, event, wait group,
   channel), futures that every engine completes, a work-stealing thread pool with
   fork-join and parallel for, a stackful-coroutine I/O loop, and a process pool
   that survives crashing and runaway tasks. Every blocking call takes a timeout in
   seconds and is context-aware: it parks whatever is running it (a thread sleeps, a
   pool worker runs other tasks meanwhile, a coroutine lets its loop run the others),
   so helper code written once works everywhere.

   Quick start: copy this file into your project, and in exactly ONE .c file write

       #define CONCUR_IMPLEMENTATION
       #include "concur.h"

   then link with -pthread. Every other file includes "concur.h" plainly.

       #include <stdio.h>
       #define CONCUR_IMPLEMENTATION
       #include "concur.h"

       static void *producer(void *arg) {
           concur_chan *ch = arg;
           for (int i = 0; i < 5; i++) concur_chan_send(ch, &i, CONCUR_FOREVER);
           return NULL;
       }

       int main(void) {
           concur_chan *ch = concur_chan_create(sizeof(int), 16);
           concur_thread *t = concur_thread_create(producer, ch);
           for (int i = 0, v; i < 5; i++)
               if (concur_chan_recv(ch, &v, 1.0) == 0) printf("got %d\n", v);
           concur_thread_join(t, NULL);
           concur_chan_destroy(ch);
           return 0;
       }

   Conventions: int results are 0 or a negative errno (-ETIMEDOUT, -EINVAL ...) or one
   of the CONCUR_E* codes below; concur_strerror() names each. Constructors return a
   pointer, or NULL with errno set. Timeouts are double seconds: < 0 (CONCUR_FOREVER)
   waits forever, 0 polls, NaN is -EINVAL.

   Configuration (define before including, in the implementation file or everywhere):
     CONCUR_STATIC            every function static to the including file
     CONCUR_API               override the declaration prefix (default extern)
     CONCUR_MALLOC/CONCUR_REALLOC/CONCUR_FREE   allocator override, all three or none
     CONCUR_ASSERT(c)         assertion used by CONCUR_DEBUG checks (default assert)
     CONCUR_DEBUG             internal consistency checks, asserts on detected misuse
     CONCUR_NO_PROCESS        leave out the process pool
     CONCUR_NO_IO             leave out the coroutine I/O loop
     CONCUR_NO_FUTEX          park threads on mutex+condvar instead of Linux futexes
     CONCUR_FJ_PLAIN_CALLS    typed tasks reach their slow paths by plain calls instead
                              of a register-preserving trampoline (x86_64 only)
     CONCUR_CORO_UCONTEXT     switch coroutines with swapcontext instead of assembly
                              (automatic on other than x86_64 and aarch64)
     CONCUR_NO_INLINE_YIELD   concur_yield() is a plain call here, not the hand-off
                              inlined where it is written (x86_64 only)
     CONCUR_IO_POLL           the loop uses poll() instead of epoll
     CONCUR_NO_VALGRIND       leave out the valgrind stack annotations

   Grep-able section anchors: >>config >>api >>platform >>waiter >>sync >>chan
   >>future >>pool >>coro >>loop >>process. License (MIT) at the end of the file. */

/* Strict ISO C (-std=c99 or -std=c11 without -pthread) hides the POSIX functions the
   implementation calls. When the implementation file includes concur.h before any
   system header, ask for POSIX.1-2008 here; when a system header came first, its
   choice stands and the implementation stops with an #error that says what to do. */
#if defined(CONCUR_IMPLEMENTATION) && !defined(__cplusplus) && defined(__STRICT_ANSI__) && \
    !defined(_FEATURES_H) && !defined(_POSIX_C_SOURCE) && !defined(_POSIX_SOURCE) &&     \
    !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE) &&      \
    !defined(_REENTRANT)
#  define _POSIX_C_SOURCE 200809L
#endif

#ifndef CONCUR_H
#define CONCUR_H

/* >>config ------------------------------------------------------------------------ */

#define CONCUR_VERSION_MAJOR 0
#define CONCUR_VERSION_MINOR 1
#define CONCUR_VERSION_PATCH 0
#define CONCUR_VERSION "0.1.0"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#ifndef CONCUR_NO_IO
#  include <sys/types.h>
#  include <sys/socket.h>
#endif

#ifndef CONCUR_API
#  ifdef CONCUR_STATIC
#    if defined(__GNUC__) && !defined(__clang__) /* clang: see the implementation */
#      define CONCUR_API __attribute__((unused)) static
#    else
#      define CONCUR_API static
#    endif
#  else
#    define CONCUR_API extern
#  endif
#endif

/* Wait forever: any negative timeout does, this one reads well. */
#define CONCUR_FOREVER (-1.0)

/* Library-specific error codes, all negative and outside the errno range. */
#define CONCUR_ECLOSED      (-4001) /* channel closed and drained */
#define CONCUR_EDONE        (-4002) /* iterator has returned every item */
#define CONCUR_EWORKERDIED  (-4003) /* the process running the task died */
#define CONCUR_EBROKEN      (-4004) /* pool gave up restarting workers */
#define CONCUR_ESHUTDOWN    (-4005) /* pool or loop is shut down */

#ifdef __cplusplus
extern "C" {
#endif

/* >>api --------------------------------------------------------------------------- */

#ifdef CONCUR_TESTING
/* Fault injection, for the library's own tests (define CONCUR_TESTING everywhere the
   header is included). concur_testing_fail_at(kind, n) makes the n-th call of that
   kind from now on fail (1: the next one; 0: none); concur_testing_calls counts the
   calls so far. Allocations (and coroutine stacks' mmap) fail as ENOMEM, thread
   creations as EAGAIN, the process pool's set-up calls in the program (fork as EAGAIN;
   socketpair and eventfd as EMFILE) under CONCUR_FAULT_PROCESS, and under
   CONCUR_FAULT_IO the calls that move data or set up I/O: the fd wrappers' read,
   write, recv and send (EIO), accept and socket (EMFILE), the loop's eventfd and
   epoll_create1 (EMFILE) and epoll_ctl registrations (ENOMEM), and the process pool's
   frame sends (ENOBUFS) and receives (ECONNRESET) in the program. The process pool's
   helper and workers start with no failure armed. */
enum {
    CONCUR_FAULT_MALLOC = 0,
    CONCUR_FAULT_THREAD = 1,
    CONCUR_FAULT_PROCESS = 2,
    CONCUR_FAULT_IO = 3,
    CONCUR_FAULT_KINDS = 4
};
CONCUR_API void concur_testing_fail_at(int kind, long nth);
CONCUR_API long concur_testing_calls(int kind);
#endif

/* Human-readable name of any code this library returns (negative errno or
   CONCUR_E*). Never NULL. Thread-safe. */
CONCUR_API const char *concur_strerror(int code);

/* The header's version string, for checking that the implementation matches. */
CONCUR_API const char *concur_version(void);

/* Seconds on a monotonic clock; differences measure elapsed time. Thread-safe. */
CONCUR_API double concur_now(void);

/* ---- threads ---------------------------------------------------------------------
   A thin portable wrapper over the system's threads (Python's threading.Thread). */
typedef struct concur_thread concur_thread;

/* Starts fn(arg) on a new thread. NULL with errno on failure (EAGAIN, ENOMEM). */
CONCUR_API concur_thread *concur_thread_create(void *(*fn)(void *), void *arg);
/* Waits for the thread to finish, stores its return value in *ret (may be NULL) and
   frees the handle. Call exactly once per thread. -EINVAL for NULL, -EDEADLK when a
   thread joins itself. */
CONCUR_API int concur_thread_join(concur_thread *t, void **ret);

/* ---- mutex ------------------------------------------------------------------------
   A small futex lock (4 bytes). Zero-initialised memory or CONCUR_MUTEX_INIT is an
   unlocked mutex; no destroy is needed. It always blocks the calling *thread*, also
   inside a coroutine, so hold it only for short critical sections and never across a
   blocking call; use a semaphore of 1 to serialise longer work. Not recursive. */
typedef struct concur_mutex { uint32_t concur__state; } concur_mutex;
#define CONCUR_MUTEX_INIT {0}

CONCUR_API void concur_mutex_init(concur_mutex *m);
/* 0, or -EINVAL for NULL. */
CONCUR_API int concur_mutex_lock(concur_mutex *m);
/* 0, -EBUSY when held elsewhere, -EINVAL for NULL. */
CONCUR_API int concur_mutex_trylock(concur_mutex *m);
/* 0, -ETIMEDOUT, -EINVAL for NULL or NaN timeout. */
CONCUR_API int concur_mutex_timedlock(concur_mutex *m, double timeout);
/* 0, -EPERM when the mutex is not locked (asserts under CONCUR_DEBUG). */
CONCUR_API int concur_mutex_unlock(concur_mutex *m);

/* ---- waiter queue (opaque to users, embedded in the primitives below) ------------- */
typedef struct concur__waiter concur__waiter;
typedef struct concur__wq { concur__waiter *head, *tail; } concur__wq;

/* ---- semaphore --------------------------------------------------------------------
   Counting semaphore (Python's threading.Semaphore). Zero-initialised memory is a
   semaphore with count 0. Waiters are served first-come first-served and a release
   hands its permit straight to the oldest waiter, so no waiter starves. Context-aware.
   All functions thread-safe. Destroy only when no one waits (-EBUSY otherwise). */
typedef struct concur_sem {
    concur_mutex concur__lock;
    uint32_t concur__count;
    concur__wq concur__waiters;
} concur_sem;

/* 0, or -EINVAL for NULL / count > INT32_MAX. */
CONCUR_API int concur_sem_init(concur_sem *s, unsigned count);
CONCUR_API int concur_sem_destroy(concur_sem *s);
/* Takes one permit. 0, -ETIMEDOUT (also when timeout is 0 and none is free),
   -ECANCELED (a cancelled coroutine), -EINVAL. */
CONCUR_API int concur_sem_acquire(concur_sem *s, double timeout);
/* Returns n permits. 0, -EINVAL, -EOVERFLOW when the count would pass INT32_MAX
   (nothing is released then). */
CONCUR_API int concur_sem_release(concur_sem *s, unsigned n);
/* Permits free right now (a snapshot). */
CONCUR_API unsigned concur_sem_value(concur_sem *s);

/* ---- event ------------------------------------------------------------------------
   A flag that threads wait to become set (Python's threading.Event). Zero memory is a
   cleared event. Context-aware, thread-safe. */
typedef struct concur_event {
    concur_mutex concur__lock;
    uint32_t concur__set;
    concur__wq concur__waiters;
} concur_event;

CONCUR_API int concur_event_init(concur_event *e);
/* -EBUSY while someone waits. */
CONCUR_API int concur_event_destroy(concur_event *e);
/* Sets the flag and wakes every waiter. */
CONCUR_API int concur_event_set(concur_event *e);
CONCUR_API int concur_event_clear(concur_event *e);
/* 1 when set, 0 when not, -EINVAL for NULL. */
CONCUR_API int concur_event_is_set(concur_event *e);
/* 0 once the flag is set, -ETIMEDOUT, -ECANCELED, -EINVAL. */
CONCUR_API int concur_event_wait(concur_event *e, double timeout);

/* ---- wait group -------------------------------------------------------------------
   Counts outstanding work; wait returns when the count is zero (Go's WaitGroup).
   Zero memory is a group with count 0. Context-aware, thread-safe. */
typedef struct concur_wg {
    concur_mutex concur__lock;
    int64_t concur__count;
    concur__wq concur__waiters;
} concur_wg;

CONCUR_API int concur_wg_init(concur_wg *wg);
CONCUR_API int concur_wg_destroy(concur_wg *wg);
/* Adds delta (may be negative). -EINVAL when the count would go below zero (the
   count is left unchanged). Reaching zero wakes every waiter. */
CONCUR_API int concur_wg_add(concur_wg *wg, int64_t delta);
/* concur_wg_add(wg, -1). */
CONCUR_API int concur_wg_done(concur_wg *wg);
/* 0 when the count is zero, -ETIMEDOUT, -ECANCELED, -EINVAL. */
CONCUR_API int concur_wg_wait(concur_wg *wg, double timeout);

/* ---- channel ----------------------------------------------------------------------
   Bounded multi-producer multi-consumer queue of fixed-size elements that are copied
   in and out (Python's queue.Queue with maxsize, Go's buffered channel). FIFO for
   elements and for blocked senders and receivers. Context-aware, thread-safe. */
typedef struct concur_chan concur_chan;

/* elem_size and capacity must be >= 1; NULL with errno EINVAL, or ENOMEM. */
CONCUR_API concur_chan *concur_chan_create(size_t elem_size, size_t capacity);
/* Frees the channel. -EBUSY (and nothing freed) while a sender or receiver is blocked
   on it: close it and let them return first. */
CONCUR_API int concur_chan_destroy(concur_chan *ch);
/* Copies elem_size bytes from elem into the channel, waiting for room.
   0, -ETIMEDOUT, -EPIPE when the channel is closed (also while waiting), -ECANCELED,
   -EINVAL. */
CONCUR_API int concur_chan_send(concur_chan *ch, const void *elem, double timeout);
/* Copies the oldest element into out, waiting for one. 0, -ETIMEDOUT, CONCUR_ECLOSED
   once the channel is closed and every element sent before close was received,
   -ECANCELED, -EINVAL. */
CONCUR_API int concur_chan_recv(concur_chan *ch, void *out, double timeout);
/* No more sends: blocked senders get -EPIPE, receivers drain what is left and then
   get CONCUR_ECLOSED. 0, or -EPIPE when already closed. */
CONCUR_API int concur_chan_close(concur_chan *ch);
/* Elements queued now (a snapshot), and the fixed capacity. 0 for NULL. */
CONCUR_API size_t concur_chan_len(concur_chan *ch);
CONCUR_API size_t concur_chan_cap(concur_chan *ch);

/* ---- futures ----------------------------------------------------------------------
   One result handle for every engine (Python's concurrent.futures.Future). A future is
   pending, then running (optional), then done with exactly one outcome: a value, an
   error code (negative), bytes (process results), or -ECANCELED. It is reference
   counted: whoever gets one from a create or submit call owns one reference and
   releases it with concur_future_release. Every function is thread-safe. */
typedef struct concur_future concur_future;
typedef void (*concur_future_cb)(concur_future *f, void *arg);

/* A new pending future owned by the caller (asyncio's loop.create_future): complete it
   with concur_future_set_*. NULL with errno ENOMEM. */
CONCUR_API concur_future *concur_future_create(void);
/* Adds a reference; returns f (NULL for NULL). */
CONCUR_API concur_future *concur_future_retain(concur_future *f);
/* Drops a reference; the last one frees the future. 0, or -EINVAL for NULL or a handle
   already released (detected while its memory is cached; asserts under CONCUR_DEBUG). */
CONCUR_API int concur_future_release(concur_future *f);

/* Waits until done. 0 when done (whatever the outcome), -ETIMEDOUT, -ECANCELED (the
   *waiting* coroutine was cancelled), -EINVAL. Context-aware. */
CONCUR_API int concur_future_wait(concur_future *f, double timeout);
/* Waits, then returns the outcome: 0 with *value set, or the error. -ETIMEDOUT when
   not done in time. value may be NULL. */
CONCUR_API int concur_future_result(concur_future *f, double timeout, void **value);
/* 1 when done, 0 when not, -EINVAL for NULL. Never blocks. */
CONCUR_API int concur_future_done(concur_future *f);
/* 1 when done by cancellation. */
CONCUR_API int concur_future_cancelled(concur_future *f);
/* The value, or NULL when not done or done without a value. */
CONCUR_API void *concur_future_value(concur_future *f);
/* 0 for a value, the negative error or -ECANCELED when failed, -EINPROGRESS when not
   done yet, -EINVAL for NULL. */
CONCUR_API int concur_future_error(concur_future *f);
/* Result bytes (owned by the future, valid until its last release), or NULL. *len gets
   their length (0 when none); len may be NULL. */
CONCUR_API const void *concur_future_bytes(concur_future *f, size_t *len);
/* Cancels a future that has not started: 0 (also when already cancelled), -EBUSY when
   running, -EALREADY when done otherwise. Cancelling completes it (waiters wake,
   callbacks run). */
CONCUR_API int concur_future_cancel(concur_future *f);
/* Calls cb(f, arg) once the future is done: right away on this thread when it already
   is, otherwise on the thread that completes it. The callback must not block for long
   and must not release the caller's reference. 0, -ENOMEM, -EINVAL. */
CONCUR_API int concur_future_then(concur_future *f, concur_future_cb cb, void *arg);

/* Completing a future (for engines, and for users who make their own futures). Each
   returns 0, or -EALREADY when the future is already done (including cancelled: the
   outcome is then dropped, and freeing a value is the caller's job), -EINVAL. */
/* Marks a pending future running so it can no longer be cancelled: 0, -ECANCELED when
   it was cancelled (do not run the work), -EINVAL when not pending. */
CONCUR_API int concur_future_set_running(concur_future *f);
CONCUR_API int concur_future_set_value(concur_future *f, void *value);
/* err must be negative. */
CONCUR_API int concur_future_set_error(concur_future *f, int err);
/* Copies len bytes as the result. -ENOMEM when the copy cannot be made. */
CONCUR_API int concur_future_set_bytes(concur_future *f, const void *bytes, size_t len);

/* Waits until every future is done. 0, -ETIMEDOUT, -ECANCELED, -EINVAL (NULL array or
   entry). n == 0 returns 0. */
CONCUR_API int concur_wait_all(concur_future *const *fs, size_t n, double timeout);
/* Waits until at least one is done; returns its index, or -ETIMEDOUT, -EINVAL. */
CONCUR_API int concur_wait_any(concur_future *const *fs, size_t n, double timeout);

/* As-completed iteration (concurrent.futures.as_completed): yields the index of each
   future as it completes, in completion order, O(n) in total for n futures. The
   iterator holds its own reference to every future until destroyed.
       concur_as_completed *it = concur_as_completed_create(fs, n);
       for (int i; (i = concur_as_completed_next(it, CONCUR_FOREVER)) >= 0; ) use(fs[i]);
       concur_as_completed_destroy(it);
   One thread (or coroutine) at a time may call next. */
typedef struct concur_as_completed concur_as_completed;
/* NULL with errno EINVAL (NULL array or entry, n > INT32_MAX) or ENOMEM. */
CONCUR_API concur_as_completed *concur_as_completed_create(concur_future *const *fs, size_t n);
/* Next completed index, CONCUR_EDONE when all were returned, -ETIMEDOUT, -ECANCELED,
   -EINVAL. */
CONCUR_API int concur_as_completed_next(concur_as_completed *it, double timeout);
/* Safe at any point, also while futures are still pending or completing. */
CONCUR_API void concur_as_completed_destroy(concur_as_completed *it);

/* ---- thread pool ------------------------------------------------------------------
   A work-stealing pool of worker threads (ThreadPoolExecutor, and the fork-join engine
   for CPU work). Two ways in:
   - concur_pool_submit(pool, fn, arg): from any thread, also from inside a task; the
     result comes back as a future (fn's return value, or the error it reported with
     concur_task_fail).
   - fork-join: a concur_group on the stack, concur_spawn for each child,
     concur_group_wait to join. A spawn costs no heap allocation: the task record
     lives in the worker's deque, and a worker that waits runs the group's own
     children (or, when one was stolen, work from its thief) instead of sleeping.
   Blocking calls inside tasks (futures, semaphores, channels ...) let the worker help
   with other tasks while it waits. */
typedef struct concur_pool concur_pool;
typedef void *(*concur_task_fn)(void *arg);

typedef struct concur_pool_desc {
    int threads;           /* worker threads; 0: the number of online CPUs */
    const char *name;      /* thread name prefix (shown by top -H), default "concur" */
    /* Runs first on every worker thread, with the worker's index (0..threads-1). */
    void (*on_start)(int worker, void *user);
    void *user;
    /* How long an idle worker keeps looking for work before it sleeps, in µs.
       0: the default (50 µs); negative: sleep at once. */
    int spin_us;
    /* Fork-join tasks one worker can have outstanding (spawned, not joined); a spawn
       beyond that runs inline. 0: 8192. */
    int deque_size;
} concur_pool_desc;

/* Starts the workers. desc may be NULL (all defaults). NULL with errno EINVAL (threads
   < 0 or > 4096, deque_size < 0), ENOMEM or EAGAIN (thread creation failed; no thread
   is left behind). Thread-safe. */
CONCUR_API concur_pool *concur_pool_create(const concur_pool_desc *desc);
/* Queues fn(arg) and returns a future that completes with its return value (or the
   code it passed to concur_task_fail); the caller owns one reference. Any thread,
   including a task of this pool. After shutdown the future comes back already failed
   with CONCUR_ESHUTDOWN. NULL with errno EINVAL (NULL pool or fn) or ENOMEM. */
CONCUR_API concur_future *concur_pool_submit(concur_pool *pool, concur_task_fn fn, void *arg);
/* Stops accepting work and waits until the workers have exited: queued tasks run
   first, unless cancel_pending is nonzero, in which case their futures are cancelled
   (-ECANCELED) and their groups get -ECANCELED. Running tasks always finish. 0,
   -EINVAL, -EDEADLK when called from a worker of this pool. Idempotent. */
CONCUR_API int concur_pool_shutdown(concur_pool *pool, int cancel_pending);
/* Shuts down (running queued work) and frees the pool. 0, -EINVAL, -EDEADLK from one
   of its own workers (nothing happens then). */
CONCUR_API int concur_pool_destroy(concur_pool *pool);
/* Number of worker threads, or -EINVAL. */
CONCUR_API int concur_pool_threads(concur_pool *pool);
/* The pool whose worker is calling, or NULL on any other thread. */
CONCUR_API concur_pool *concur_pool_current(void);
/* The calling worker's index (0..threads-1), or -1 outside a pool. */
CONCUR_API int concur_worker_index(void);
/* Inside a task: marks it failed with err (negative). Its future completes with err
   instead of the return value; a spawned task's group reports the first such error
   from concur_group_wait. 0, or -EINVAL outside a task or for err >= 0. */
CONCUR_API int concur_task_fail(int err);

/* Fork-join group. Initialise on the stack of the task (or thread) that spawns and
   joins; every spawn must be joined by concur_group_wait before the group goes out of
   scope. Spawning from other tasks into the group is allowed (such children are
   counted separately), joining is for the thread that initialised it. */
typedef struct concur_group {
    concur_pool *concur__pool;
    void *concur__worker;   /* the owning worker, NULL outside the pool */
    uint32_t concur__base;  /* deque position of the group's first child */
    int32_t concur__error;
    uint32_t concur__remote_used; /* 0, or 2 once concur__remote is in use */
    concur_wg concur__remote; /* children queued elsewhere */
} concur_group;

/* pool NULL: the calling worker's pool. 0, or -EINVAL (NULL group, or no pool given
   outside a worker). */
CONCUR_API int concur_group_init(concur_group *g, concur_pool *pool);
/* Runs fn(arg) as a child of g, now or later, on this worker or a thief. 0, -EINVAL,
   -ENOMEM (outside the pool only: the queue could not grow), CONCUR_ESHUTDOWN. */
CONCUR_API int concur_spawn(concur_group *g, void (*fn)(void *arg), void *arg);
/* Waits until every child of g has run. Inside a worker, the wait runs the group's
   own children and helps thieves instead of blocking. Returns 0, the first error a
   child reported with concur_task_fail, or -EPERM when called from another worker
   than the one that initialised the group. Then the group may be reused. */
CONCUR_API int concur_group_wait(concur_group *g);

/* Calls body(lo, hi, ctx) over [begin, end) split into ranges of about grain items
   (grain 0: automatic, about 32 ranges per worker), in parallel, and returns when all
   are done. From outside the pool the caller blocks; inside a worker it takes part.
   0 (also for an empty range), the first error a body reported with
   concur_task_fail, -EINVAL (NULL pool outside a worker, NULL body, negative grain,
   begin > end). */
CONCUR_API int concur_parallel_for(concur_pool *pool, int64_t begin, int64_t end, int64_t grain,
                                   void (*body)(int64_t lo, int64_t hi, void *ctx), void *ctx);

/* ---- typed fork-join tasks --------------------------------------------------------
   The fastest fork-join, for recursive divide and conquer (the model of Lace and
   Cilk): a task is a typed function declared with CONCUR_TASK_n or CONCUR_VOID_TASK_n
   (n = 1..4 arguments), and in its body
     CONCUR_SPAWN(name, args...)  queues a child, which an idle worker may steal;
     CONCUR_CALL(name, args...)   runs a child at once, as a plain call;
     CONCUR_SYNC(name)            joins the most recent spawn not yet joined and
                                  evaluates to its return value.
   Each task joins all of its own spawns, most recent first, and each SYNC names the
   task that the matching SPAWN named. Arguments and the result travel by value in the
   deque's record (at most CONCUR_TASK_PAYLOAD bytes of arguments, and a result of at
   most that size; the types must be trivially copyable, and declarator types such as
   function pointers need a typedef), and the worker's deque position is passed from task to
   task in registers: a spawn and its join cost a few nanoseconds and never allocate.

   From any thread, CONCUR_RUN(pool, name, &result, args...) runs a task in the pool
   (pool NULL: the calling worker's) and waits for it: 0, -EINVAL (no pool),
   CONCUR_ESHUTDOWN, -ENOMEM. For a void task pass NULL as the result. Inside a worker
   of that pool it simply calls the task.

   Typed tasks report failure through their return value (concur_task_fail is for
   submitted and group tasks). Spawns beyond the deque's size (deque_size) run at once
   and keep their results aside until joined, which allocates; if that allocation
   fails the program is aborted with a message, as a stack overflow would end it.
   Use concur_group and concur_spawn when the children are not known statically, or
   are spawned into a group from other tasks.

       CONCUR_TASK_1(long, fib, int, n) {
           if (n < 2) return n;
           CONCUR_SPAWN(fib, n - 1);
           long b = CONCUR_CALL(fib, n - 2);
           return CONCUR_SYNC(fib) + b;
       }
       ...
       long f;
       int rc = CONCUR_RUN(pool, fib, &f, 35);                                        */

#define CONCUR_TASK_PAYLOAD 32

/* 64-bit fields that are accessed atomically: on i386 a struct aligns them to 4 only,
   and a locked operation on one that straddles a cache line is a split lock (slow,
   and fatal where the kernel enforces split-lock detection). */
#if defined(__GNUC__) || defined(__clang__)
#  define CONCUR__ATOMIC64 __attribute__((aligned(8)))
#else
#  define CONCUR__ATOMIC64
#endif

/* A deque record (private: reached by the macros' inline code). */
typedef struct concur__rec {
    void (*fn)(void);
    void *arg;      /* unused by typed tasks: theirs is the payload */
    uintptr_t ctx;  /* group or future pointer | kind; 0 for a typed task */
    uint32_t thief; /* 0, or 1 + index of the worker that stole it */
    uint32_t done;  /* 0; 1 when the thief finished; 2 while the owner sleeps on it */
    union {
        unsigned char bytes[CONCUR_TASK_PAYLOAD];
        void *p;
        long long ll;
        long double ld;
    } payload; /* a typed task's arguments, then its result */
} concur__rec;

/* The part of a worker that typed tasks use (private). */
typedef struct concur__fj {
    /* Shared with thieves: its own cache line. */
    uint64_t ts CONCUR__ATOMIC64; /* tail in the low half, split in the high half */
    uint32_t allstolen;
    uint32_t movesplit;
    char pad0[64 - 16];
    /* Owner only. Typed tasks pass their position in the deque as a record's address,
       so that a join reads the spawn's arguments without first loading `dq`; the
       pool's own code works with indices (concur__dq_head, concur__dq_split). */
    uintptr_t top;             /* &dq[head]: where the next spawn goes */
    uintptr_t split_at;        /* &dq[split] */
    uintptr_t end;             /* &dq[cap]; typed spawns past it run at once */
    concur__rec *dq;
    uint32_t cap;
    uint32_t overflow_cap;     /* slots in `overflow` */
    const uint32_t *sleepers;  /* the pool's count of sleeping workers */
    unsigned char *overflow;   /* results of typed spawns beyond the deque */
} concur__fj;

CONCUR_API concur__fj *concur__fj_self(void);
/* The slow paths of the inline code share one signature, so that one trampoline
   reaches them all (below): x is a spawn's arguments where one is needed. */
CONCUR_API uintptr_t concur__fj_pushed(concur__fj *w, uintptr_t h, void *x);
CONCUR_API uintptr_t concur__fj_join(concur__fj *w, uintptr_t h, void *x);
CONCUR_API int concur__fj_run(concur_pool *pool, void (*run)(void *args), void *args);
CONCUR_API void concur__fj_misuse(const char *task);

/* CONCUR_DEBUG: a SYNC whose record was not spawned by a SPAWN of the same task (a
   wrong name, or one SYNC too many) aborts with a message instead of running the
   record with the wrong types. */
#ifdef CONCUR_DEBUG
#  define CONCUR__FJ_CHECK_TOP(name) \
    if (concur__h < (uintptr_t)concur__w->dq) concur__fj_misuse(NULL); \
    if (concur__h < concur__w->end && \
        ((concur__rec *)concur__h)->fn != (void (*)(void))name##__concur_run) \
        concur__fj_misuse(#name);
#else
#  define CONCUR__FJ_CHECK_TOP(name)
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define CONCUR__FJ_INLINE __attribute__((always_inline, unused)) static inline
#  define CONCUR__FJ_UNUSED __attribute__((unused)) static
#  define CONCUR__FJ_LIKELY(x) __builtin_expect(!!(x), 1)
/* A leaf task (no SPAWN, CALL or SYNC) leaves the hidden parameters unused. */
#  define CONCUR__FJ_HIDDEN __attribute__((unused))
#else
#  define CONCUR__FJ_INLINE static inline
#  define CONCUR__FJ_UNUSED static
#  define CONCUR__FJ_LIKELY(x) (x)
#  define CONCUR__FJ_HIDDEN
#endif
#define CONCUR__FJ_LIST(...) __VA_ARGS__
#if defined(__GNUC__) || defined(__clang__)
#  define CONCUR__FJ_OPAQUE(v) __asm__ volatile("" : "+r"(v))
#else
#  define CONCUR__FJ_OPAQUE(v) ((void)0)
#endif
/* A spawn writes its task's wrapper into the record; a compiler that loads the
   address once per task keeps it in a callee-saved register, so on x86_64 it is
   computed where it is stored, by an instruction the compiler cannot hoist. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__code_model_large__)
#  define CONCUR__FJ_ADDR(var, fn) __asm__ volatile("leaq %c1(%%rip), %0" : "=r"(var) : "i"(fn))
#else
#  define CONCUR__FJ_ADDR(var, fn) ((void)0)
#endif

/* The hidden parameters and helpers are marked unused for leaf tasks and tasks never
   spawned; clang's -Wused-but-marked-unused would flag every use in the user's code. */
#if defined(__clang__)
#  define CONCUR__FJ_QUIET(...) \
    _Pragma("clang diagnostic push") \
    _Pragma("clang diagnostic ignored \"-Wused-but-marked-unused\"") \
    __VA_ARGS__ _Pragma("clang diagnostic pop")
#else
#  define CONCUR__FJ_QUIET(...) __VA_ARGS__
#endif
/* The slow paths are calls the hot path must not pay for. A plain call clobbers every
   caller-saved register, so a task keeps what lives across its spawn and join in
   callee-saved ones, and saves and restores them in every frame (a typed fib(35) on
   one worker: 0.035 s against 0.043 s with plain calls under gcc, with the hoisting
   fixes below; 0.046 s against 0.064 s under clang). On x86_64 the call goes through
   a trampoline that saves the general registers the ABI lets a callee clobber
   (except r10 and r11, which a lazily bound PLT entry may use); the compiler sees an
   instruction that returns in rax, clobbers flags, memory, r10, r11 and the vector
   and x87 registers (which a task rarely holds across a spawn), and keeps the rest
   in place.
   CONCUR_FJ_PLAIN_CALLS makes them plain calls, as on other targets. */
typedef uintptr_t (*concur__fj_slow_fn)(concur__fj *w, uintptr_t h, void *x);
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#  define CONCUR__FJ_TRAMP 1 /* the implementation defines it whatever the users choose */
#endif
/* An asm statement that lets other code run (a call, a coroutine switch) names the
   vector and x87 registers that code may change; the registers that exist depend on
   the target's extensions. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  if defined(__AVX512F__)
#    define CONCUR__CLOBBER_AVX512 , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", \
        "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", \
        "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#  else
#    define CONCUR__CLOBBER_AVX512
#  endif
#  if defined(__APX_F__)
#    define CONCUR__CLOBBER_APX , "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", \
        "r24", "r25", "r26", "r27", "r28", "r29", "r30", "r31"
#  else
#    define CONCUR__CLOBBER_APX
#  endif
#  define CONCUR__CLOBBER_FP "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
        "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", \
        "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)" CONCUR__CLOBBER_AVX512 CONCUR__CLOBBER_APX
#endif
#if defined(CONCUR__FJ_TRAMP) && !defined(CONCUR_FJ_PLAIN_CALLS)
/* The call lands 128 bytes below the stack pointer: the task may keep data in the
   red zone, which a call would overwrite. */
CONCUR__FJ_INLINE uintptr_t concur__fj_slow(concur__fj_slow_fn fn, concur__fj *w, uintptr_t h,
                                            void *x) {
    uintptr_t r = (uintptr_t)fn;
    __asm__ volatile("leaq -128(%%rsp), %%rsp\n\t"
                     "call concur__fj_tramp@PLT\n\t"
                     "leaq 128(%%rsp), %%rsp"
                     : "+a"(r)
                     : "D"(w), "S"(h), "d"(x)
                     : "memory", "cc", "r10", "r11", CONCUR__CLOBBER_FP);
    return r;
}
#else
CONCUR__FJ_INLINE uintptr_t concur__fj_slow(concur__fj_slow_fn fn, concur__fj *w, uintptr_t h,
                                            void *x) {
    return fn(w, h, x);
}
#endif

#define CONCUR_SPAWN(name, ...) \
    CONCUR__FJ_QUIET((concur__h = name##__concur_spawn(concur__w, concur__h, __VA_ARGS__)))
#define CONCUR_CALL(name, ...) CONCUR__FJ_QUIET(name(concur__w, concur__h, __VA_ARGS__))
#define CONCUR_SYNC(name) CONCUR__FJ_QUIET(name##__concur_sync(concur__w, &concur__h))
#define CONCUR_RUN(pool, name, result, ...) \
    CONCUR__FJ_QUIET(name##__concur_start((pool), (result), __VA_ARGS__))

/* Pushes a typed record; the caller checked for room. A free slot always has ctx,
   thief and done at 0 (whoever takes a record leaves them so), and ctx 0 marks the
   record typed: the pool then passes the payload as the argument. A spawn writes
   only the function and the arguments. */
CONCUR__FJ_INLINE concur__rec *concur__fj_put(uintptr_t h, void (*run)(void *)) {
    concur__rec *r = (concur__rec *)h;
    r->fn = (void (*)(void))run;
    return r;
}

/* After the arguments are in: publishes the new head, and hands over to the slow path
   when thieves asked for work, took everything, or a worker sleeps. The new head is
   the same in every turn of a task's loop of spawns, and a compiler that computes it
   once keeps it in a callee-saved register, which every frame saves and restores; an
   empty asm hides that, so it costs one add where it is needed. */
CONCUR__FJ_INLINE uintptr_t concur__fj_pushed_fast(concur__fj *w, uintptr_t h) {
    CONCUR__FJ_OPAQUE(h);
    w->top = h + sizeof(concur__rec);
    if (!CONCUR__FJ_LIKELY(!(__atomic_load_n(&w->allstolen, __ATOMIC_RELAXED) |
                             __atomic_load_n(&w->movesplit, __ATOMIC_RELAXED) |
                             __atomic_load_n(w->sleepers, __ATOMIC_RELAXED))))
        concur__fj_slow(concur__fj_pushed, w, h, NULL);
    return h + sizeof(concur__rec);
}

/* The record at h is private and nobody asked for a share: pop it here. */
CONCUR__FJ_INLINE int concur__fj_pop_fast(concur__fj *w, uintptr_t h) {
    if (CONCUR__FJ_LIKELY(h >= w->split_at && h < w->end &&
                          !__atomic_load_n(&w->movesplit, __ATOMIC_RELAXED))) {
        w->top = h;
        return 1;
    }
    return 0;
}

#define CONCUR__FJ_ARGS(name, FIELDS, R_FIELD) \
    typedef struct name##__concur_in { CONCUR__FJ_LIST FIELDS } name##__concur_in; \
    typedef union name##__concur_args { \
        name##__concur_in in; \
        R_FIELD \
    } name##__concur_args; \
    typedef char name##__concur_fits[sizeof(name##__concur_args) <= CONCUR_TASK_PAYLOAD ? 1 : -1];

/* A spawn with room in the deque: the record, its arguments, the new head. */
#define CONCUR__FJ_PUSH(name, STORE) \
    void (*concur__run_)(void *) = name##__concur_run; \
    CONCUR__FJ_ADDR(concur__run_, name##__concur_run); \
    concur__rec *concur__rec_ = concur__fj_put(concur__h, concur__run_); \
    name##__concur_args *concur__p = (name##__concur_args *)(void *)&concur__rec_->payload; \
    CONCUR__FJ_LIST STORE \
    return concur__fj_pushed_fast(concur__w, concur__h);
/* The arguments (later the result) of the record a SYNC joins. */
#define CONCUR__FJ_TOP(name) \
    CONCUR__FJ_CHECK_TOP(name) \
    name##__concur_args *concur__p = (name##__concur_args *)(void *)&((concur__rec *)concur__h)->payload;

#define CONCUR__FJ_TASK(R, name, PARAMS, FIELDS, STORE, FROM_P) \
    CONCUR__FJ_ARGS(name, FIELDS, R out;) \
    static R name(concur__fj *concur__w CONCUR__FJ_HIDDEN, \
                  uintptr_t concur__h CONCUR__FJ_HIDDEN, CONCUR__FJ_LIST PARAMS); \
    CONCUR__FJ_UNUSED void name##__concur_run(void *concur__a) { \
        name##__concur_args *concur__p = (name##__concur_args *)concur__a; \
        concur__fj *concur__w = concur__fj_self(); \
        R concur__r = name(concur__w, concur__w->top, CONCUR__FJ_LIST FROM_P); \
        concur__p->out = concur__r; \
    } \
    /* A spawn past the end of the deque: runs at once, the result kept aside. */ \
    CONCUR__FJ_UNUSED uintptr_t name##__concur_now(concur__fj *concur__w, uintptr_t concur__h, \
                                                   void *concur__x) { \
        name##__concur_args *concur__p = (name##__concur_args *)concur__x; \
        R concur__r = name(concur__w, concur__h + sizeof(concur__rec), CONCUR__FJ_LIST FROM_P); \
        *(R *)concur__fj_join(concur__w, concur__h, NULL) = concur__r; \
        return 0; \
    } \
    CONCUR__FJ_INLINE uintptr_t name##__concur_spawn(concur__fj *concur__w, uintptr_t concur__h, \
                                                    CONCUR__FJ_LIST PARAMS) { \
        if (!CONCUR__FJ_LIKELY(concur__h < concur__w->end)) { \
            name##__concur_args concur__a, *concur__p = &concur__a; \
            CONCUR__FJ_LIST STORE \
            concur__fj_slow(name##__concur_now, concur__w, concur__h, concur__p); \
            return concur__h + sizeof(concur__rec); \
        } \
        CONCUR__FJ_PUSH(name, STORE) \
    } \
    CONCUR__FJ_INLINE R name##__concur_sync(concur__fj *concur__w, uintptr_t *concur__hp) { \
        uintptr_t concur__h = *concur__hp -= sizeof(concur__rec); \
        CONCUR__FJ_TOP(name) \
        if (concur__fj_pop_fast(concur__w, concur__h)) \
            return name(concur__w, concur__h, CONCUR__FJ_LIST FROM_P); \
        return *(R *)concur__fj_slow(concur__fj_join, concur__w, concur__h, NULL); \
    } \
    CONCUR__FJ_UNUSED int name##__concur_start(concur_pool *concur__pool, R *concur__result, \
                                               CONCUR__FJ_LIST PARAMS) { \
        name##__concur_args concur__args, *concur__p = &concur__args; \
        CONCUR__FJ_LIST STORE \
        int concur__rc = concur__fj_run(concur__pool, name##__concur_run, concur__p); \
        if (concur__rc == 0 && concur__result) *concur__result = concur__p->out; \
        return concur__rc; \
    } \
    static R name(concur__fj *concur__w CONCUR__FJ_HIDDEN, \
                  uintptr_t concur__h CONCUR__FJ_HIDDEN, CONCUR__FJ_LIST PARAMS)

#define CONCUR__FJ_VOID_TASK(name, PARAMS, FIELDS, STORE, FROM_P) \
    CONCUR__FJ_ARGS(name, FIELDS, ) \
    static void name(concur__fj *concur__w CONCUR__FJ_HIDDEN, \
                     uintptr_t concur__h CONCUR__FJ_HIDDEN, CONCUR__FJ_LIST PARAMS); \
    CONCUR__FJ_UNUSED void name##__concur_run(void *concur__a) { \
        name##__concur_args *concur__p = (name##__concur_args *)concur__a; \
        concur__fj *concur__w = concur__fj_self(); \
        name(concur__w, concur__w->top, CONCUR__FJ_LIST FROM_P); \
    } \
    CONCUR__FJ_UNUSED uintptr_t name##__concur_now(concur__fj *concur__w, uintptr_t concur__h, \
                                                   void *concur__x) { \
        name##__concur_args *concur__p = (name##__concur_args *)concur__x; \
        name(concur__w, concur__h + sizeof(concur__rec), CONCUR__FJ_LIST FROM_P); \
        return 0; \
    } \
    CONCUR__FJ_INLINE uintptr_t name##__concur_spawn(concur__fj *concur__w, uintptr_t concur__h, \
                                                    CONCUR__FJ_LIST PARAMS) { \
        if (!CONCUR__FJ_LIKELY(concur__h < concur__w->end)) { \
            name##__concur_args concur__a, *concur__p = &concur__a; \
            CONCUR__FJ_LIST STORE \
            concur__fj_slow(name##__concur_now, concur__w, concur__h, concur__p); \
            return concur__h + sizeof(concur__rec); \
        } \
        CONCUR__FJ_PUSH(name, STORE) \
    } \
    CONCUR__FJ_INLINE void name##__concur_sync(concur__fj *concur__w, uintptr_t *concur__hp) { \
        uintptr_t concur__h = *concur__hp -= sizeof(concur__rec); \
        CONCUR__FJ_TOP(name) \
        if (concur__fj_pop_fast(concur__w, concur__h)) { \
            name(concur__w, concur__h, CONCUR__FJ_LIST FROM_P); \
            return; \
        } \
        if (concur__h < concur__w->end) concur__fj_slow(concur__fj_join, concur__w, concur__h, NULL); \
    } \
    CONCUR__FJ_UNUSED int name##__concur_start(concur_pool *concur__pool, void *concur__result, \
                                               CONCUR__FJ_LIST PARAMS) { \
        name##__concur_args concur__args, *concur__p = &concur__args; \
        (void)concur__result; \
        CONCUR__FJ_LIST STORE \
        return concur__fj_run(concur__pool, name##__concur_run, concur__p); \
    } \
    static void name(concur__fj *concur__w CONCUR__FJ_HIDDEN, \
                     uintptr_t concur__h CONCUR__FJ_HIDDEN, CONCUR__FJ_LIST PARAMS)

#define CONCUR__FJ_1(T1, a1) (T1 a1), (T1 a1;), (concur__p->in.a1 = a1;), (concur__p->in.a1)
#define CONCUR__FJ_2(T1, a1, T2, a2) (T1 a1, T2 a2), (T1 a1; T2 a2;), \
    (concur__p->in.a1 = a1; concur__p->in.a2 = a2;), (concur__p->in.a1, concur__p->in.a2)
#define CONCUR__FJ_3(T1, a1, T2, a2, T3, a3) (T1 a1, T2 a2, T3 a3), (T1 a1; T2 a2; T3 a3;), \
    (concur__p->in.a1 = a1; concur__p->in.a2 = a2; concur__p->in.a3 = a3;), \
    (concur__p->in.a1, concur__p->in.a2, concur__p->in.a3)
#define CONCUR__FJ_4(T1, a1, T2, a2, T3, a3, T4, a4) (T1 a1, T2 a2, T3 a3, T4 a4), \
    (T1 a1; T2 a2; T3 a3; T4 a4;), \
    (concur__p->in.a1 = a1; concur__p->in.a2 = a2; concur__p->in.a3 = a3; concur__p->in.a4 = a4;), \
    (concur__p->in.a1, concur__p->in.a2, concur__p->in.a3, concur__p->in.a4)
/* One more expansion step, so that the lists above split into separate arguments. */
#define CONCUR__FJ_EXPAND(m, args) m args

#define CONCUR_TASK_1(R, name, T1, a1) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_TASK, (R, name, CONCUR__FJ_1(T1, a1)))
#define CONCUR_TASK_2(R, name, T1, a1, T2, a2) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_TASK, (R, name, CONCUR__FJ_2(T1, a1, T2, a2)))
#define CONCUR_TASK_3(R, name, T1, a1, T2, a2, T3, a3) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_TASK, (R, name, CONCUR__FJ_3(T1, a1, T2, a2, T3, a3)))
#define CONCUR_TASK_4(R, name, T1, a1, T2, a2, T3, a3, T4, a4) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_TASK, (R, name, CONCUR__FJ_4(T1, a1, T2, a2, T3, a3, T4, a4)))
#define CONCUR_VOID_TASK_1(name, T1, a1) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_VOID_TASK, (name, CONCUR__FJ_1(T1, a1)))
#define CONCUR_VOID_TASK_2(name, T1, a1, T2, a2) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_VOID_TASK, (name, CONCUR__FJ_2(T1, a1, T2, a2)))
#define CONCUR_VOID_TASK_3(name, T1, a1, T2, a2, T3, a3) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_VOID_TASK, (name, CONCUR__FJ_3(T1, a1, T2, a2, T3, a3)))
#define CONCUR_VOID_TASK_4(name, T1, a1, T2, a2, T3, a3, T4, a4) \
    CONCUR__FJ_EXPAND(CONCUR__FJ_VOID_TASK, (name, CONCUR__FJ_4(T1, a1, T2, a2, T3, a3, T4, a4)))

#ifndef CONCUR_NO_PROCESS
/* ---- process pool (multiprocessing's job) -----------------------------------------
   Worker processes for work that must not take the program down: a task that
   crashes (SIGSEGV, abort, exit, OOM kill) or runs past its timeout fails only its own
   future, its worker is reaped and replaced, and the pool keeps serving.

   A task is fn(in, in_len, out) run in a worker: it reads the input bytes and writes
   its result bytes with concur_proc_alloc / concur_proc_write, or returns a negative
   error. Workers are forked (never exec'd), so fn is any function of the program and
   sees the program's memory as it was when the pool was created. Payloads of
   shm_threshold bytes or more cross through shared memory instead of the socket.

   Create the pool early, before the program starts threads that may hold locks: the
   pool forks a single-threaded helper process at creation, and every worker (also
   every replacement) is forked from that helper, so locks, thread pools and loops made
   before that point must not be used inside tasks, and state changed after it is not
   seen by workers. Workers ignore SIGINT (Ctrl-C reaches only the parent), close every
   inherited fd but 0, 1 and 2, and exit when the parent dies, even by SIGKILL.

   Futures complete on the pool's own thread (callbacks registered with
   concur_future_then run there); any thread, pool worker or coroutine may wait on
   them. Linux and other POSIX systems with fork and AF_UNIX sockets. */
typedef struct concur_procpool concur_procpool;
/* Where a task writes its result (valid during the call only). */
typedef struct concur_proc_out concur_proc_out;
/* Runs in a worker process. Returns >= 0 on success (the future gets the bytes
   written to out), or a negative error that becomes the future's error. */
typedef int (*concur_proc_fn)(const void *in, size_t in_len, concur_proc_out *out);

typedef struct concur_procpool_desc {
    int workers;              /* worker processes; 0: the number of online CPUs */
    int max_tasks_per_child;  /* a worker retires and is replaced after this many
                                 tasks; 0: never */
    double task_timeout;      /* seconds a task may run before it fails with
                                 -ETIMEDOUT and its worker is killed; 0: no limit */
    /* Runs once in each worker before its first task; a negative return breaks the
       pool (creation fails, or later tasks get CONCUR_EBROKEN). */
    int (*initializer)(void *arg);
    void *init_arg;
    /* More than max_restarts crashes within restart_window seconds mark the pool
       broken instead of respawning forever. 0: 20 in 10 s; max_restarts < 0: no
       limit. Timeouts and retirements do not count. */
    int max_restarts;
    double restart_window;
    /* Payloads (either way) from this size go through shared memory. 0: 64 KiB. */
    size_t shm_threshold;
    /* Seconds between SIGTERM and SIGKILL when a worker is stopped by force (task
       timeout, shutdown past its bound). 0: 0.5 s. */
    double kill_grace;
} concur_procpool_desc;

/* Forks the helper and the workers and waits until every worker has run its
   initializer. desc may be NULL (all defaults). NULL with errno EINVAL (bad desc),
   ENOMEM, EAGAIN (fork or thread creation failed), EMFILE, or the negated code an
   initializer returned (ECHILD when a worker died during start-up, or the error that
   reading its greeting got, ECONNRESET say). Nothing is left
   behind on failure. Thread-safe. */
CONCUR_API concur_procpool *concur_procpool_create(const concur_procpool_desc *desc);
/* Queues fn over a copy of in[0..in_len) (the caller's buffer may be reused at once)
   and returns a future that completes with the result bytes (concur_future_bytes),
   fn's negative error, -ETIMEDOUT, CONCUR_EWORKERDIED (see concur_future_death),
   CONCUR_EBROKEN, or -ECANCELED. The caller owns one reference. Any thread. After
   shutdown the future comes back already failed with CONCUR_ESHUTDOWN (CONCUR_EBROKEN
   when broken). NULL with errno EINVAL (NULL pp or fn, NULL in with in_len > 0) or
   ENOMEM. */
CONCUR_API concur_future *concur_procpool_submit(concur_procpool *pp, concur_proc_fn fn,
                                                 const void *in, size_t in_len);
/* The same with its own timeout in seconds (< 0 or 0: none; NaN: EINVAL). */
CONCUR_API concur_future *concur_procpool_submit_timeout(concur_procpool *pp, concur_proc_fn fn,
                                                         const void *in, size_t in_len,
                                                         double timeout);
/* Pool.map over n fixed-size items: fn runs once per item (in_size bytes in, at most
   out_size bytes out; a shorter result is zero-padded) and out[i] gets item i's
   result, in input order. Items travel in chunks of `chunk` (0: automatic, n / (4 x
   workers) like Pool.map). Blocks until done (context-aware). 0; the error of the
   first failing item in input order (its chunk fails as a whole: fn's code,
   -EMSGSIZE for a result over out_size, CONCUR_EWORKERDIED, -ETIMEDOUT); -ETIMEDOUT
   when the whole map is not done within timeout (its queued chunks are cancelled, and
   out is no longer written); -EINVAL, -ENOMEM, CONCUR_ESHUTDOWN, CONCUR_EBROKEN. out
   may be NULL when out_size is 0. */
CONCUR_API int concur_procpool_map(concur_procpool *pp, concur_proc_fn fn, const void *in, size_t n,
                                   size_t in_size, void *out, size_t out_size, size_t chunk,
                                   double timeout);
/* Stops accepting work and stops the workers within a bound: queued tasks run first
   (or are cancelled with -ECANCELED when cancel_pending is nonzero), then idle
   workers are asked to exit. Whatever still runs after `timeout` seconds (< 0:
   forever) gets SIGTERM, then SIGKILL after kill_grace, and its future fails with
   CONCUR_ESHUTDOWN; tasks still queued then fail the same way. Returns when every
   worker and the helper are reaped: 0, -EINVAL, -EDEADLK from the pool's own thread
   (a future callback). Idempotent; concurrent calls all wait. */
CONCUR_API int concur_procpool_shutdown(concur_procpool *pp, int cancel_pending, double timeout);
/* Shuts down (running queued work, waiting as long as it takes) and frees the pool.
   0, -EINVAL, -EDEADLK (see shutdown). */
CONCUR_API int concur_procpool_destroy(concur_procpool *pp);
/* Number of worker processes, or -EINVAL. */
CONCUR_API int concur_procpool_workers(concur_procpool *pp);
/* For a future failed with CONCUR_EWORKERDIED: *signo gets the signal that killed the
   worker (0 when it exited) and *exit_code its exit status (-1 when killed by a
   signal); either pointer may be NULL. 0, or -EINVAL for any other future. */
CONCUR_API int concur_future_death(concur_future *f, int *signo, int *exit_code);

/* Inside a task: a result buffer of exactly len bytes (replacing anything written
   before), to fill in place; valid until the next call on out. NULL with errno EINVAL
   (NULL out) or ENOMEM. */
CONCUR_API void *concur_proc_alloc(concur_proc_out *out, size_t len);
/* Inside a task: appends len bytes to the result. 0, -EINVAL, -ENOMEM. */
CONCUR_API int concur_proc_write(concur_proc_out *out, const void *data, size_t len);
#endif /* CONCUR_NO_PROCESS */

#ifndef CONCUR_NO_IO
/* ---- coroutines and the I/O loop (asyncio's job) ---------------------------------
   A loop runs stackful coroutines on one thread: each coroutine is plain blocking-
   style code, and every blocking call of this library (the fd wrappers below,
   concur_sleep, futures, channels, semaphores, events, wait groups) parks the
   coroutine and lets the loop run the others. Coroutines never move between threads,
   so thread-locals stay valid inside them. Outside a coroutine the same calls block
   the calling thread, so helper code works in both worlds.

   Not coroutine-aware: concur_mutex (it blocks the whole loop; use a semaphore of 1
   across a blocking call), and any foreign blocking call (plain read(), sleep(),
   getaddrinfo()): run those on the thread pool and await the future. */
typedef struct concur_loop concur_loop;
typedef struct concur_co concur_co;

/* Not API: what concur_yield's inline hand-off (below) reads and writes of a loop and
   its coroutines. The implementation's records start with these. On x86_64 the
   switch is an asm statement that saves the stack, frame and instruction pointers and
   the floating-point control words in the coroutine's record, and names every other
   register clobbered: the compiler then keeps across it only the values still live at
   that point, where a called switch saves all six callee-saved registers whatever the
   caller holds. */
#if defined(__x86_64__) && !defined(__ILP32__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(CONCUR_CORO_UCONTEXT)
#  define CONCUR__SWITCH_X86 1
typedef struct concur__swctx {
    void *sp;
    void (*pc)(void);      /* where the switch resumes */
    void *bp;
    uint32_t mxcsr, fpucw; /* at offsets 24 and 28, which the switch names */
} concur__swctx;
#  if defined(__CET__) && (__CET__ & 1)
#    define CONCUR__ENDBR "endbr64\n\t"
#  else
#    define CONCUR__ENDBR ""
#  endif
/* from and to: concur__swctx pointers. Resumes at the 1: of whichever switch saved
   to. rbp is saved by hand because it may be the frame pointer, which an asm
   statement cannot clobber. */
#  define CONCUR__SWITCH(from, to)                                                        \
      do {                                                                                \
          concur__swctx *concur__from = (from), *concur__to = (to);                       \
          __asm__ volatile("stmxcsr 24(%0)\n\t"                                           \
                           "fnstcw 28(%0)\n\t"                                            \
                           "leaq 1f(%%rip), %%rax\n\t"                                    \
                           "movq %%rsp, 0(%0)\n\t"                                        \
                           "movq %%rax, 8(%0)\n\t"                                        \
                           "movq %%rbp, 16(%0)\n\t"                                       \
                           "ldmxcsr 24(%1)\n\t"                                           \
                           "fldcw 28(%1)\n\t"                                             \
                           "movq 0(%1), %%rsp\n\t"                                        \
                           "movq 16(%1), %%rbp\n\t"                                       \
                           "jmp *8(%1)\n"                                                  \
                           "1:\n\t" CONCUR__ENDBR                                         \
                           : "+D"(concur__from), "+S"(concur__to)                         \
                           :                                                              \
                           : "memory", "cc", "rax", "rbx", "rcx", "rdx", "r8", "r9",      \
                             "r10", "r11", "r12", "r13", "r14", "r15", CONCUR__CLOBBER_FP); \
      } while (0)
#else
typedef struct concur__swctx { void *unused; } concur__swctx; /* see concur__ctx */
#endif
typedef struct concur__co_hot {
    concur__swctx sw;     /* x86_64: the saved context; first, so its address is the
                             record's and the switch needs no offset added */
    concur_co *next;      /* ready queue (up to the loop's ready_tail), free list */
    uint32_t state;       /* CONCUR__CO_*, loop thread only */
    uint32_t cancel;      /* a cancel request not yet delivered */
} concur__co_hot;
typedef struct concur__loop_hot {
    concur_co *current;   /* the running coroutine, NULL while the loop itself runs */
    concur_co *ready_head, *ready_tail; /* tail->next is not read: no NULL to store */
    unsigned direct;      /* counts direct hand-offs up to CONCUR__DIRECT_MAX */
} concur__loop_hot;
enum { CONCUR__CO_NEW = 0, CONCUR__CO_STARTED, CONCUR__CO_DONE };
#define CONCUR__DIRECT_MAX 256u

enum { CONCUR_BACKEND_AUTO = 0, CONCUR_BACKEND_EPOLL = 1, CONCUR_BACKEND_POLL = 2 };
/* Event bits for concur_wait_fd. */
enum { CONCUR_READABLE = 1, CONCUR_WRITABLE = 2 };

typedef struct concur_loop_desc {
    /* Usable stack bytes per coroutine, rounded up to pages; 0: 256 KiB. Stacks are
       reserved, not committed: a coroutine costs only the pages it touches. A guard
       page below each stack turns an overflow into a reported crash. */
    size_t stack_size;
    /* CONCUR_BACKEND_AUTO (epoll on Linux), _EPOLL or _POLL. */
    int backend;
    /* Finished coroutines' stacks kept for reuse. 0: every one (so never more than
       were alive at once), given back down to 256 while the loop waits for I/O;
       n > 0: at most n; negative: none. */
    int stack_cache;
} concur_loop_desc;

/* A loop, not yet bound to a thread (the thread that calls concur_loop_run runs it).
   desc may be NULL. NULL with errno EINVAL (bad backend, stack_size over 1 GiB),
   ENOMEM, or the error of epoll_create1/eventfd. Thread-safe. */
CONCUR_API concur_loop *concur_loop_create(const concur_loop_desc *desc);
/* Runs the loop on the calling thread until no coroutine is left (started ones and
   those queued by concur_go). 0, -EINVAL, -EBUSY (the loop runs already, or this
   thread runs another loop). */
CONCUR_API int concur_loop_run(concur_loop *loop);
/* Frees an idle loop. 0, -EINVAL, -EBUSY while coroutines are alive or queued or the
   loop is running (nothing happens then). */
CONCUR_API int concur_loop_destroy(concur_loop *loop);
/* The loop running on this thread, or NULL. */
CONCUR_API concur_loop *concur_loop_current(void);

/* Starts fn(arg) as a coroutine on loop (NULL: the current loop). Thread-safe: any
   thread may start coroutines on any loop; from another thread (or before the loop
   runs) the coroutine starts at the loop's next turn. The handle must be given back
   with concur_join or concur_detach, like a pthread. NULL with errno EINVAL (no loop,
   NULL fn) or ENOMEM. */
CONCUR_API concur_co *concur_go(concur_loop *loop, void *(*fn)(void *arg), void *arg);
/* Waits until co has finished, stores fn's return value in *result (may be NULL) and
   frees the handle. From a coroutine this parks it; from a thread it blocks. 0,
   -ETIMEDOUT (the handle stays valid), -ECANCELED (co was cancelled before it started;
   the handle is freed), -EDEADLK (co is the caller), -EINVAL. */
CONCUR_API int concur_join(concur_co *co, double timeout, void **result);
/* Gives the handle back without waiting; the coroutine runs on. 0 or -EINVAL. */
CONCUR_API int concur_detach(concur_co *co);
/* Asks co to stop: its current blocking call, or its next one, returns -ECANCELED
   (once: the coroutine decides what to do next, as with asyncio's CancelledError). A
   coroutine that has not started yet never runs (concur_join returns -ECANCELED).
   Thread-safe. 0, -EALREADY (co has finished), -EINVAL. */
CONCUR_API int concur_cancel(concur_co *co);
/* The running coroutine, or NULL outside one. */
CONCUR_API concur_co *concur_co_current(void);
/* Lets the loop run every other ready coroutine (and poll for I/O) before this one
   continues. Outside a coroutine: sched_yield(). 0, or -ECANCELED when the coroutine
   was cancelled before or while it waited its turn (a computing coroutine's point to
   stop). */
CONCUR_API int concur_yield(void);
CONCUR_API int concur__yield_slow(void); /* not API: concur_yield's path through the loop */
/* A call of concur_yield from a coroutine hands over to the next ready one right
   where it is written (the function stays, for its address and for other languages):
   x86_64, gcc or clang, code built into a program rather than a shared library (whose
   thread-local access would cost a call), not CONCUR_STATIC, no sanitizer in this
   file, and not turned off with CONCUR_NO_INLINE_YIELD. The implementation only lets
   it act when its own switch is this one (else concur__tls_hot always names an empty
   stand-in loop, and every yield takes concur__yield_slow). */
#if defined(CONCUR__SWITCH_X86) && !defined(CONCUR_STATIC) && !defined(CONCUR_NO_INLINE_YIELD) && \
    (!defined(__PIC__) || defined(__PIE__)) && !defined(__SANITIZE_ADDRESS__) &&          \
    !defined(__SANITIZE_THREAD__)
#  if defined(__has_feature)
#    if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#      define CONCUR__NO_INLINE_YIELD_HERE 1
#    endif
#  endif
#  ifndef CONCUR__NO_INLINE_YIELD_HERE
#    define CONCUR__INLINE_YIELD 1
#  endif
#endif
#ifdef CONCUR__INLINE_YIELD
/* __thread in C++ too: an extern thread_local is reached through a wrapper call. The
   file that defines it lets the compiler pick the cheapest access. */
#  ifdef CONCUR_IMPLEMENTATION
extern __thread concur__loop_hot *concur__tls_hot;
#  else
extern __thread concur__loop_hot *concur__tls_hot __attribute__((tls_model("initial-exec")));
#  endif
/* The common case: another coroutine is ready and the loop's turn allows one more
   hand-off; the yielding coroutine goes to the back of the queue. */
__attribute__((always_inline)) static inline int concur__yield_inline(void) {
    concur__loop_hot *L = concur__tls_hot; /* a loop's only while its coroutine runs */
    concur_co *next;
    if (__builtin_expect((next = L->ready_head) &&
                             ((concur__co_hot *)(void *)next)->state != CONCUR__CO_NEW &&
                             L->direct < CONCUR__DIRECT_MAX, 1)) {
        concur_co *self = L->current;
        concur__co_hot *me = (concur__co_hot *)(void *)self;
        concur__co_hot *to = (concur__co_hot *)(void *)next;
        L->direct++;
        if (__builtin_expect(next == L->ready_tail, 1)) {
            L->ready_head = self;
        } else {
            L->ready_head = to->next;
            ((concur__co_hot *)(void *)L->ready_tail)->next = self;
        }
        L->ready_tail = self;
        L->current = next;
        CONCUR__SWITCH(&me->sw, &to->sw);
        /* Only the loop's thread sets the flag. */
        if (__builtin_expect(!__atomic_load_n(&me->cancel, __ATOMIC_RELAXED), 1)) return 0;
        return __atomic_exchange_n(&me->cancel, 0u, __ATOMIC_ACQ_REL) ? -ECANCELED : 0;
    }
    return concur__yield_slow();
}
#  define concur_yield() concur__yield_inline()
#endif
/* Sleeps for seconds (parks a coroutine, blocks a thread). 0, -ECANCELED, -EINVAL
   (negative or NaN). */
CONCUR_API int concur_sleep(double seconds);

/* fd wrappers. Each takes a timeout, returns a negative errno on failure (-ETIMEDOUT,
   -ECANCELED, the syscall's own error) and survives EINTR. In a coroutine the fd is
   switched to O_NONBLOCK the first time a wrapper sees it, and waiting parks the
   coroutine; in a thread the call blocks (with poll for the timeout). A SIGPIPE is
   never raised: writes to a closed peer return -EPIPE. */

/* Waits until fd is ready for events (CONCUR_READABLE | CONCUR_WRITABLE). Returns the
   ready bits (> 0; a hang-up or error reports both requested bits so the next call
   sees the error), or -ETIMEDOUT, -ECANCELED, -EBADF (fd closed with concur_close
   meanwhile), -EBUSY (another coroutine already waits for the same direction). */
CONCUR_API int concur_wait_fd(int fd, int events, double timeout);
/* One read(2): the bytes read (> 0), 0 at end of file, or a negative errno. */
CONCUR_API ssize_t concur_read(int fd, void *buf, size_t len, double timeout);
/* Writes all len bytes: len, or a negative errno with the count that did get written
   in *written (may be NULL; set in both cases). */
CONCUR_API ssize_t concur_write(int fd, const void *buf, size_t len, double timeout, size_t *written);
/* One recv(2) with flags: the bytes received, 0 when the peer closed, or -errno. */
CONCUR_API ssize_t concur_recv(int fd, void *buf, size_t len, int flags, double timeout);
/* Sends all len bytes with send(2) flags (MSG_NOSIGNAL is always added): len, or a
   negative errno with the count sent in *sent (may be NULL). */
CONCUR_API ssize_t concur_send(int fd, const void *buf, size_t len, int flags, double timeout,
                               size_t *sent);
/* Accepts a connection: the new fd (non-blocking, close-on-exec), or -errno. addr and
   addrlen as for accept(2), may be NULL. */
CONCUR_API int concur_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, double timeout);
/* Connects fd to addr within timeout. 0 or -errno (-ECONNREFUSED, -ETIMEDOUT ...). */
CONCUR_API int concur_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout);
/* Closes fd; a coroutine of this thread's loop that waits on it wakes with -EBADF,
   and no stale event for the old fd reaches a new one with the same number. Use it
   instead of close(2) for fds that coroutines wait on. 0 or -errno. */
CONCUR_API int concur_close(int fd);
/* A listening TCP socket (SO_REUSEADDR, non-blocking, close-on-exec) on host:port.
   host NULL or "" = every IPv4 address; port 0 = any free port (see
   concur_tcp_local_port). The fd, or -errno (-EADDRINUSE, -EINVAL for a bad port). */
CONCUR_API int concur_tcp_listen(const char *host, int port, int backlog);
/* A TCP connection to host:port (names are resolved on a helper thread so that a
   coroutine's loop never blocks on DNS); tries each address in turn within timeout.
   The fd (non-blocking, close-on-exec), or -errno (-ECONNREFUSED, -ETIMEDOUT,
   -EHOSTUNREACH, -ENOENT for an unknown name). */
CONCUR_API int concur_tcp_dial(const char *host, int port, double timeout);
/* The local port of a bound socket, or -errno. */
CONCUR_API int concur_tcp_local_port(int fd);
#endif /* CONCUR_NO_IO */

#ifdef __cplusplus
}
#endif
#endif /* CONCUR_H */

/* ================================================================================ */
/* >>implementation                                                                 */
/* ================================================================================ */
#if defined(CONCUR_IMPLEMENTATION) && !defined(CONCUR__IMPLEMENTED)
#define CONCUR__IMPLEMENTED
/* Warnings about deliberate idioms, off inside the implementation only: exact
   compares with the timeout sentinels, const dropped where a callback's void * must
   carry a const object, records carved from one aligned allocation. */
#if defined(__GNUC__) || defined(__clang__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wfloat-equal"
#  pragma GCC diagnostic ignored "-Wcast-qual"
#  pragma GCC diagnostic ignored "-Wcast-align"
#  ifndef __cplusplus
#    pragma GCC diagnostic ignored "-Wbad-function-cast"
#  endif
#endif
/* clang: feature subsets leave some static functions unused, which is fine here;
   marking them unused instead would make -Wused-but-marked-unused flag each use.
   Also assert(!"message"), the fault hooks' comma expressions, and macros named
   after the functions they wrap. */
#if defined(__clang__)
#  pragma clang diagnostic ignored "-Wunused-function"
#  pragma clang diagnostic ignored "-Wstring-conversion"
#  pragma clang diagnostic ignored "-Wcomma"
#  pragma clang diagnostic ignored "-Wdisabled-macro-expansion"
#endif
/* gcc's TSan does not model atomic_thread_fence and says so at every fence. The
   fences here only order atomic accesses (the sleep/wake handshakes), which TSan
   never reports as races, so the warning would only break -Werror builds. */
#if defined(__SANITIZE_THREAD__) && !defined(__clang__) && __GNUC__ >= 12
#  pragma GCC diagnostic ignored "-Wtsan"
#endif

#if defined(CONCUR_MALLOC) || defined(CONCUR_REALLOC) || defined(CONCUR_FREE)
#  if !defined(CONCUR_MALLOC) || !defined(CONCUR_REALLOC) || !defined(CONCUR_FREE)
#    error "concur.h: define all of CONCUR_MALLOC, CONCUR_REALLOC and CONCUR_FREE, or none"
#  endif
#else
#  include <stdlib.h>
#  define CONCUR_MALLOC(sz) malloc(sz)
#  define CONCUR_REALLOC(p, sz) realloc(p, sz)
#  define CONCUR_FREE(p) free(p)
#endif

#ifndef CONCUR_ASSERT
#  include <assert.h>
#  define CONCUR_ASSERT(c) assert(c)
#endif

/* >>testing: fault injection (CONCUR_TESTING builds only). Every allocation and
   thread creation in the library goes through concur__malloc / concur__thread_start,
   so a test can make the Nth one fail and check that the caller gets a clean error
   and nothing leaks. */
#ifdef CONCUR_TESTING
static long concur__fault_calls[CONCUR_FAULT_KINDS];
static long concur__fault_at[CONCUR_FAULT_KINDS];

CONCUR_API void concur_testing_fail_at(int kind, long nth) {
    if (kind < 0 || kind >= CONCUR_FAULT_KINDS) return;
    long base = __atomic_load_n(&concur__fault_calls[kind], __ATOMIC_SEQ_CST);
    __atomic_store_n(&concur__fault_at[kind], nth > 0 ? base + nth : 0, __ATOMIC_SEQ_CST);
}

CONCUR_API long concur_testing_calls(int kind) {
    if (kind < 0 || kind >= CONCUR_FAULT_KINDS) return -EINVAL;
    return __atomic_load_n(&concur__fault_calls[kind], __ATOMIC_SEQ_CST);
}

static int concur__fault(int kind) {
    long n = __atomic_add_fetch(&concur__fault_calls[kind], 1, __ATOMIC_SEQ_CST);
    return n == __atomic_load_n(&concur__fault_at[kind], __ATOMIC_SEQ_CST);
}

#  if defined(__GNUC__) && !defined(__clang__) /* clang: see the pragma above */
__attribute__((unused)) /* only the process pool calls it */
#  endif
static void concur__fault_disarm(void) {
    for (int k = 0; k < CONCUR_FAULT_KINDS; k++) __atomic_store_n(&concur__fault_at[k], 0, __ATOMIC_SEQ_CST);
}
#  define CONCUR__FAULT(kind) concur__fault(kind)
#else
#  define CONCUR__FAULT(kind) 0
#  define concur__fault_disarm() ((void)0)
#endif
/* Default sizes. CONCUR_TESTING shrinks them so that the paths taken when they run
   out (a full deque runs the task inline, the submission queue grows, the stack cache
   frees, one worker process does everything) run in every test, not only under load. */
#ifdef CONCUR_TESTING
#  define CONCUR__DEQUE_DEFAULT 8u
#  define CONCUR__QUEUE_FIRST 2u
#  define CONCUR__RING_SIZE 4u
#  define CONCUR__STACK_CACHE_DEFAULT 2
#  define CONCUR__PROCS_DEFAULT() 1
#else
#  define CONCUR__DEQUE_DEFAULT 8192u
#  define CONCUR__QUEUE_FIRST 1024u
#  define CONCUR__RING_SIZE 1024u
#  define CONCUR__STACK_CACHE_DEFAULT 256
#  define CONCUR__PROCS_DEFAULT() concur__online_cpus()
#endif
/* Whether to fail this call as if the system had said err (errno is set). */
#define CONCUR__FAULT_ERRNO(kind, err) (CONCUR__FAULT(kind) ? (errno = (err), 1) : 0)

#ifdef CONCUR_DEBUG
#  define CONCUR__CHECK(c) CONCUR_ASSERT(c)
#else
#  define CONCUR__CHECK(c) ((void)0)
#endif

#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#if defined(__GLIBC__) && !defined(__cplusplus) && !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE)
#  error "concur.h: strict ISO C hides the POSIX functions the implementation needs: compile with -pthread, define _POSIX_C_SOURCE=200809L, or include concur.h before any system header in the implementation file"
#endif
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && !defined(CONCUR_NO_FUTEX)
#  define CONCUR__FUTEX 1
#  include <linux/futex.h>
#  include <sys/syscall.h>
#  ifndef __cplusplus
/* Strict -std=c99 hides syscall() (it is a _DEFAULT_SOURCE extension), and a user's
   earlier #include has already fixed the feature macros, so declare it; the
   declaration matches glibc's and musl's. */
long syscall(long number, ...);
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The private helpers are static; in CONCUR_STATIC builds so are the public ones, and
   unused ones must not warn under -Werror (clang: a pragma at the top of the
   implementation says so, because it flags every use of a name marked unused). */
#if defined(__clang__)
#  define CONCUR__PRIVATE static
#  define CONCUR__NORETURN __attribute__((noreturn))
#  define CONCUR__HOT __attribute__((always_inline)) static inline
#  define CONCUR__COLD __attribute__((noinline, cold)) static
#  define CONCUR__LIKELY(x) __builtin_expect(!!(x), 1)
#  define CONCUR__UNLIKELY(x) __builtin_expect(!!(x), 0)
#elif defined(__GNUC__)
#  define CONCUR__PRIVATE __attribute__((unused)) static
#  define CONCUR__NORETURN __attribute__((noreturn))
#  define CONCUR__HOT __attribute__((unused, always_inline)) static inline
#  define CONCUR__COLD __attribute__((unused, noinline, cold)) static
#  define CONCUR__LIKELY(x) __builtin_expect(!!(x), 1)
#  define CONCUR__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define CONCUR__PRIVATE static
#  define CONCUR__NORETURN
#  define CONCUR__HOT static inline
#  define CONCUR__COLD static
#  define CONCUR__LIKELY(x) (x)
#  define CONCUR__UNLIKELY(x) (x)
#endif

#if defined(__cplusplus)
#  define CONCUR__TLS thread_local
#elif defined(__GNUC__) || defined(__clang__)
#  define CONCUR__TLS __thread
#else
#  define CONCUR__TLS _Thread_local
#endif

/* >>platform ---------------------------------------------------------------------- */

/* __atomic builtins rather than <stdatomic.h> so the same code compiles as C99 and as
   C++ (where _Atomic is not available). */
#define concur__load(p, mo) __atomic_load_n((p), __ATOMIC_##mo)
#define concur__store(p, v, mo) __atomic_store_n((p), (v), __ATOMIC_##mo)
#define concur__xchg(p, v, mo) __atomic_exchange_n((p), (v), __ATOMIC_##mo)
#define concur__fetch_add(p, v, mo) __atomic_fetch_add((p), (v), __ATOMIC_##mo)
#define concur__cas(p, expp, v, mo) \
    __atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_##mo, __ATOMIC_RELAXED)

CONCUR__PRIVATE void concur__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#define CONCUR__NS 1000000000LL
/* Deadlines are absolute CLOCK_MONOTONIC nanoseconds; INT64_MAX is "never". */
#define CONCUR__NEVER INT64_MAX

CONCUR__PRIVATE int64_t concur__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CONCUR__NS + ts.tv_nsec;
}

/* Turns a user timeout into a deadline. Returns -EINVAL for NaN; huge timeouts
   saturate to never instead of overflowing. */
CONCUR__PRIVATE int concur__deadline(double timeout, int64_t *deadline) {
    if (timeout != timeout) return -EINVAL;
    if (timeout < 0 || timeout > 1e9) { *deadline = CONCUR__NEVER; return 0; }
    *deadline = concur__now_ns() + (int64_t)(timeout * 1e9);
    return 0;
}

CONCUR__PRIVATE struct timespec concur__timespec(int64_t ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / CONCUR__NS);
    ts.tv_nsec = (long)(ns % CONCUR__NS);
    return ts;
}

/* A poll(2) timeout for a deadline: -1 for never, 0 once passed, else milliseconds
   rounded up (waking early would only spin until the deadline). */
CONCUR__PRIVATE int concur__poll_ms(int64_t deadline) {
    if (deadline == CONCUR__NEVER) return -1;
    int64_t left = deadline - concur__now_ns();
    if (left <= 0) return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

CONCUR__PRIVATE size_t concur__page_size(void) {
    static size_t page; /* every thread computes the same value: racing is harmless */
    size_t got = concur__load(&page, RELAXED);
    if (!got) {
        long p = sysconf(_SC_PAGESIZE);
        got = p > 0 ? (size_t)p : 4096;
        concur__store(&page, got, RELAXED);
    }
    return got;
}

/* Thread parking on an address: wait while *addr == expected, until woken or the
   deadline passes. Spurious returns are allowed; callers loop on their own condition.
   Linux uses the futex directly; elsewhere (or with CONCUR_NO_FUTEX) a hashed table of
   mutex+condvar buckets gives the same contract. */
#ifdef CONCUR__FUTEX
CONCUR__PRIVATE void concur__futex_wait(uint32_t *addr, uint32_t expected, int64_t deadline) {
    if (deadline == CONCUR__NEVER) {
        syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
    } else {
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a wait that is
           interrupted and restarted never stretches the deadline. */
        struct timespec ts = concur__timespec(deadline);
        syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, &ts, NULL,
                FUTEX_BITSET_MATCH_ANY);
    }
}

CONCUR__PRIVATE void concur__futex_wake(uint32_t *addr, int n) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
typedef struct concur__park_bucket {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_once_t once;
} concur__park_bucket;

#define CONCUR__PARK_BUCKETS 64
static concur__park_bucket concur__park_table[CONCUR__PARK_BUCKETS];
static pthread_once_t concur__park_once = PTHREAD_ONCE_INIT;

static void concur__park_table_init(void) {
    for (int i = 0; i < CONCUR__PARK_BUCKETS; i++) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
#if !defined(__APPLE__)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
        pthread_mutex_init(&concur__park_table[i].mutex, NULL);
        pthread_cond_init(&concur__park_table[i].cond, &attr);
        pthread_condattr_destroy(&attr);
    }
}

CONCUR__PRIVATE concur__park_bucket *concur__park_bucket_of(const void *addr) {
    uintptr_t h = (uintptr_t)addr;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ULL;
    pthread_once(&concur__park_once, concur__park_table_init);
    return &concur__park_table[(h >> 7) % CONCUR__PARK_BUCKETS];
}

CONCUR__PRIVATE void concur__futex_wait(uint32_t *addr, uint32_t expected, int64_t deadline) {
    concur__park_bucket *b = concur__park_bucket_of(addr);
    pthread_mutex_lock(&b->mutex);
    /* The waker changes *addr before taking the bucket lock to broadcast, so checking
       under the lock closes the lost-wake-up window. */
    if (concur__load(addr, SEQ_CST) == expected) {
        if (deadline == CONCUR__NEVER) {
            pthread_cond_wait(&b->cond, &b->mutex);
        } else {
            struct timespec ts = concur__timespec(deadline);
            pthread_cond_timedwait(&b->cond, &b->mutex, &ts);
        }
    }
    pthread_mutex_unlock(&b->mutex);
}

CONCUR__PRIVATE void concur__futex_wake(uint32_t *addr, int n) {
    concur__park_bucket *b = concur__park_bucket_of(addr);
    (void)n; /* buckets are shared, so every sleeper must recheck: broadcast */
    pthread_mutex_lock(&b->mutex);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mutex);
}
#endif

CONCUR__PRIVATE void *concur__malloc(size_t size) {
    if (CONCUR__FAULT(CONCUR_FAULT_MALLOC)) return NULL;
    return CONCUR_MALLOC(size);
}

/* pthread_create's result (a positive errno) or 0. */
CONCUR__PRIVATE int concur__thread_start(pthread_t *tid, void *(*fn)(void *), void *arg) {
    if (CONCUR__FAULT(CONCUR_FAULT_THREAD)) return EAGAIN;
    return pthread_create(tid, NULL, fn, arg);
}

/* ---- lock: the futex mutex behind concur_mutex and every internal critical section.
   States: 0 free, 1 locked, 2 locked with (possible) sleepers (Drepper, "Futexes Are
   Tricky", mutex #3). A short spin first: internal critical sections are a few dozen
   instructions, so the holder is usually about to leave. */
enum { CONCUR__LOCK_FREE = 0, CONCUR__LOCK_HELD = 1, CONCUR__LOCK_CONTENDED = 2 };

CONCUR__PRIVATE int concur__lock_try(concur_mutex *m) {
    uint32_t expected = CONCUR__LOCK_FREE;
    return concur__cas(&m->concur__state, &expected, CONCUR__LOCK_HELD, ACQUIRE);
}

/* Slow path; returns 0 or -ETIMEDOUT. */
CONCUR__PRIVATE int concur__lock_slow(concur_mutex *m, int64_t deadline) {
    for (int spin = 0; spin < 100; spin++) {
        if (concur__load(&m->concur__state, RELAXED) == CONCUR__LOCK_FREE && concur__lock_try(m))
            return 0;
        concur__cpu_relax();
    }
    while (concur__xchg(&m->concur__state, CONCUR__LOCK_CONTENDED, ACQUIRE) != CONCUR__LOCK_FREE) {
        if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) return -ETIMEDOUT;
        concur__futex_wait(&m->concur__state, CONCUR__LOCK_CONTENDED, deadline);
    }
    return 0;
}

CONCUR__PRIVATE void concur__lock(concur_mutex *m) {
    if (CONCUR__LIKELY(concur__lock_try(m))) return;
    concur__lock_slow(m, CONCUR__NEVER);
}

CONCUR__PRIVATE void concur__unlock(concur_mutex *m) {
    if (concur__xchg(&m->concur__state, CONCUR__LOCK_FREE, RELEASE) == CONCUR__LOCK_CONTENDED)
        concur__futex_wake(&m->concur__state, 1);
}

/* ---- threads ---------------------------------------------------------------------- */
struct concur_thread { pthread_t tid; };

CONCUR_API concur_thread *concur_thread_create(void *(*fn)(void *), void *arg) {
    if (!fn) { errno = EINVAL; return NULL; }
    concur_thread *t = (concur_thread *)concur__malloc(sizeof *t);
    if (!t) { errno = ENOMEM; return NULL; }
    int rc = concur__thread_start(&t->tid, fn, arg);
    if (rc != 0) { CONCUR_FREE(t); errno = rc; return NULL; }
    return t;
}

CONCUR_API int concur_thread_join(concur_thread *t, void **ret) {
    if (!t) return -EINVAL;
    if (pthread_equal(t->tid, pthread_self())) return -EDEADLK;
    int rc = pthread_join(t->tid, ret);
    if (rc != 0) return -rc;
    CONCUR_FREE(t);
    return 0;
}

CONCUR_API double concur_now(void) { return (double)concur__now_ns() / 1e9; }

CONCUR_API const char *concur_version(void) { return CONCUR_VERSION; }

CONCUR_API const char *concur_strerror(int code) {
    switch (code) {
    case 0: return "success";
    case CONCUR_ECLOSED: return "channel closed";
    case CONCUR_EDONE: return "no more items";
    case CONCUR_EWORKERDIED: return "worker process died";
    case CONCUR_EBROKEN: return "pool is broken (workers keep dying)";
    case CONCUR_ESHUTDOWN: return "shut down";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -ETIMEDOUT: return "timed out";
    case -ECANCELED: return "cancelled";
    case -EPIPE: return "closed for sending";
    case -EBUSY: return "busy";
    case -EALREADY: return "already done";
    case -EAGAIN: return "resource temporarily unavailable";
    case -EDEADLK: return "would deadlock";
    case -EPERM: return "operation not permitted";
    case -EOVERFLOW: return "value too large";
    case -EINPROGRESS: return "not done yet";
    case -EINTR: return "interrupted";
    default: break;
    }
    if (code < 0 && code > -4096) {
        /* glibc's strerror returns static text for every errno it knows. */
        return strerror(-code);
    }
    return "unknown error";
}

/* >>waiter ------------------------------------------------------------------------
   The one waiting mechanism of the library. A blocking primitive puts a waiter (on
   the waiting frame's stack) into its queue under its lock, drops the lock and parks.
   Who parks is decided by the current execution context (concur__sched): a plain
   thread sleeps on the waiter's futex word; a pool worker runs other tasks until the
   word changes; a coroutine switches back to its loop. The primitives never know
   which.

   The state word settles every race between a waker, a timeout and a cancel:
       WAITING --(waker, under the primitive's lock)--> CLAIMED --> NOTIFIED
       WAITING --(timeout / cancel, by the waiting side)--> TIMEDOUT / CANCELED
   A CAS out of WAITING decides who won. A waker that wins (under the primitive's
   lock) fills the hand-off (a channel element, a permit), drops the lock, and only
   then publishes NOTIFIED: a waiter that sees NOTIFIED may return at once and free
   its stack and even the primitive. After publishing, the waker touches only a futex
   address (a stale wake is harmless) or the scheduler's task handle, which it copied
   before. A waiter that loses the race to a waker waits for NOTIFIED; one that wins
   takes the primitive's lock to unlink itself before returning, so a waker holding
   the lock never sees freed memory. Conditions on user-owned primitives (an event's
   flag, a wait group's count) are observed under the lock for the same reason. */

enum {
    CONCUR__W_WAITING = 0,
    CONCUR__W_CLAIMED = 1,
    CONCUR__W_NOTIFIED = 2,
    CONCUR__W_TIMEDOUT = 3,
    CONCUR__W_CANCELED = 4
};

typedef struct concur__sched concur__sched;
struct concur__sched {
    /* Blocks the current task until w->state leaves WAITING/CLAIMED or the deadline
       passes; returns 0 (notified), -ETIMEDOUT, -ECANCELED or -ENOMEM (no memory for
       the deadline's timer), having moved the state itself in the last three cases. */
    int (*park)(concur__sched *self, concur__waiter *w, int64_t deadline);
    /* Makes task runnable again; called once per successful notify, from any thread.
       NULL: the task sleeps on the waiter's futex word like a plain thread. */
    void (*unpark)(concur__sched *self, void *task);
    /* The running task's handle, which a waiter records for unpark. Asked, not kept
       in a thread-local: a loop changes coroutines at every hand-off, and keeping a
       variable up to date there cost a store per switch. */
    void *(*current)(concur__sched *self);
};

struct concur__waiter {
    concur__waiter *next, *prev;
    concur__sched *sched; /* NULL: a plain thread */
    void *task;           /* the sched's handle of the parked task */
    uint32_t state;
    uint32_t linked;
    int result;           /* set by the waker before NOTIFIED */
    void *slot;           /* hand-off buffer (channel element) */
};

/* The execution context of this thread: set by engines while they run a task. */
static CONCUR__TLS concur__sched *concur__cur_sched;

CONCUR__PRIVATE void concur__waiter_init(concur__waiter *w, void *slot) {
    concur__sched *s = concur__cur_sched;
    w->next = w->prev = NULL;
    w->sched = s;
    w->task = s ? s->current(s) : NULL;
    w->state = CONCUR__W_WAITING;
    w->linked = 0;
    w->result = 0;
    w->slot = slot;
}

CONCUR__PRIVATE void concur__wq_push(concur__wq *q, concur__waiter *w) {
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail) q->tail->next = w; else q->head = w;
    q->tail = w;
    w->linked = 1;
}

CONCUR__PRIVATE void concur__wq_remove(concur__wq *q, concur__waiter *w) {
    if (w->prev) w->prev->next = w->next; else q->head = w->next;
    if (w->next) w->next->prev = w->prev; else q->tail = w->prev;
    w->next = w->prev = NULL;
    w->linked = 0;
}

CONCUR__PRIVATE concur__waiter *concur__wq_pop(concur__wq *q) {
    concur__waiter *w = q->head;
    if (w) concur__wq_remove(q, w);
    return w;
}

/* What a waker needs after it published NOTIFIED. The unpark function is copied
   too: a pool worker's scheduler has none, and once NOTIFIED is visible the worker
   may finish and its pool be destroyed, so its scheduler must not be read after. A
   loop's scheduler stays alive: its coroutine is not done until this unpark runs. */
typedef struct concur__wakeup {
    concur__sched *sched;
    void (*unpark)(concur__sched *self, void *task);
    void *task;
    uint32_t *addr;
} concur__wakeup;

/* Under the primitive's lock: claims w for a hand-off. 0 when the waiter already
   timed out or was cancelled; the caller then skips it (it is unlinking itself). */
CONCUR__PRIVATE int concur__waiter_claim(concur__waiter *w) {
    uint32_t expected = CONCUR__W_WAITING;
    return concur__cas(&w->state, &expected, CONCUR__W_CLAIMED, ACQ_REL);
}

/* After a successful claim and after filling the hand-off: publishes the result and
   wakes the waiter. Called after the primitive's lock is dropped: a claimed waiter
   cannot return before NOTIFIED, so w is alive until then, and once NOTIFIED is
   visible the waiter may return and free the primitive itself, which we therefore
   must not touch any more (waiting and then destroying must be safe, as in POSIX). */
CONCUR__PRIVATE void concur__waiter_publish(concur__waiter *w, int result) {
    concur__wakeup k;
    k.sched = w->sched;
    k.unpark = k.sched ? k.sched->unpark : NULL;
    k.task = w->task;
    k.addr = &w->state;
    w->result = result;
    concur__store(&w->state, CONCUR__W_NOTIFIED, RELEASE);
    /* w may be gone from here on: only the copies are used. A futex wake on a dead
       address is at worst a spurious wake-up for whoever lives there now. */
    if (k.unpark) k.unpark(k.sched, k.task);
    else concur__futex_wake(k.addr, 1);
}

/* Claimed waiters collected under the lock and published after it is dropped. The
   chain reuses the waiters' own links (they are off every queue once claimed), so
   any number of them costs no allocation. */
typedef struct concur__wakelist { concur__waiter *head; } concur__wakelist;

CONCUR__PRIVATE void concur__wakelist_add(concur__wakelist *l, concur__waiter *w, int result) {
    w->result = result;
    w->next = l->head;
    l->head = w;
}

CONCUR__PRIVATE void concur__wakelist_fire(concur__wakelist *l) {
    concur__waiter *w = l->head;
    l->head = NULL;
    while (w) {
        concur__waiter *next = w->next; /* read before w may vanish */
        concur__waiter_publish(w, w->result);
        w = next;
    }
}

/* Under the lock: claims the oldest waiter that is still waiting, or NULL. */
CONCUR__PRIVATE concur__waiter *concur__wq_claim_one(concur__wq *q) {
    concur__waiter *w;
    while ((w = concur__wq_pop(q)) != NULL)
        if (concur__waiter_claim(w)) return w;
    return NULL;
}

/* Under the lock: claims every waiter into l with result. */
CONCUR__PRIVATE void concur__wq_claim_all(concur__wq *q, concur__wakelist *l, int result) {
    concur__waiter *w;
    while ((w = concur__wq_claim_one(q)) != NULL) concur__wakelist_add(l, w, result);
}

/* Parks a plain thread: a brief spin (a hand-off often lands within a microsecond),
   then the futex. */
CONCUR__PRIVATE int concur__thread_park(concur__waiter *w, int64_t deadline) {
    for (int spin = 0; spin < 64; spin++) {
        if (concur__load(&w->state, ACQUIRE) == CONCUR__W_NOTIFIED) return 0;
        concur__cpu_relax();
    }
    for (;;) {
        uint32_t s = concur__load(&w->state, ACQUIRE);
        if (s == CONCUR__W_NOTIFIED) return 0;
        if (s == CONCUR__W_WAITING && deadline != CONCUR__NEVER && concur__now_ns() >= deadline) {
            if (concur__cas(&w->state, &s, CONCUR__W_TIMEDOUT, ACQ_REL)) return -ETIMEDOUT;
            continue; /* a waker claimed us meanwhile: wait for its hand-off */
        }
        /* Once claimed, the hand-off is a few instructions away: wait without a
           deadline so a late timeout never abandons it. */
        concur__futex_wait(&w->state, s, s == CONCUR__W_WAITING ? deadline : CONCUR__NEVER);
    }
}

/* Parks in the current context. Returns 0 when notified, -ETIMEDOUT, -ECANCELED. */
CONCUR__PRIVATE int concur__park(concur__waiter *w, int64_t deadline) {
    if (w->sched) return w->sched->park(w->sched, w, deadline);
    return concur__thread_park(w, deadline);
}

/* The whole blocking step of a primitive: called with lock held and w initialised;
   queues w, drops the lock, parks. Returns with the lock NOT held: w->result when
   notified, else -ETIMEDOUT / -ECANCELED with w unlinked. */
CONCUR__PRIVATE int concur__wait_on(concur_mutex *lock, concur__wq *q, concur__waiter *w,
                                    int64_t deadline) {
    concur__wq_push(q, w);
    concur__unlock(lock);
    int rc = concur__park(w, deadline);
    if (rc == 0) return w->result;
    concur__lock(lock);
    if (w->linked) concur__wq_remove(q, w);
    concur__unlock(lock);
    return rc;
}

/* >>sync -------------------------------------------------------------------------- */

CONCUR_API void concur_mutex_init(concur_mutex *m) {
    if (m) m->concur__state = CONCUR__LOCK_FREE;
}

CONCUR_API int concur_mutex_lock(concur_mutex *m) {
    if (!m) return -EINVAL;
    concur__lock(m);
    return 0;
}

CONCUR_API int concur_mutex_trylock(concur_mutex *m) {
    if (!m) return -EINVAL;
    return concur__lock_try(m) ? 0 : -EBUSY;
}

CONCUR_API int concur_mutex_timedlock(concur_mutex *m, double timeout) {
    if (!m) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    if (concur__lock_try(m)) return 0;
    if (timeout == 0) return -ETIMEDOUT;
    return concur__lock_slow(m, deadline);
}

CONCUR_API int concur_mutex_unlock(concur_mutex *m) {
    if (!m) return -EINVAL;
    if (concur__load(&m->concur__state, RELAXED) == CONCUR__LOCK_FREE) {
        CONCUR__CHECK(!"concur_mutex_unlock: mutex is not locked");
        return -EPERM;
    }
    concur__unlock(m);
    return 0;
}

/* ---- semaphore -------------------------------------------------------------------- */

CONCUR_API int concur_sem_init(concur_sem *s, unsigned count) {
    if (!s || count > INT32_MAX) return -EINVAL;
    memset(s, 0, sizeof *s);
    s->concur__count = count;
    return 0;
}

CONCUR_API int concur_sem_destroy(concur_sem *s) {
    if (!s) return -EINVAL;
    concur__lock(&s->concur__lock);
    int busy = s->concur__waiters.head != NULL;
    concur__unlock(&s->concur__lock);
    CONCUR__CHECK(!busy);
    return busy ? -EBUSY : 0;
}

CONCUR_API int concur_sem_acquire(concur_sem *s, double timeout) {
    if (!s) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur__lock(&s->concur__lock);
    /* Only take a free permit when nobody queued before us: first come, first served. */
    if (s->concur__count > 0 && !s->concur__waiters.head) {
        s->concur__count--;
        concur__unlock(&s->concur__lock);
        return 0;
    }
    if (timeout == 0) { concur__unlock(&s->concur__lock); return -ETIMEDOUT; }
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    return concur__wait_on(&s->concur__lock, &s->concur__waiters, &w, deadline);
}

CONCUR_API int concur_sem_release(concur_sem *s, unsigned n) {
    if (!s) return -EINVAL;
    concur__wakelist wl = {NULL};
    concur__lock(&s->concur__lock);
    if ((uint64_t)s->concur__count + n > INT32_MAX) {
        concur__unlock(&s->concur__lock);
        return -EOVERFLOW;
    }
    concur__waiter *w;
    /* Permits go straight to the oldest waiters; waiters that timed out are skipped. */
    while (n > 0 && (w = concur__wq_claim_one(&s->concur__waiters)) != NULL) {
        concur__wakelist_add(&wl, w, 0);
        n--;
    }
    s->concur__count += n;
    concur__unlock(&s->concur__lock);
    concur__wakelist_fire(&wl);
    return 0;
}

CONCUR_API unsigned concur_sem_value(concur_sem *s) {
    if (!s) return 0;
    concur__lock(&s->concur__lock);
    unsigned v = s->concur__count;
    concur__unlock(&s->concur__lock);
    return v;
}

/* ---- event ------------------------------------------------------------------------ */

CONCUR_API int concur_event_init(concur_event *e) {
    if (!e) return -EINVAL;
    memset(e, 0, sizeof *e);
    return 0;
}

CONCUR_API int concur_event_destroy(concur_event *e) {
    if (!e) return -EINVAL;
    concur__lock(&e->concur__lock);
    int busy = e->concur__waiters.head != NULL;
    concur__unlock(&e->concur__lock);
    CONCUR__CHECK(!busy);
    return busy ? -EBUSY : 0;
}

CONCUR_API int concur_event_set(concur_event *e) {
    if (!e) return -EINVAL;
    concur__wakelist wl = {NULL};
    concur__lock(&e->concur__lock);
    e->concur__set = 1;
    concur__wq_claim_all(&e->concur__waiters, &wl, 0);
    concur__unlock(&e->concur__lock);
    concur__wakelist_fire(&wl);
    return 0;
}

CONCUR_API int concur_event_clear(concur_event *e) {
    if (!e) return -EINVAL;
    concur__lock(&e->concur__lock);
    e->concur__set = 0;
    concur__unlock(&e->concur__lock);
    return 0;
}

CONCUR_API int concur_event_is_set(concur_event *e) {
    if (!e) return -EINVAL;
    concur__lock(&e->concur__lock);
    int set = e->concur__set != 0;
    concur__unlock(&e->concur__lock);
    return set;
}

CONCUR_API int concur_event_wait(concur_event *e, double timeout) {
    if (!e) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    /* Observed under the lock only: a waiter that saw the flag without it could return
       and free the event while the setter is still unlocking it. */
    concur__lock(&e->concur__lock);
    if (e->concur__set) { concur__unlock(&e->concur__lock); return 0; }
    if (timeout == 0) { concur__unlock(&e->concur__lock); return -ETIMEDOUT; }
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    return concur__wait_on(&e->concur__lock, &e->concur__waiters, &w, deadline);
}

/* ---- wait group ------------------------------------------------------------------- */

CONCUR_API int concur_wg_init(concur_wg *wg) {
    if (!wg) return -EINVAL;
    memset(wg, 0, sizeof *wg);
    return 0;
}

CONCUR_API int concur_wg_destroy(concur_wg *wg) {
    if (!wg) return -EINVAL;
    concur__lock(&wg->concur__lock);
    int busy = wg->concur__waiters.head != NULL;
    concur__unlock(&wg->concur__lock);
    CONCUR__CHECK(!busy);
    return busy ? -EBUSY : 0;
}

CONCUR_API int concur_wg_add(concur_wg *wg, int64_t delta) {
    if (!wg) return -EINVAL;
    concur__lock(&wg->concur__lock);
    int64_t next = wg->concur__count + delta;
    if (next < 0 || (delta > 0 && next < wg->concur__count)) {
        concur__unlock(&wg->concur__lock);
        CONCUR__CHECK(!"concur_wg_add: count would go negative or overflow");
        return next < 0 ? -EINVAL : -EOVERFLOW;
    }
    concur__wakelist wl = {NULL};
    wg->concur__count = next;
    if (next == 0) concur__wq_claim_all(&wg->concur__waiters, &wl, 0);
    concur__unlock(&wg->concur__lock);
    concur__wakelist_fire(&wl);
    return 0;
}

CONCUR_API int concur_wg_done(concur_wg *wg) { return concur_wg_add(wg, -1); }

CONCUR_API int concur_wg_wait(concur_wg *wg, double timeout) {
    if (!wg) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    /* Checked under the lock for the same reason as concur_event_wait. */
    concur__lock(&wg->concur__lock);
    if (wg->concur__count == 0) { concur__unlock(&wg->concur__lock); return 0; }
    if (timeout == 0) { concur__unlock(&wg->concur__lock); return -ETIMEDOUT; }
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    return concur__wait_on(&wg->concur__lock, &wg->concur__waiters, &w, deadline);
}

/* >>chan ---------------------------------------------------------------------------
   A ring of capacity slots under one lock. Blocked receivers exist only while the
   ring is empty, blocked senders only while it is full; a sender that finds a waiting
   receiver copies straight into the receiver's buffer, and a receiver that frees a
   slot moves the oldest blocked sender's element into the ring, so FIFO order holds
   across the ring and the queue of blocked senders. */

struct concur_chan {
    concur_mutex lock;
    size_t elem_size, cap, head, len;
    int closed;
    concur__wq senders, receivers;
    unsigned char *ring;
};

CONCUR_API concur_chan *concur_chan_create(size_t elem_size, size_t capacity) {
    if (elem_size == 0 || capacity == 0 || capacity > SIZE_MAX / elem_size) {
        errno = EINVAL;
        return NULL;
    }
    concur_chan *ch = (concur_chan *)concur__malloc(sizeof *ch);
    unsigned char *ring = (unsigned char *)concur__malloc(elem_size * capacity);
    if (!ch || !ring) {
        CONCUR_FREE(ch);
        CONCUR_FREE(ring);
        errno = ENOMEM;
        return NULL;
    }
    memset(ch, 0, sizeof *ch);
    ch->elem_size = elem_size;
    ch->cap = capacity;
    ch->ring = ring;
    return ch;
}

CONCUR_API int concur_chan_destroy(concur_chan *ch) {
    if (!ch) return -EINVAL;
    concur__lock(&ch->lock);
    int busy = ch->senders.head || ch->receivers.head;
    concur__unlock(&ch->lock);
    if (busy) {
        CONCUR__CHECK(!"concur_chan_destroy: tasks still blocked on the channel");
        return -EBUSY;
    }
    CONCUR_FREE(ch->ring);
    CONCUR_FREE(ch);
    return 0;
}

CONCUR__PRIVATE unsigned char *concur__chan_slot(concur_chan *ch, size_t i) {
    return ch->ring + ((ch->head + i) % ch->cap) * ch->elem_size;
}

CONCUR_API int concur_chan_send(concur_chan *ch, const void *elem, double timeout) {
    if (!ch || !elem) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur__lock(&ch->lock);
    if (ch->closed) { concur__unlock(&ch->lock); return -EPIPE; }
    concur__waiter *r = concur__wq_claim_one(&ch->receivers);
    if (r) {
        memcpy(r->slot, elem, ch->elem_size);
        concur__unlock(&ch->lock);
        concur__waiter_publish(r, 0);
        return 0;
    }
    if (ch->len < ch->cap) {
        memcpy(concur__chan_slot(ch, ch->len), elem, ch->elem_size);
        ch->len++;
        concur__unlock(&ch->lock);
        return 0;
    }
    if (timeout == 0) { concur__unlock(&ch->lock); return -ETIMEDOUT; }
    concur__waiter w;
    concur__waiter_init(&w, (void *)elem);
    return concur__wait_on(&ch->lock, &ch->senders, &w, deadline);
}

CONCUR_API int concur_chan_recv(concur_chan *ch, void *out, double timeout) {
    if (!ch || !out) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur__lock(&ch->lock);
    if (ch->len > 0) {
        memcpy(out, concur__chan_slot(ch, 0), ch->elem_size);
        ch->head = (ch->head + 1) % ch->cap;
        ch->len--;
        concur__waiter *s = concur__wq_claim_one(&ch->senders);
        if (s) {
            memcpy(concur__chan_slot(ch, ch->len), s->slot, ch->elem_size);
            ch->len++;
        }
        concur__unlock(&ch->lock);
        if (s) concur__waiter_publish(s, 0);
        return 0;
    }
    if (ch->closed) { concur__unlock(&ch->lock); return CONCUR_ECLOSED; }
    if (timeout == 0) { concur__unlock(&ch->lock); return -ETIMEDOUT; }
    concur__waiter w;
    concur__waiter_init(&w, out);
    return concur__wait_on(&ch->lock, &ch->receivers, &w, deadline);
}

CONCUR_API int concur_chan_close(concur_chan *ch) {
    if (!ch) return -EINVAL;
    concur__lock(&ch->lock);
    if (ch->closed) { concur__unlock(&ch->lock); return -EPIPE; }
    concur__wakelist wl = {NULL};
    ch->closed = 1;
    concur__wq_claim_all(&ch->senders, &wl, -EPIPE);
    concur__wq_claim_all(&ch->receivers, &wl, CONCUR_ECLOSED);
    concur__unlock(&ch->lock);
    concur__wakelist_fire(&wl);
    return 0;
}

CONCUR_API size_t concur_chan_len(concur_chan *ch) {
    if (!ch) return 0;
    concur__lock(&ch->lock);
    size_t n = ch->len;
    concur__unlock(&ch->lock);
    return n;
}

CONCUR_API size_t concur_chan_cap(concur_chan *ch) { return ch ? ch->cap : 0; }

/* >>future -------------------------------------------------------------------------
   A future is a lock, a state, an outcome, a queue of parked waiters and a list of
   done-callbacks. Callback nodes are intrusive so that engines and the as-completed
   iterator register them without an allocation each; concur_future_then allocates
   its own. Released futures go to a small cache (a per-thread stash in front of a
   shared one): the engines make one per task, and a cached future also lets a double
   release be caught while its memory lives. */

#define CONCUR__FUTURE_LIVE 0x46757475u  /* "Futu" */
#define CONCUR__FUTURE_DEAD 0xDEADF00Du

enum { CONCUR__F_PENDING = 0, CONCUR__F_RUNNING = 1, CONCUR__F_DONE = 2 };

typedef struct concur__fcb concur__fcb;
struct concur__fcb {
    concur__fcb *next;
    void (*fn)(concur_future *f, concur__fcb *node);
    void *arg;
    concur_future_cb user_fn; /* for concur_future_then */
};

/* Each pair below shares storage because its members live in different phases: what
   a pool task runs is needed only until it completes, its outcome only after; the
   cache link only while the future is free. Keeping the future at 96 bytes matters:
   at 120 bytes, 1e6 submits ran at about half the rate (W2). */
struct concur_future {
    uint32_t magic;
    uint32_t state;
    int32_t refs;
    int error;
    uint16_t cancelled;
    uint16_t bytes_shared; /* bytes live in a process-pool segment, nu.shared_seg */
    /* Process pool: while pending, minus the microseconds a waiting thread may spin;
       once failed with CONCUR_EWORKERDIED, the dead worker's wait status + 1 (0 when
       unknown). */
    int detail;
    union { void *value; void *task_arg; } vu;
    union { void *bytes; void *(*task_fn)(void *); } bu;
    size_t bytes_len;
    concur_mutex lock;
    concur__wq waiters;
    concur__fcb *cb_head, *cb_tail;
    /* A pool task's pool, so that a worker of that pool which waits on the future
       while it is pending can run the task right there. */
    union { concur_future *next_free; void *task_pool; void *shared_seg; } nu;
};

/* Set by the process pool: gives a result segment back when its future goes. */
static void (*concur__future_seg_release)(void *seg);

#define CONCUR__FUTURE_CACHE_MAX 1024
static concur_mutex concur__future_cache_lock = CONCUR_MUTEX_INIT;
static concur_future *concur__future_cache;
static unsigned concur__future_cache_len;

/* Each thread keeps a small stash of free futures in front of the shared cache, so
   that a submitter making a future per task takes no lock per task: the shared
   cache's lock and unlock were a fifth of W2's submit. A thread that exits gives its
   stash back (a key destructor); the stash refills and spills in batches. */
#define CONCUR__FUTURE_STASH_MAX 64
#define CONCUR__FUTURE_BATCH 32
static CONCUR__TLS concur_future *concur__stash;
static CONCUR__TLS unsigned concur__stash_len;
static CONCUR__TLS int concur__stash_keyed;
static pthread_key_t concur__stash_key;
static int concur__stash_key_ok;
static pthread_once_t concur__stash_once = PTHREAD_ONCE_INIT;

/* At thread exit: the stash goes to the shared cache, what does not fit to malloc. */
CONCUR__PRIVATE void concur__stash_flush(void *unused) {
    (void)unused;
    concur__lock(&concur__future_cache_lock);
    while (concur__stash && concur__future_cache_len < CONCUR__FUTURE_CACHE_MAX) {
        concur_future *f = concur__stash;
        concur__stash = f->nu.next_free;
        f->nu.next_free = concur__future_cache;
        concur__store(&concur__future_cache, f, RELAXED);
        concur__future_cache_len++;
    }
    concur__unlock(&concur__future_cache_lock);
    while (concur__stash) {
        concur_future *f = concur__stash;
        concur__stash = f->nu.next_free;
        CONCUR_FREE(f);
    }
    concur__stash_len = 0;
    concur__stash_keyed = 0;
}

CONCUR__PRIVATE void concur__stash_key_init(void) {
    concur__stash_key_ok = pthread_key_create(&concur__stash_key, concur__stash_flush) == 0;
}

/* 1 when this thread's stash is given back at its exit (and may hold futures). */
CONCUR__PRIVATE int concur__stash_usable(void) {
    if (CONCUR__LIKELY(concur__stash_keyed)) return 1;
    pthread_once(&concur__stash_once, concur__stash_key_init);
    if (!concur__stash_key_ok || pthread_setspecific(concur__stash_key, (void *)1) != 0) return 0;
    concur__stash_keyed = 1;
    return 1;
}

CONCUR__PRIVATE int concur__future_ok(concur_future *f) {
    if (!f) return 0;
    if (f->magic != CONCUR__FUTURE_LIVE) {
        CONCUR__CHECK(!"concur_future: released or invalid handle");
        return 0;
    }
    return 1;
}

CONCUR_API concur_future *concur_future_create(void) {
    concur_future *f = concur__stash;
    if (f) {
        concur__stash = f->nu.next_free;
        concur__stash_len--;
    } else if (concur__load(&concur__future_cache, RELAXED)) {
        /* One trip to the shared cache: one future for now, a batch for later. */
        int stash = concur__stash_usable();
        concur__lock(&concur__future_cache_lock);
        if ((f = concur__future_cache) != NULL) {
            concur__store(&concur__future_cache, f->nu.next_free, RELAXED);
            concur__future_cache_len--;
        }
        while (stash && concur__future_cache && concur__stash_len < CONCUR__FUTURE_BATCH) {
            concur_future *g = concur__future_cache;
            concur__store(&concur__future_cache, g->nu.next_free, RELAXED);
            concur__future_cache_len--;
            g->nu.next_free = concur__stash;
            concur__stash = g;
            concur__stash_len++;
        }
        concur__unlock(&concur__future_cache_lock);
    }
    if (!f) {
        f = (concur_future *)concur__malloc(sizeof *f);
        if (!f) { errno = ENOMEM; return NULL; }
    }
    memset(f, 0, sizeof *f);
    f->refs = 1;
    concur__store(&f->magic, CONCUR__FUTURE_LIVE, RELEASE);
    return f;
}

CONCUR_API concur_future *concur_future_retain(concur_future *f) {
    if (!concur__future_ok(f)) return NULL;
    concur__fetch_add(&f->refs, 1, RELAXED);
    return f;
}

CONCUR__PRIVATE void concur__future_free(concur_future *f) {
    /* Before completion the slot holds a pool task's function, not bytes. */
    if (concur__load(&f->state, ACQUIRE) == CONCUR__F_DONE && f->bu.bytes) {
        if (f->bytes_shared) concur__future_seg_release(f->nu.shared_seg);
        else CONCUR_FREE(f->bu.bytes);
    }
    f->bu.bytes = NULL;
    /* Callbacks never registered because the future never completed (an engine that
       dropped it) still own their nodes' memory only if they came from
       concur_future_then. */
    concur__fcb *cb = f->cb_head;
    while (cb) {
        concur__fcb *next = cb->next;
        if (cb->user_fn) CONCUR_FREE(cb);
        cb = next;
    }
    f->magic = CONCUR__FUTURE_DEAD;
    if (concur__stash_len < CONCUR__FUTURE_STASH_MAX && concur__stash_usable()) {
        f->nu.next_free = concur__stash;
        concur__stash = f;
        concur__stash_len++;
        return;
    }
    /* A full stash: f and all but a batch of the stash go to the shared cache in one
       trip, for threads that create more futures than they free (a submitter whose
       futures a worker frees last). When the cache is full too, only f goes back to
       malloc, in the order the program releases its futures: freeing stash batches
       instead (newest first) laid the next million futures out so that W2 ran at
       7.9 M tasks/s against 13.8 M (medians of 8 alternating invocations). */
    concur__lock(&concur__future_cache_lock);
    while (f && concur__future_cache_len < CONCUR__FUTURE_CACHE_MAX) {
        f->nu.next_free = concur__future_cache;
        concur__store(&concur__future_cache, f, RELAXED);
        concur__future_cache_len++;
        f = NULL;
        if (concur__stash_len > CONCUR__FUTURE_BATCH) {
            f = concur__stash;
            concur__stash = f->nu.next_free;
            concur__stash_len--;
        }
    }
    concur__unlock(&concur__future_cache_lock);
    if (f) CONCUR_FREE(f);
}

CONCUR_API int concur_future_release(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    int32_t before = concur__fetch_add(&f->refs, -1, ACQ_REL);
    if (before <= 0) {
        CONCUR__CHECK(!"concur_future_release: too many releases");
        return -EINVAL;
    }
    if (before == 1) concur__future_free(f);
    return 0;
}

/* Completes f with one outcome. Takes ownership of bytes (freed with CONCUR_FREE). */
CONCUR__PRIVATE int concur__future_complete(concur_future *f, void *value, int error, void *bytes,
                                            size_t bytes_len, int cancel) {
    concur__lock(&f->lock);
    uint32_t st = concur__load(&f->state, RELAXED);
    int rc = 0;
    if (st == CONCUR__F_DONE) rc = f->cancelled && cancel ? 0 : -EALREADY;
    else if (cancel && st == CONCUR__F_RUNNING) rc = -EBUSY;
    if (st == CONCUR__F_DONE || rc) {
        concur__unlock(&f->lock);
        if (bytes) CONCUR_FREE(bytes);
        return rc;
    }
    f->vu.value = value;
    f->error = error;
    f->bu.bytes = bytes;
    f->bytes_len = bytes_len;
    f->cancelled = (uint16_t)cancel;
    if (cancel) {
        /* set_running moves PENDING to RUNNING without the lock: a CAS decides. */
        uint32_t expected = CONCUR__F_PENDING;
        if (!concur__cas(&f->state, &expected, CONCUR__F_DONE, RELEASE)) {
            f->error = 0;
            f->cancelled = 0;
            concur__unlock(&f->lock);
            return -EBUSY;
        }
    } else {
        concur__store(&f->state, CONCUR__F_DONE, RELEASE);
    }
    concur__wakelist wl = {NULL};
    concur__wq_claim_all(&f->waiters, &wl, 0);
    concur__fcb *cb = f->cb_head;
    f->cb_head = f->cb_tail = NULL;
    concur__unlock(&f->lock);
    concur__wakelist_fire(&wl);
    while (cb) {
        concur__fcb *next = cb->next; /* the node may be freed by its callback */
        cb->fn(f, cb);
        cb = next;
    }
    return 0;
}

CONCUR_API int concur_future_set_running(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    /* Lock-free: every submitted task passes here, and only cancel competes. */
    uint32_t expected = CONCUR__F_PENDING;
    if (__atomic_compare_exchange_n(&f->state, &expected, CONCUR__F_RUNNING, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_ACQUIRE))
        return 0;
    return expected == CONCUR__F_DONE && f->cancelled ? -ECANCELED : -EINVAL;
}

CONCUR_API int concur_future_set_value(concur_future *f, void *value) {
    if (!concur__future_ok(f)) return -EINVAL;
    return concur__future_complete(f, value, 0, NULL, 0, 0);
}

CONCUR_API int concur_future_set_error(concur_future *f, int err) {
    if (!concur__future_ok(f) || err >= 0) return -EINVAL;
    return concur__future_complete(f, NULL, err, NULL, 0, 0);
}

CONCUR_API int concur_future_set_bytes(concur_future *f, const void *bytes, size_t len) {
    if (!concur__future_ok(f) || (!bytes && len)) return -EINVAL;
    void *copy = concur__malloc(len ? len : 1);
    if (!copy) return -ENOMEM;
    if (len) memcpy(copy, bytes, len);
    return concur__future_complete(f, NULL, 0, copy, len, 0);
}

CONCUR_API int concur_future_cancel(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    return concur__future_complete(f, NULL, -ECANCELED, NULL, 0, 1);
}

CONCUR__PRIVATE int concur__future_is_done(concur_future *f) {
    return concur__load(&f->state, ACQUIRE) == CONCUR__F_DONE;
}

/* Set by the pool section: runs a pending submitted task inline when the waiting
   thread is a worker of its pool. Returns 1 when it ran (and completed) it. */
static int (*concur__future_run_inline)(concur_future *f);

#ifndef CONCUR_NO_PROCESS
/* Process-pool tasks submitted and not yet finished, in all pools, and the CPUs. */
static uint32_t concur__proc_pending;
static uint32_t concur__proc_cpus;
#  define CONCUR__PROC_CPU_SPARE() (concur__load(&concur__proc_pending, RELAXED) < concur__proc_cpus)
#else
#  define CONCUR__PROC_CPU_SPARE() 0
#endif

CONCUR__PRIVATE int concur__future_wait_deadline(concur_future *f, int64_t deadline) {
    if (concur__future_is_done(f)) return 0;
    /* Atomic: the process pool stores its result segment in this slot while a waiter
       may be looking (it never matches a thread pool, so the value is harmless). */
    if (concur__load(&f->nu.task_pool, RELAXED)) {
        int (*run_inline)(concur_future *) = concur__load(&concur__future_run_inline, ACQUIRE);
        if (run_inline && run_inline(f)) return 0;
    }
    int spin_us = -concur__load(&f->detail, RELAXED);
    if (spin_us > 0 && !concur__cur_sched && CONCUR__PROC_CPU_SPARE()) {
        /* A process task's result takes two wake-ups to get here (worker to pool
           thread to us). A thread that keeps its CPU for a short while saves the
           second one, which on a VM costs tens of microseconds. Only while a CPU is
           to spare: with as many tasks under way as CPUs (a map), the spin would
           take a CPU from a worker (a map of 1e5 items ran 5-25 % slower). */
        int64_t until = concur__now_ns() + (int64_t)spin_us * 1000;
        if (until > deadline) until = deadline;
        do {
            for (int i = 0; i < 64; i++) {
                if (concur__future_is_done(f)) return 0;
                concur__cpu_relax();
            }
        } while (concur__now_ns() < until);
    }
    concur__lock(&f->lock);
    if (concur__future_is_done(f)) { concur__unlock(&f->lock); return 0; }
    if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) {
        concur__unlock(&f->lock);
        return -ETIMEDOUT;
    }
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    return concur__wait_on(&f->lock, &f->waiters, &w, deadline);
}

CONCUR_API int concur_future_wait(concur_future *f, double timeout) {
    if (!concur__future_ok(f)) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    return concur__future_wait_deadline(f, deadline);
}

CONCUR_API int concur_future_result(concur_future *f, double timeout, void **value) {
    int rc = concur_future_wait(f, timeout);
    if (value) *value = NULL;
    if (rc) return rc;
    if (value) *value = f->vu.value;
    return f->error;
}

CONCUR_API int concur_future_done(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    return concur__future_is_done(f);
}

CONCUR_API int concur_future_cancelled(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    return concur__future_is_done(f) && f->cancelled;
}

CONCUR_API void *concur_future_value(concur_future *f) {
    if (!concur__future_ok(f) || !concur__future_is_done(f)) return NULL;
    return f->vu.value;
}

CONCUR_API int concur_future_error(concur_future *f) {
    if (!concur__future_ok(f)) return -EINVAL;
    if (!concur__future_is_done(f)) return -EINPROGRESS;
    return f->error;
}

CONCUR_API const void *concur_future_bytes(concur_future *f, size_t *len) {
    if (len) *len = 0;
    if (!concur__future_ok(f) || !concur__future_is_done(f)) return NULL;
    if (len) *len = f->bytes_len;
    return f->bu.bytes;
}

/* Registers node; runs it at once (returning 1) when f is already done. */
CONCUR__PRIVATE int concur__future_add_callback(concur_future *f, concur__fcb *node) {
    node->next = NULL;
    concur__lock(&f->lock);
    if (!concur__future_is_done(f)) {
        if (f->cb_tail) f->cb_tail->next = node; else f->cb_head = node;
        f->cb_tail = node;
        concur__unlock(&f->lock);
        return 0;
    }
    concur__unlock(&f->lock);
    node->fn(f, node);
    return 1;
}

/* Unregisters node; 0 when it was no longer registered (it has run or is running). */
CONCUR__PRIVATE int concur__future_remove_callback(concur_future *f, concur__fcb *node) {
    int found = 0;
    concur__lock(&f->lock);
    concur__fcb *prev = NULL;
    for (concur__fcb *cb = f->cb_head; cb; prev = cb, cb = cb->next) {
        if (cb != node) continue;
        if (prev) prev->next = cb->next; else f->cb_head = cb->next;
        if (f->cb_tail == cb) f->cb_tail = prev;
        found = 1;
        break;
    }
    concur__unlock(&f->lock);
    return found;
}

CONCUR__PRIVATE void concur__then_trampoline(concur_future *f, concur__fcb *node) {
    concur_future_cb fn = node->user_fn;
    void *arg = node->arg;
    CONCUR_FREE(node);
    fn(f, arg);
}

CONCUR_API int concur_future_then(concur_future *f, concur_future_cb cb, void *arg) {
    if (!concur__future_ok(f) || !cb) return -EINVAL;
    concur__fcb *node = (concur__fcb *)concur__malloc(sizeof *node);
    if (!node) return -ENOMEM;
    node->fn = concur__then_trampoline;
    node->user_fn = cb;
    node->arg = arg;
    concur__future_add_callback(f, node);
    return 0;
}

CONCUR_API int concur_wait_all(concur_future *const *fs, size_t n, double timeout) {
    if (!fs && n) return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!concur__future_ok(fs[i])) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        rc = concur__future_wait_deadline(fs[i], deadline);
        if (rc) return rc;
    }
    return 0;
}

/* ---- as-completed -----------------------------------------------------------------
   One callback node per future pushes its index onto a ready ring and wakes the
   consumer. The iterator is reference counted by its registered nodes, so a callback
   that is already running when the user destroys the iterator still finds it alive. */

struct concur_as_completed {
    concur_mutex lock;
    int32_t refs;
    uint32_t n, yielded, ready_head, ready_len;
    concur__wq waiters;
    concur_future **fs;
    concur__fcb *nodes;
    uint32_t *ready;
};

CONCUR__PRIVATE void concur__as_completed_unref(concur_as_completed *it) {
    if (concur__fetch_add(&it->refs, -1, ACQ_REL) != 1) return;
    CONCUR_FREE(it->fs);
    CONCUR_FREE(it->nodes);
    CONCUR_FREE(it->ready);
    CONCUR_FREE(it);
}

CONCUR__PRIVATE void concur__as_completed_cb(concur_future *f, concur__fcb *node) {
    concur_as_completed *it = (concur_as_completed *)node->arg;
    (void)f;
    concur__lock(&it->lock);
    it->ready[(it->ready_head + it->ready_len) % it->n] = (uint32_t)(node - it->nodes);
    it->ready_len++;
    concur__waiter *w = concur__wq_claim_one(&it->waiters);
    concur__unlock(&it->lock);
    if (w) concur__waiter_publish(w, 0);
    concur__as_completed_unref(it);
}

CONCUR_API concur_as_completed *concur_as_completed_create(concur_future *const *fs, size_t n) {
    if ((!fs && n) || n > INT32_MAX - 1) { errno = EINVAL; return NULL; }
    for (size_t i = 0; i < n; i++)
        if (!concur__future_ok(fs[i])) { errno = EINVAL; return NULL; }
    concur_as_completed *it = (concur_as_completed *)concur__malloc(sizeof *it);
    if (!it) { errno = ENOMEM; return NULL; }
    memset(it, 0, sizeof *it);
    size_t slots = n ? n : 1;
    it->fs = (concur_future **)concur__malloc(slots * sizeof *it->fs);
    it->nodes = (concur__fcb *)concur__malloc(slots * sizeof *it->nodes);
    it->ready = (uint32_t *)concur__malloc(slots * sizeof *it->ready);
    if (!it->fs || !it->nodes || !it->ready) {
        CONCUR_FREE(it->fs);
        CONCUR_FREE(it->nodes);
        CONCUR_FREE(it->ready);
        CONCUR_FREE(it);
        errno = ENOMEM;
        return NULL;
    }
    it->n = (uint32_t)n;
    it->refs = (int32_t)n + 1;
    for (size_t i = 0; i < n; i++) {
        it->fs[i] = concur_future_retain(fs[i]);
        it->nodes[i].fn = concur__as_completed_cb;
        it->nodes[i].arg = it;
        it->nodes[i].user_fn = NULL;
    }
    /* Register only after every node is initialised: a callback may fire at once. */
    for (size_t i = 0; i < n; i++) concur__future_add_callback(it->fs[i], &it->nodes[i]);
    return it;
}

CONCUR_API int concur_as_completed_next(concur_as_completed *it, double timeout) {
    if (!it) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur__lock(&it->lock);
    for (;;) {
        if (it->ready_len > 0) {
            uint32_t idx = it->ready[it->ready_head];
            it->ready_head = (it->ready_head + 1) % it->n;
            it->ready_len--;
            it->yielded++;
            concur__unlock(&it->lock);
            return (int)idx;
        }
        if (it->yielded == it->n) { concur__unlock(&it->lock); return CONCUR_EDONE; }
        if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) {
            concur__unlock(&it->lock);
            return -ETIMEDOUT;
        }
        concur__waiter w;
        concur__waiter_init(&w, NULL);
        rc = concur__wait_on(&it->lock, &it->waiters, &w, deadline);
        if (rc) return rc;
        concur__lock(&it->lock);
    }
}

CONCUR_API void concur_as_completed_destroy(concur_as_completed *it) {
    if (!it) return;
    for (uint32_t i = 0; i < it->n; i++) {
        /* A node still registered will never run now: drop the reference it held. */
        if (concur__future_remove_callback(it->fs[i], &it->nodes[i])) concur__as_completed_unref(it);
        concur_future_release(it->fs[i]);
    }
    concur__as_completed_unref(it);
}

CONCUR_API int concur_wait_any(concur_future *const *fs, size_t n, double timeout) {
    if (!fs || n == 0 || timeout != timeout) return -EINVAL;
    /* Cheap scan first: the common case is that one is already done. */
    for (size_t i = 0; i < n; i++) {
        if (!concur__future_ok(fs[i])) return -EINVAL;
        if (concur__future_is_done(fs[i])) return (int)i;
    }
    if (n > INT32_MAX - 1) return -EINVAL;
    concur_as_completed *it = concur_as_completed_create(fs, n);
    if (!it) return -errno;
    int rc = concur_as_completed_next(it, timeout);
    concur_as_completed_destroy(it);
    return rc;
}

/* >>pool ---------------------------------------------------------------------------
   Each worker owns a split deque in the style of Lace (van Dijk & van de Pol, 2014):
   an array of task records used as a stack by its owner. Records at positions
   [split, head) are private: the owner pushes and pops them with plain loads and
   stores, no atomic operation and no fence, which is what makes a spawn cost a few
   nanoseconds. Records in [tail, split) are shared: thieves take the oldest one by a
   CAS on the packed (tail, split) word. Thieves that find nothing shared set
   `movesplit`, and the owner's next spawn makes half of its private records shared;
   an owner that needs a shared record back moves the split down with a CAS, so a
   record is taken by exactly one side. A thief runs the record in place, in the
   owner's array, and marks it done; an owner that joins a stolen record steals from
   that thief meanwhile (leapfrogging), so it only ever stacks work that its own
   child produced on top of the waiting frame.

   Work from outside threads (submit, spawns into a foreign group) goes through one
   injection queue (a lock-free ring, with a locked overflow queue behind it); a worker
   moves a batch of it onto its deque as shared records, so other workers can still
   steal a batch that one worker took.

   Idle workers look for work for spin_us, then sleep on the pool's futex word. The
   sleep/wake protocol: a sleeper reads wake_seq, increments `sleepers`, issues a
   seq_cst fence and looks for work once more before futex-waiting on that wake_seq;
   a submitter publishes its task, issues a seq_cst fence, and bumps wake_seq and
   wakes one sleeper when `sleepers` is nonzero. One of the two always sees the other.
   Spawns only hint (a relaxed load, no fence): a missed hint costs parallelism, never
   a task, because the spawner joins its own children. A woken worker that finds work
   wakes the next one while more is visible: a cascade, not a thundering herd. */

#include <sched.h>
#include <sys/prctl.h>

enum {
    CONCUR__REC_SPAWN = 0,   /* ctx = group, joined by position */
    CONCUR__REC_TRACKED = 1, /* ctx = group, counted in its remote wait group */
    CONCUR__REC_SUBMIT = 2,  /* ctx = future */
    CONCUR__REC_KIND = 3
};

typedef void (*concur__fnptr)(void);

typedef struct concur__worker concur__worker;
struct concur__worker {
    concur__fj fj; /* first: the deque, which typed tasks reach from the header */
    void *dq_mem;  /* fj.dq before alignment */
    uint32_t help_depth;
    concur_pool *pool;
    int index;
    uint64_t rng;
    concur__sched sched;
    pthread_t tid;
    int started;
    char pad1[64];
};

/* The deque's head and split as indices; fj keeps them as record addresses. */
static inline uint32_t concur__dq_head(const concur__worker *w) {
    return (uint32_t)((w->fj.top - (uintptr_t)w->fj.dq) / sizeof(concur__rec));
}
static inline void concur__dq_set_head(concur__worker *w, uint32_t h) {
    w->fj.top = (uintptr_t)(w->fj.dq + h);
}
static inline uint32_t concur__dq_split(const concur__worker *w) {
    return (uint32_t)((w->fj.split_at - (uintptr_t)w->fj.dq) / sizeof(concur__rec));
}
static inline void concur__dq_set_split(concur__worker *w, uint32_t s) {
    w->fj.split_at = (uintptr_t)(w->fj.dq + s);
}

/* A slot of the submission ring: seq says whose turn the slot is (see concur__ring_put).
   ctx is 64-bit so that on 32-bit targets seq stays 8-aligned in a 64-aligned ring. */
typedef struct concur__rslot {
    uint64_t seq CONCUR__ATOMIC64;
    uint64_t ctx;
    concur__fnptr fn;
    void *arg;
} concur__rslot;
#define CONCUR__RING_CLOSED (1ull << 63) /* in ring_put: shut down, no more slots */

struct concur_pool {
    int nworkers;
    concur__worker *workers;
    void *workers_mem;
    /* Submissions first go to a lock-free ring; when it is full, to the overflow
       queue under qlock, and while the overflow holds anything, there too, so that
       tasks still start in submission order. A lock here put the submitter behind
       every worker that took a task, and behind one preempted holding it. */
    concur__rslot *ring;
    void *ring_mem;
    char padr0[64];
    uint64_t ring_put CONCUR__ATOMIC64;  /* next slot a submitter claims, | CONCUR__RING_CLOSED */
    char padr1[64];
    uint64_t ring_take CONCUR__ATOMIC64; /* next slot a worker takes */
    char padr2[64];
    /* The overflow queue: a growing ring of records under a lock. */
    concur_mutex qlock;
    concur__rec *q;
    uint32_t qcap, qhead;
    /* Idle workers and every submit read qlen: on its own line, their reads leave
       the lock's line with whoever fills the overflow. */
    char padq0[64];
    uint32_t qlen; /* written under qlock, read without it as a hint */
    char padq1[64];
    uint32_t shut; /* no more submits (written under qlock) */
    uint32_t stop; /* workers exit once the queue is empty */
    char pad0[64];
    uint32_t wake_seq, sleepers, waking;
    char pad1[64];
    concur_mutex shutdown_lock;
    int joined;
    int64_t spin_ns;
    char name[16];
    void (*on_start)(int, void *);
    void *user;
};

static CONCUR__TLS concur__worker *concur__cur_worker;
/* The record being run on this thread (group or future | kind), for concur_task_fail,
   and the error a submitted task reported. */
static CONCUR__TLS uintptr_t concur__cur_ctx;
static CONCUR__TLS int32_t concur__submit_err;

#define CONCUR__TS(tail, split) (((uint64_t)(split) << 32) | (uint64_t)(tail))
#define CONCUR__TS_TAIL(v) ((uint32_t)(v))
#define CONCUR__TS_SPLIT(v) ((uint32_t)((v) >> 32))

CONCUR__PRIVATE uint32_t concur__rand(concur__worker *w) {
    /* xorshift64*: victim choice needs speed, not quality */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- waking ---- */

CONCUR__PRIVATE void concur__pool_wake(concur_pool *p, int n) {
    concur__fetch_add(&p->wake_seq, 1, RELEASE);
    concur__futex_wake(&p->wake_seq, n);
}

/* After work became visible to others. `fenced` callers (submissions: nobody else
   would run their task) issue the seq_cst fence of the protocol; hints from spawns
   do not, and only save parallelism.

   At most one wake-up is in flight (`waking`): without that, while a sleeper takes
   its tens of microseconds to wake, every submission would pay a futex syscall. No
   wake-up is lost by skipping: every entry to and exit from concur__worker_sleep
   clears `waking`, then fences, then looks for work, while a submitter publishes,
   fences, then reads `waking`. If the submitter still read 1, the worker's search
   sees the task; and a gate left set by a wake-up that found no sleeper is cleared
   by the next worker that heads for sleep. */
CONCUR__PRIVATE void concur__pool_notify(concur_pool *p, int fenced) {
    if (fenced) __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* seq_cst: after a seq_cst claim of a ring slot this load is the other half of
       the handshake with concur__worker_sleep, without a fence (an mfence per submit
       on x86, where the claim's locked instruction already orders it). */
    if (CONCUR__LIKELY(concur__load(&p->sleepers, SEQ_CST) == 0)) return;
    uint32_t expected = 0;
    if (concur__load(&p->waking, RELAXED) || !concur__cas(&p->waking, &expected, 1, RELAXED)) return;
    concur__pool_wake(p, 1);
}

/* ---- running a record ---- */

CONCUR__PRIVATE void concur__group_record_error(concur_group *g, int err) {
    int32_t expected = 0;
    concur__cas(&g->concur__error, &expected, err, RELAXED);
}

CONCUR__HOT void concur__dq_sync_top(concur__worker *w);

CONCUR__COLD void concur__drain(concur__worker *w, uintptr_t top0) {
    while (w->fj.top > top0) concur__dq_sync_top(w);
}

/* Runs a submitted task whose future the caller has just moved to RUNNING. */
CONCUR__PRIVATE void concur__run_claimed(concur_future *f, concur__fnptr fn, void *arg) {
    uintptr_t saved_ctx = concur__cur_ctx;
    int32_t saved_err = concur__submit_err;
    concur__cur_ctx = (uintptr_t)f | CONCUR__REC_SUBMIT;
    concur__submit_err = 0;
    void *value = ((concur_task_fn)fn)(arg);
    int32_t err = concur__submit_err;
    concur__cur_ctx = saved_ctx;
    concur__submit_err = saved_err;
    if (err) concur_future_set_error(f, err);
    else concur_future_set_value(f, value);
}

CONCUR__COLD void concur__run_submit(concur__worker *w, concur__fnptr fn, void *arg, uintptr_t ctx) {
    uintptr_t top0 = w->fj.top;
    concur_future *f = (concur_future *)(ctx & ~(uintptr_t)CONCUR__REC_KIND);
    /* Fails when the task was cancelled, or already run by a worker waiting on it. */
    if (concur_future_set_running(f) == 0) concur__run_claimed(f, fn, arg);
    concur_future_release(f); /* the pool's reference */
    if (w->fj.top > top0) concur__drain(w, top0);
}

/* A worker waiting on a pending task of its own pool runs it inline (ForkJoinPool's
   join does the same): that task may be queued behind other tasks that block, or in
   a batch on a worker that is itself waiting, and helping with unrelated tasks until
   it surfaces can exhaust every worker. The claim is the same CAS that decides
   against cancel, so the task still runs exactly once: the queued record finds the
   future no longer pending and is skipped. */
CONCUR__PRIVATE int concur__pool_run_inline(concur_future *f) {
    concur__worker *w = concur__cur_worker;
    if (!w || (void *)w->pool != f->nu.task_pool) return 0;
    /* Claim before reading the task: once the future is claimed nobody else runs it
       or writes its outcome, which shares storage with the task's function and
       argument. */
    if (concur_future_set_running(f) != 0) return 0;
    concur__fnptr fn = (concur__fnptr)f->bu.task_fn;
    void *arg = f->vu.task_arg;
    uintptr_t top0 = w->fj.top;
    concur__run_claimed(f, fn, arg);
    if (w->fj.top > top0) concur__drain(w, top0);
    return 1;
}

/* Runs one task on w. Afterwards it joins whatever the task left on w's deque (a task
   may spawn into another task's group and return without joining). */
CONCUR__HOT void concur__run(concur__worker *w, concur__fnptr fn, void *arg, uintptr_t ctx) {
    unsigned kind = (unsigned)(ctx & CONCUR__REC_KIND);
    if (CONCUR__UNLIKELY(kind == CONCUR__REC_SUBMIT)) {
        concur__run_submit(w, fn, arg, ctx);
        return;
    }
    uintptr_t top0 = w->fj.top;
    uintptr_t saved = concur__cur_ctx;
    concur__cur_ctx = ctx;
    ((void (*)(void *))fn)(arg);
    concur__cur_ctx = saved;
    if (CONCUR__UNLIKELY(w->fj.top > top0)) concur__drain(w, top0);
    /* Last: the group's owner may return (and the group vanish) right after. */
    if (CONCUR__UNLIKELY(kind == CONCUR__REC_TRACKED)) {
        concur_group *g = (concur_group *)(ctx & ~(uintptr_t)CONCUR__REC_KIND);
        concur_wg_done(&g->concur__remote);
    }
}

/* ---- the split deque ---- */

/* Owner: makes about half of the private records shared, on a thief's request. */
CONCUR__PRIVATE void concur__dq_grow_split(concur__worker *w) {
    concur__store(&w->fj.movesplit, 0, RELAXED);
    uint32_t h = concur__dq_head(w), s = concur__dq_split(w);
    if (h <= s) return;
    uint32_t ns = s + (h - s + 1) / 2;
    uint64_t old = concur__load(&w->fj.ts, RELAXED);
    /* Thieves may move tail meanwhile; split is only ever changed by us. */
    while (!concur__cas(&w->fj.ts, &old, CONCUR__TS(CONCUR__TS_TAIL(old), ns), RELEASE)) {}
    concur__dq_set_split(w, ns);
    concur__pool_notify(w->pool, 0);
}

/* Owner, after pushing record h while thieves asked for work, took everything, or
   slept. A sleeping worker never asks for work, so without a hint here it could
   sleep through a whole fork-join computation (seen: one run in twelve ran on one
   worker). The hint is gated: at most one wake-up in flight. */
CONCUR__COLD void concur__dq_push_slow(concur__worker *w, uint32_t h) {
    if (concur__load(&w->pool->sleepers, RELAXED)) concur__pool_notify(w->pool, 0);
    if (concur__load(&w->fj.allstolen, RELAXED)) {
        /* Everything below was stolen: restart the shared region here, with this
           record shared at once since thieves are evidently hungry. No thief CASes
           while tail == split, so a plain store is safe. */
        concur__store(&w->fj.ts, CONCUR__TS(h, h + 1), RELEASE);
        concur__dq_set_split(w, h + 1);
        concur__store(&w->fj.movesplit, 0, RELAXED);
        concur__store(&w->fj.allstolen, 0, RELEASE);
        concur__pool_notify(w->pool, 0);
    } else if (concur__load(&w->fj.movesplit, RELAXED)) {
        concur__dq_grow_split(w);
    }
}

/* Owner: writes a record at head (the caller checked for room). Nonzero when
   concur__dq_push_slow must follow: thieves asked for work, took everything, or a
   worker sleeps. It does not call it itself, so that concur_spawn can stay a leaf. */
CONCUR__HOT int concur__dq_put(concur__worker *w, concur__fnptr fn, void *arg, uintptr_t ctx) {
    CONCUR__CHECK(w->fj.top < w->fj.end);
    CONCUR__CHECK(concur__load(&w->fj.allstolen, RELAXED) ||
                  CONCUR__TS_TAIL(concur__load(&w->fj.ts, RELAXED)) <= concur__dq_head(w));
    concur__rec *r = (concur__rec *)w->fj.top;
    /* A free slot (see concur__fj_put). */
    CONCUR__CHECK(r->ctx == 0 && concur__load(&r->thief, RELAXED) == 0 &&
                  concur__load(&r->done, RELAXED) == 0);
    r->fn = fn;
    r->arg = arg;
    r->ctx = ctx;
    w->fj.top = (uintptr_t)(r + 1);
    return (int)(concur__load(&w->fj.allstolen, RELAXED) | concur__load(&w->fj.movesplit, RELAXED) |
                 concur__load(&w->pool->sleepers, RELAXED));
}

/* Owner: pushes a record; 0 when the deque is full. */
CONCUR__HOT int concur__dq_push(concur__worker *w, concur__fnptr fn, void *arg, uintptr_t ctx) {
    if (CONCUR__UNLIKELY(w->fj.top == w->fj.end)) return 0;
    if (CONCUR__UNLIKELY(concur__dq_put(w, fn, arg, ctx))) concur__dq_push_slow(w, concur__dq_head(w) - 1);
    return 1;
}

/* Owner: tries to take shared records back so that head-1 becomes private.
   Returns 0 when every shared record has been stolen. */
CONCUR__PRIVATE int concur__dq_shrink(concur__worker *w) {
    uint64_t old = concur__load(&w->fj.ts, ACQUIRE);
    for (;;) {
        uint32_t tail = CONCUR__TS_TAIL(old), s = CONCUR__TS_SPLIT(old);
        if (tail >= s) {
            concur__store(&w->fj.allstolen, 1, RELAXED);
            return 0;
        }
        /* Keep the older half shared; head-1 == s-1 >= the new split. */
        uint32_t ns = tail + (s - tail) / 2;
        if (concur__cas(&w->fj.ts, &old, CONCUR__TS(tail, ns), ACQ_REL)) {
            concur__dq_set_split(w, ns);
            return 1;
        }
    }
}

CONCUR__PRIVATE int concur__steal_from(concur__worker *self, concur__worker *v);

/* Owner: waits for a record a thief is running, helping that thief meanwhile. */
CONCUR__PRIVATE void concur__leapfrog(concur__worker *w, concur__rec *r) {
    int64_t sleep_after = 0;
    for (;;) {
        uint32_t d = concur__load(&r->done, ACQUIRE);
        if (d == 1) return;
        uint32_t th = concur__load(&r->thief, RELAXED);
        if (th && concur__steal_from(w, &w->pool->workers[th - 1])) {
            sleep_after = 0;
            continue;
        }
        if (sleep_after == 0) {
            sleep_after = concur__now_ns() + w->pool->spin_ns;
        } else if (concur__now_ns() >= sleep_after) {
            /* The thief runs something long with nothing to share: sleep until it
               is done instead of burning the core. */
            uint32_t expected = 0;
            if (concur__cas(&r->done, &expected, 2, ACQUIRE) || expected == 2)
                concur__futex_wait(&r->done, 2, concur__now_ns() + 10 * 1000000LL);
            continue;
        }
        concur__cpu_relax();
    }
}

/* Owner: pops record t, which nobody else can take any more, and runs it. */
CONCUR__HOT void concur__dq_pop_run(concur__worker *w, uint32_t t) {
    concur__rec *r = &w->fj.dq[t];
    concur__fnptr fn = r->fn;
    uintptr_t ctx = r->ctx;
    void *arg = (void *)&r->payload; /* ctx 0: a typed task */
    if (ctx) {
        arg = r->arg;
        r->ctx = 0; /* a free slot's: see concur__fj_put */
    }
    w->fj.top = (uintptr_t)r; /* the task may push at t again */
    concur__run(w, fn, arg, ctx);
}

/* Owner: the top record, t, is in the shared part: take it back or wait for its
   thief. */
CONCUR__COLD void concur__dq_sync_slow(concur__worker *w, uint32_t t) {
    concur__rec *r = &w->fj.dq[t];
    if (!concur__load(&w->fj.allstolen, RELAXED) && concur__dq_shrink(w)) {
        concur__dq_pop_run(w, t);
        return;
    }
    concur__leapfrog(w, r);
    /* The thief is done with the record: leave the slot as concur__fj_put expects. */
    concur__store(&r->thief, 0, RELAXED);
    concur__store(&r->done, 0, RELAXED);
    w->fj.top = (uintptr_t)r;
    /* Tasks stolen back during the leapfrog pushed at t+1 and may have restarted the
       shared region there, leaving tail above head. Every record below a stolen one
       was stolen too, so say so: the next sync takes the stolen path and the next
       push restarts the shared region at the right place. Invariant kept: when
       allstolen is clear, tail <= split <= head. */
    concur__store(&w->fj.allstolen, 1, RELAXED);
}

/* Owner: makes sure the top record, t (head - 1), has run, running it here when it
   was private. Afterwards head is t. */
CONCUR__HOT void concur__dq_sync_at(concur__worker *w, uint32_t t) {
    uint32_t s = concur__dq_split(w);
    if (CONCUR__LIKELY(t >= s)) {
        /* A thief is idle while we work through private records: share some now
           rather than at our next spawn, which may be long in coming (a parallel
           for's leaves only pop). The record we are about to take stays private. */
        if (CONCUR__UNLIKELY(concur__load(&w->fj.movesplit, RELAXED)) && t > s) {
            concur__dq_set_head(w, t);
            concur__dq_grow_split(w);
            concur__dq_set_head(w, t + 1);
        }
        concur__dq_pop_run(w, t);
        return;
    }
    concur__dq_sync_slow(w, t);
}

CONCUR__HOT void concur__dq_sync_top(concur__worker *w) {
    concur__dq_sync_at(w, concur__dq_head(w) - 1);
}

/* Thief: takes the oldest shared record of v and runs it. 1 when it ran one. */
CONCUR__PRIVATE int concur__steal_from(concur__worker *self, concur__worker *v) {
    if (v == self || concur__load(&v->fj.allstolen, ACQUIRE)) return 0;
    uint64_t old = concur__load(&v->fj.ts, ACQUIRE);
    uint32_t tail = CONCUR__TS_TAIL(old), s = CONCUR__TS_SPLIT(old);
    if (tail >= s) {
        if (!concur__load(&v->fj.movesplit, RELAXED)) concur__store(&v->fj.movesplit, 1, RELAXED);
        return 0;
    }
    if (!concur__cas(&v->fj.ts, &old, CONCUR__TS(tail + 1, s), ACQ_REL)) return 0;
    concur__rec *r = &v->fj.dq[tail];
    concur__fnptr fn = r->fn;
    uintptr_t ctx = r->ctx;
    void *arg = (void *)&r->payload; /* ctx 0: a typed task */
    if (ctx) {
        arg = r->arg;
        /* A free slot's (see concur__fj_put); the owner reuses the slot only after
           our release of done below. */
        r->ctx = 0;
    }
    if ((ctx & CONCUR__REC_KIND) != CONCUR__REC_SPAWN) {
        /* A submit or a tracked spawn reports through its future or its group's
           count, not through this slot: give the slot back now. The owner, which
           cannot pop below a stolen record until it is released, must not wait for
           the task itself: the task may block on work that only the owner's worker
           is free to take (every other worker nested in waits), and the owner would
           sit in a leapfrog that never looks at the injection queue. */
        if (concur__xchg(&r->done, 1, RELEASE) == 2) concur__futex_wake(&r->done, 1);
        concur__run(self, fn, arg, ctx);
        return 1;
    }
    concur__store(&r->thief, (uint32_t)self->index + 1, RELAXED);
    concur__run(self, fn, arg, ctx);
    if (concur__xchg(&r->done, 1, RELEASE) == 2) concur__futex_wake(&r->done, 1);
    return 1;
}

/* ---- injection queue ---- */

/* The bounded multi-producer multi-consumer ring of D. Vyukov: slot i of round r has
   seq i + r*size when free for that round's submitter, i + r*size + 1 once filled,
   and i + (r+1)*size once a worker has taken it. Positions are 64-bit and never wrap.
   0 when queued, 1 when the ring is full, CONCUR_ESHUTDOWN once closed. */
CONCUR__PRIVATE int concur__ring_put(concur_pool *p, concur__fnptr fn, void *arg, uintptr_t ctx) {
    uint64_t pos = concur__load(&p->ring_put, RELAXED);
    for (;;) {
        if (pos & CONCUR__RING_CLOSED) return CONCUR_ESHUTDOWN;
        concur__rslot *sl = &p->ring[pos & (CONCUR__RING_SIZE - 1)];
        uint64_t seq = concur__load(&sl->seq, ACQUIRE);
        if (seq == pos) {
            if (concur__cas(&p->ring_put, &pos, pos + 1, SEQ_CST)) { /* see concur__pool_notify */
                sl->fn = fn;
                sl->arg = arg;
                sl->ctx = ctx;
                concur__store(&sl->seq, pos + 1, RELEASE);
                return 0;
            }
        } else if ((int64_t)(seq - pos) < 0) {
            return 1; /* the slot still holds last round's task */
        } else {
            pos = concur__load(&p->ring_put, RELAXED);
        }
    }
}

/* Claims up to max filled slots in order and copies them out. A slot claimed by a
   submitter but not yet filled ends the run: the caller sees it again later. */
CONCUR__PRIVATE uint32_t concur__ring_take(concur_pool *p, concur__rec *out, uint32_t max) {
    uint64_t pos = concur__load(&p->ring_take, RELAXED);
    uint32_t n;
    do {
        n = 0;
        while (n < max &&
               concur__load(&p->ring[(pos + n) & (CONCUR__RING_SIZE - 1)].seq, ACQUIRE) == pos + n + 1)
            n++;
        if (n == 0) return 0;
    } while (!concur__cas(&p->ring_take, &pos, pos + n, RELAXED));
    for (uint32_t i = 0; i < n; i++) {
        concur__rslot *sl = &p->ring[(pos + i) & (CONCUR__RING_SIZE - 1)];
        out[i].fn = sl->fn;
        out[i].arg = sl->arg;
        out[i].ctx = (uintptr_t)sl->ctx;
        concur__store(&sl->seq, pos + i + CONCUR__RING_SIZE, RELEASE);
    }
    return n;
}

/* Submissions claimed in the ring and not yet taken (some maybe still being filled).
   The take counter is read first: it never passes the put counter, so a later read
   of that is never below it. */
CONCUR__PRIVATE uint64_t concur__ring_len(concur_pool *p) {
    uint64_t take = concur__load(&p->ring_take, ACQUIRE);
    return (concur__load(&p->ring_put, ACQUIRE) & ~CONCUR__RING_CLOSED) - take;
}

/* Under qlock: moves up to max of the overflow queue's oldest records to out. */
CONCUR__PRIVATE uint32_t concur__overflow_take_locked(concur_pool *p, concur__rec *out, uint32_t max) {
    uint32_t n = 0;
    while (n < max && p->qlen > 0) {
        out[n++] = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        concur__store(&p->qlen, p->qlen - 1, RELAXED);
    }
    return n;
}

CONCUR__PRIVATE int concur__inject(concur_pool *p, concur__fnptr fn, void *arg, uintptr_t ctx) {
    if (concur__load(&p->qlen, ACQUIRE) == 0) {
        int rc = concur__ring_put(p, fn, arg, ctx);
        if (rc != 1) {
            if (rc == 0) concur__pool_notify(p, 0);
            return rc;
        }
    }
    concur__lock(&p->qlock);
    if (p->shut) {
        concur__unlock(&p->qlock);
        return CONCUR_ESHUTDOWN;
    }
    if (p->qlen == p->qcap) {
        uint32_t ncap = p->qcap ? p->qcap * 2 : CONCUR__QUEUE_FIRST;
        concur__rec *nq = (concur__rec *)concur__malloc(ncap * sizeof *nq);
        if (!nq) {
            concur__unlock(&p->qlock);
            return -ENOMEM;
        }
        for (uint32_t i = 0; i < p->qlen; i++) nq[i] = p->q[(p->qhead + i) % p->qcap];
        CONCUR_FREE(p->q);
        p->q = nq;
        p->qcap = ncap;
        p->qhead = 0;
    }
    concur__rec *r = &p->q[(p->qhead + p->qlen) % p->qcap];
    r->fn = fn;
    r->arg = arg;
    r->ctx = ctx;
    concur__store(&p->qlen, p->qlen + 1, RELAXED);
    concur__unlock(&p->qlock);
    concur__pool_notify(p, 1);
    return 0;
}

/* Worker: moves a batch from the injection queue onto its deque, shared, and runs
   it. A batch amortises the lock for tiny tasks; sharing it keeps the rest stealable
   when one of them blocks. 1 when it ran anything. */
CONCUR__PRIVATE int concur__take_injected(concur__worker *w) {
    concur_pool *p = w->pool;
    concur__rec batch[32];
    uint32_t n = 0;
    int more;
    /* The ring first: while it holds anything, nothing in the overflow is older. */
    uint64_t queued = concur__ring_len(p);
    int from_ring = queued > 0;
    if (!from_ring && (queued = concur__load(&p->qlen, RELAXED)) == 0) return 0;
    uint64_t want = queued / (2u * (uint32_t)p->nworkers);
    want = want < 1 ? 1 : want > 32 ? 32 : want;
    if (from_ring) {
        n = concur__ring_take(p, batch, (uint32_t)want);
        if (n == 0) return 0; /* its oldest slot is still being filled */
        more = concur__ring_len(p) > 0 || concur__load(&p->qlen, RELAXED) > 0;
    } else {
        concur__lock(&p->qlock);
        n = concur__overflow_take_locked(p, batch, (uint32_t)want);
        more = p->qlen > 0;
        concur__unlock(&p->qlock);
        if (n == 0) return 0;
    }
    if (more) concur__pool_notify(p, 0); /* cascade */
    uint32_t h0 = concur__dq_head(w);
    /* Pushed newest first so that the owner, popping from the top, runs them in
       submission order while thieves take from the other end. */
    for (uint32_t i = n; i-- > 0;) {
        if (!concur__dq_push(w, batch[i].fn, batch[i].arg, batch[i].ctx))
            concur__run(w, batch[i].fn, batch[i].arg, batch[i].ctx);
    }
    uint32_t h = concur__dq_head(w);
    if (h > h0 + 1 && concur__dq_split(w) < h && !concur__load(&w->fj.allstolen, RELAXED)) {
        /* Share the whole batch: these are independent tasks, and a slow one must
           not hold the others back. Any record may be shared; sync handles it. */
        uint64_t old = concur__load(&w->fj.ts, RELAXED);
        while (!concur__cas(&w->fj.ts, &old, CONCUR__TS(CONCUR__TS_TAIL(old), h), RELEASE)) {}
        concur__dq_set_split(w, h);
        concur__pool_notify(p, 0);
    }
    while (concur__dq_head(w) > h0) concur__dq_sync_top(w);
    return 1;
}

/* ---- finding work, helping, sleeping ---- */

CONCUR__PRIVATE int concur__steal_any(concur__worker *w) {
    concur_pool *p = w->pool;
    int n = p->nworkers;
    if (n < 2) return 0;
    uint32_t start = concur__rand(w) % (uint32_t)n;
    for (int i = 0; i < n; i++) {
        concur__worker *v = &p->workers[(start + (uint32_t)i) % (uint32_t)n];
        if (concur__steal_from(w, v)) return 1;
    }
    return 0;
}

CONCUR__PRIVATE int concur__find_work(concur__worker *w) {
    return concur__take_injected(w) || concur__steal_any(w);
}

CONCUR__PRIVATE int concur__work_visible(concur_pool *p) {
    if (concur__load(&p->qlen, RELAXED) > 0 || concur__ring_len(p) > 0) return 1;
    for (int i = 0; i < p->nworkers; i++) {
        concur__worker *v = &p->workers[i];
        uint64_t ts = concur__load(&v->fj.ts, RELAXED);
        if (!concur__load(&v->fj.allstolen, RELAXED) && CONCUR__TS_TAIL(ts) < CONCUR__TS_SPLIT(ts))
            return 1;
    }
    return 0;
}

/* The waiter seam for workers: a task that blocks on a future or a primitive runs
   other tasks meanwhile (bounded nesting, so the stack stays bounded), then sleeps
   on the waiter's futex word like a plain thread. */
#define CONCUR__HELP_DEPTH 16

CONCUR__PRIVATE void *concur__worker_current_task(concur__sched *self) {
    return (char *)self - offsetof(concur__worker, sched); /* the worker is the task */
}

CONCUR__PRIVATE int concur__worker_park(concur__sched *self, concur__waiter *wt, int64_t deadline) {
    concur__worker *w = (concur__worker *)((char *)self - offsetof(concur__worker, sched));
    int64_t give_up = 0;
    for (;;) {
        uint32_t s = concur__load(&wt->state, ACQUIRE);
        if (s == CONCUR__W_NOTIFIED) return 0;
        if (s != CONCUR__W_WAITING) break; /* claimed: the hand-off is imminent */
        if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) break;
        if (w->help_depth < CONCUR__HELP_DEPTH) {
            w->help_depth++;
            int ran = concur__find_work(w);
            w->help_depth--;
            if (ran) { give_up = 0; continue; }
        }
        if (give_up == 0) give_up = concur__now_ns() + w->pool->spin_ns;
        else if (concur__now_ns() >= give_up) break;
        concur__cpu_relax();
    }
    /* Asleep, but still a worker: a task submitted while it waits (perhaps the one
       that settles what it waits for, as when every worker joins a coroutine that
       awaits a pool future) must not wait for it, or a pool whose workers all wait
       would deadlock. Submitters wake idle workers, not waiting ones, so a waiting
       worker looks for work again after a nap that backs off from 50 us to 2 ms. */
    int64_t nap = 50000;
    for (;;) {
        uint32_t s = concur__load(&wt->state, ACQUIRE);
        if (s == CONCUR__W_NOTIFIED) return 0;
        int64_t now = concur__now_ns();
        if (s != CONCUR__W_WAITING || (deadline != CONCUR__NEVER && now >= deadline))
            return concur__thread_park(wt, deadline); /* the hand-off or the timeout */
        int64_t until = deadline != CONCUR__NEVER && deadline < now + nap ? deadline : now + nap;
        concur__futex_wait(&wt->state, CONCUR__W_WAITING, until);
        if (nap < 2000000) nap *= 2;
        if (concur__load(&wt->state, ACQUIRE) == CONCUR__W_WAITING &&
            w->help_depth < CONCUR__HELP_DEPTH && concur__work_visible(w->pool)) {
            w->help_depth++;
            if (concur__find_work(w)) nap = 50000;
            w->help_depth--;
        }
    }
}

CONCUR__PRIVATE void concur__worker_sleep(concur__worker *w) {
    concur_pool *p = w->pool;
    uint32_t seq = concur__load(&p->wake_seq, ACQUIRE);
    concur__fetch_add(&p->sleepers, 1, SEQ_CST);
    /* A wake-up may have been sent while nobody was asleep (the notifier saw a
       sleeper that was just leaving): clear the gate before the final look for
       work, or the next submission would skip its wake-up forever. */
    concur__store(&p->waking, 0, RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!concur__work_visible(p) && !concur__load(&p->stop, ACQUIRE))
        concur__futex_wait(&p->wake_seq, seq, CONCUR__NEVER);
    concur__fetch_add(&p->sleepers, (uint32_t)-1, SEQ_CST);
    /* Whoever leaves the sleep path (woken, or backing out) lets the next wake-up go
       out, then looks for work: see concur__pool_notify. */
    concur__store(&p->waking, 0, RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

CONCUR__PRIVATE void *concur__worker_main(void *arg) {
    concur__worker *w = (concur__worker *)arg;
    concur_pool *p = w->pool;
    char name[16];
    snprintf(name, sizeof name, "%.10s-%d", p->name, w->index);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    concur__cur_worker = w;
    concur__cur_sched = &w->sched;
    if (p->on_start) p->on_start(w->index, p->user);
    for (;;) {
        if (concur__find_work(w)) continue;
        int64_t until = concur__now_ns() + p->spin_ns;
        int found = 0;
        while (concur__now_ns() < until) {
            if (concur__find_work(w)) { found = 1; break; }
            for (int i = 0; i < 32; i++) concur__cpu_relax();
        }
        if (found) continue;
        if (concur__load(&p->stop, ACQUIRE) && concur__load(&p->qlen, ACQUIRE) == 0 &&
            concur__ring_len(p) == 0)
            break;
        concur__worker_sleep(w);
    }
    concur__cur_worker = NULL;
    concur__cur_sched = NULL;
    return NULL;
}

/* ---- public ---- */

CONCUR__PRIVATE int concur__online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4096 ? 4096 : (int)n;
}

CONCUR__PRIVATE void concur__pool_join(concur_pool *p) {
    for (int i = 0; i < p->nworkers; i++)
        if (p->workers[i].started) pthread_join(p->workers[i].tid, NULL);
}

CONCUR__PRIVATE void concur__pool_free(concur_pool *p) {
    for (int i = 0; i < p->nworkers; i++) {
        CONCUR_FREE(p->workers[i].dq_mem);
        CONCUR_FREE(p->workers[i].fj.overflow);
    }
    CONCUR_FREE(p->workers_mem);
    CONCUR_FREE(p->ring_mem);
    CONCUR_FREE(p->q);
    CONCUR_FREE(p);
}

CONCUR_API concur_pool *concur_pool_create(const concur_pool_desc *desc) {
    concur_pool_desc d;
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.threads < 0 || d.threads > 4096 || d.deque_size < 0) { errno = EINVAL; return NULL; }
    int n = d.threads ? d.threads : concur__online_cpus();
    uint32_t cap = d.deque_size ? (uint32_t)d.deque_size : CONCUR__DEQUE_DEFAULT;
    concur_pool *p = (concur_pool *)concur__malloc(sizeof *p);
    if (!p) { errno = ENOMEM; return NULL; }
    concur__store(&concur__future_run_inline, &concur__pool_run_inline, RELEASE);
    memset(p, 0, sizeof *p);
    p->nworkers = n;
    p->spin_ns = d.spin_us < 0 ? 0 : (int64_t)(d.spin_us ? d.spin_us : 50) * 1000;
    snprintf(p->name, sizeof p->name, "%s", d.name ? d.name : "concur");
    p->on_start = d.on_start;
    p->user = d.user;
    /* Workers on their own cache lines: thieves hammer each other's `ts`. */
    p->workers_mem = concur__malloc((size_t)n * sizeof(concur__worker) + 64);
    if (!p->workers_mem) { CONCUR_FREE(p); errno = ENOMEM; return NULL; }
    p->workers = (concur__worker *)(((uintptr_t)p->workers_mem + 63) & ~(uintptr_t)63);
    memset(p->workers, 0, (size_t)n * sizeof(concur__worker));
    p->ring_mem = concur__malloc(CONCUR__RING_SIZE * sizeof(concur__rslot) + 64);
    if (!p->ring_mem) { concur__pool_free(p); errno = ENOMEM; return NULL; }
    p->ring = (concur__rslot *)(((uintptr_t)p->ring_mem + 63) & ~(uintptr_t)63);
    for (uint32_t i = 0; i < CONCUR__RING_SIZE; i++) p->ring[i].seq = i;
    for (int i = 0; i < n; i++) {
        concur__worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        w->fj.cap = cap;
        w->fj.sleepers = &p->sleepers;
        w->fj.allstolen = 1; /* so the first spawn is shared at once */
        w->rng = (uint64_t)0x9E3779B97F4A7C15ULL * (uint64_t)(unsigned)(i + 1);
        w->sched.park = concur__worker_park;
        w->sched.unpark = NULL; /* waiters on a worker are woken by futex address */
        w->sched.current = concur__worker_current_task;
        /* Records on cache-line boundaries: a spawn writes one line, and the owner's
           pushes never share a line with the record a thief is finishing. */
        w->dq_mem = concur__malloc(cap * sizeof(concur__rec) + 64);
        if (!w->dq_mem) { concur__pool_free(p); errno = ENOMEM; return NULL; }
        /* Zeroed: a free slot has ctx, thief and done at 0 (see concur__fj_put). */
        memset(w->dq_mem, 0, cap * sizeof(concur__rec) + 64);
        w->fj.dq = (concur__rec *)(((uintptr_t)w->dq_mem + 63) & ~(uintptr_t)63);
        w->fj.top = w->fj.split_at = (uintptr_t)w->fj.dq;
        w->fj.end = (uintptr_t)(w->fj.dq + cap);
    }
    for (int i = 0; i < n; i++) {
        int rc = concur__thread_start(&p->workers[i].tid, concur__worker_main, &p->workers[i]);
        if (rc != 0) {
            concur__store(&p->stop, 1, RELEASE);
            concur__pool_wake(p, INT_MAX);
            concur__pool_join(p);
            concur__pool_free(p);
            errno = rc;
            return NULL;
        }
        p->workers[i].started = 1;
    }
    return p;
}

CONCUR_API concur_future *concur_pool_submit(concur_pool *pool, concur_task_fn fn, void *arg) {
    if (!pool || !fn) { errno = EINVAL; return NULL; }
    concur_future *f = concur_future_create();
    if (!f) return NULL;
    f->refs = 2; /* the caller's and the pool's; nobody else has seen f yet */
    f->bu.task_fn = fn;
    f->vu.task_arg = arg;
    f->nu.task_pool = pool;
    int rc = concur__inject(pool, (concur__fnptr)fn, arg, (uintptr_t)f | CONCUR__REC_SUBMIT);
    if (rc) {
        concur_future_set_error(f, rc);
        concur_future_release(f);
    }
    return f;
}

CONCUR__PRIVATE int concur__is_own_worker(concur_pool *pool) {
    return concur__cur_worker && concur__cur_worker->pool == pool;
}

CONCUR_API int concur_pool_shutdown(concur_pool *pool, int cancel_pending) {
    if (!pool) return -EINVAL;
    if (concur__is_own_worker(pool)) return -EDEADLK;
    concur__lock(&pool->shutdown_lock);
    __atomic_fetch_or(&pool->ring_put, CONCUR__RING_CLOSED, __ATOMIC_ACQ_REL);
    concur__lock(&pool->qlock);
    pool->shut = 1;
    concur__unlock(&pool->qlock);
    /* Nothing can be queued any more, so drain one record at a time (the ring's
       claimed slots get filled soon), completed outside the lock (completions run
       callbacks), no allocation. */
    while (cancel_pending) {
        concur__rec r;
        if (concur__ring_len(pool) > 0) {
            if (!concur__ring_take(pool, &r, 1)) {
                concur__cpu_relax();
                continue;
            }
        } else {
            concur__lock(&pool->qlock);
            uint32_t n = concur__overflow_take_locked(pool, &r, 1);
            concur__unlock(&pool->qlock);
            if (n == 0) break;
        }
        uintptr_t ctx = r.ctx;
        void *obj = (void *)(ctx & ~(uintptr_t)CONCUR__REC_KIND);
        if ((ctx & CONCUR__REC_KIND) == CONCUR__REC_SUBMIT) {
            concur_future_cancel((concur_future *)obj);
            concur_future_release((concur_future *)obj);
        } else {
            concur_group *g = (concur_group *)obj;
            concur__group_record_error(g, -ECANCELED);
            concur_wg_done(&g->concur__remote);
        }
    }
    if (!pool->joined) {
        concur__store(&pool->stop, 1, RELEASE);
        concur__pool_wake(pool, INT_MAX);
        concur__pool_join(pool);
        pool->joined = 1;
    }
    concur__unlock(&pool->shutdown_lock);
    return 0;
}

CONCUR_API int concur_pool_destroy(concur_pool *pool) {
    if (!pool) return -EINVAL;
    if (concur__is_own_worker(pool)) {
        CONCUR__CHECK(!"concur_pool_destroy: called from one of the pool's own workers");
        return -EDEADLK;
    }
    int rc = concur_pool_shutdown(pool, 0);
    if (rc) return rc;
    concur__pool_free(pool);
    return 0;
}

CONCUR_API int concur_pool_threads(concur_pool *pool) { return pool ? pool->nworkers : -EINVAL; }

CONCUR_API concur_pool *concur_pool_current(void) {
    return concur__cur_worker ? concur__cur_worker->pool : NULL;
}

CONCUR_API int concur_worker_index(void) {
    return concur__cur_worker ? concur__cur_worker->index : -1;
}

CONCUR_API int concur_task_fail(int err) {
    uintptr_t ctx = concur__cur_ctx;
    if (!ctx || err >= 0) return -EINVAL;
    if ((ctx & CONCUR__REC_KIND) == CONCUR__REC_SUBMIT) {
        if (concur__submit_err == 0) concur__submit_err = err;
    } else {
        concur__group_record_error((concur_group *)(ctx & ~(uintptr_t)CONCUR__REC_KIND), err);
    }
    return 0;
}

CONCUR_API int concur_group_init(concur_group *g, concur_pool *pool) {
    if (!g) return -EINVAL;
    concur__worker *w = concur__cur_worker;
    if (!pool) pool = w ? w->pool : NULL;
    if (!pool) return -EINVAL;
    g->concur__pool = pool;
    g->concur__error = 0;
    g->concur__remote_used = 0;
    if (w && w->pool == pool) {
        g->concur__worker = w;
        g->concur__base = concur__dq_head(w);
    } else {
        g->concur__worker = NULL;
        g->concur__base = 0;
    }
    return 0;
}

/* The remote wait group is set up by the first remote spawn, not by every init:
   fork-join never needs it. Remote spawns may race (children spawning into their
   parent's group), so a small state machine: 0 unused, 1 being set up, 2 ready. */
CONCUR__PRIVATE void concur__group_remote_init(concur_group *g) {
    uint32_t state = concur__load(&g->concur__remote_used, ACQUIRE);
    while (state != 2) {
        if (state == 0 && concur__cas(&g->concur__remote_used, &state, 1, ACQUIRE)) {
            memset(&g->concur__remote, 0, sizeof g->concur__remote);
            concur__store(&g->concur__remote_used, 2, RELEASE);
            return;
        }
        concur__cpu_relax();
        state = concur__load(&g->concur__remote_used, ACQUIRE);
    }
}

CONCUR__COLD int concur__spawn_slow(concur_group *g, void (*fn)(void *arg), void *arg) {
    if (!g || !fn) return -EINVAL;
    concur__worker *w = concur__cur_worker;
    if (w && w == g->concur__worker) {
        if (!concur__dq_push(w, (concur__fnptr)fn, arg, (uintptr_t)g))
            concur__run(w, (concur__fnptr)fn, arg, (uintptr_t)g); /* deque full: run inline */
        return 0;
    }
    if (!g->concur__pool) return -EINVAL;
    concur__group_remote_init(g);
    concur_wg_add(&g->concur__remote, 1);
    uintptr_t ctx = (uintptr_t)g | CONCUR__REC_TRACKED;
    if (w && w->pool == g->concur__pool) {
        if (!concur__dq_push(w, (concur__fnptr)fn, arg, ctx)) concur__run(w, (concur__fnptr)fn, arg, ctx);
        return 0;
    }
    int rc = concur__inject(g->concur__pool, (concur__fnptr)fn, arg, ctx);
    if (rc) concur_wg_done(&g->concur__remote);
    return rc;
}

CONCUR__COLD int concur__spawn_pushed_slow(concur__worker *w, uint32_t h) {
    concur__dq_push_slow(w, h);
    return 0;
}

/* The common case, a child of a group owned by this worker with room in the deque,
   is a leaf function: every other case is a tail call, so no registers are saved. */
CONCUR_API int concur_spawn(concur_group *g, void (*fn)(void *arg), void *arg) {
    concur__worker *w = concur__cur_worker;
    if (CONCUR__UNLIKELY(!g || !fn || !w || w != g->concur__worker || w->fj.top == w->fj.end))
        return concur__spawn_slow(g, fn, arg);
    if (CONCUR__UNLIKELY(concur__dq_put(w, (concur__fnptr)fn, arg, (uintptr_t)g)))
        return concur__spawn_pushed_slow(w, concur__dq_head(w) - 1);
    return 0;
}

CONCUR_API int concur_group_wait(concur_group *g) {
    if (!g) return -EINVAL;
    concur__worker *w = concur__cur_worker;
    if (g->concur__worker) {
        if (w != g->concur__worker) {
            CONCUR__CHECK(!"concur_group_wait: not the worker that initialised the group");
            return -EPERM;
        }
        /* The position stays in a register: after a child has run, the head is back
           at its record (concur__run drains what the child left), and reloading it
           would wait for the store the child just made. */
        uint32_t h = concur__dq_head(w);
        while (h > g->concur__base) concur__dq_sync_at(w, --h);
    }
    /* Remote children were counted by spawns that happened before the local ones
       were joined (or on this thread), so the flag is visible here when it matters;
       skipping the wait group's lock is what keeps a join at a few nanoseconds. */
    if (concur__load(&g->concur__remote_used, ACQUIRE)) {
        int rc = concur_wg_wait(&g->concur__remote, CONCUR_FOREVER);
        if (rc) return rc;
    }
    int32_t err = concur__load(&g->concur__error, RELAXED);
    if (err) concur__store(&g->concur__error, 0, RELAXED);
    return err;
}

/* ---- typed tasks: the slow paths of the header's inline code ---- */

CONCUR_API concur__fj *concur__fj_self(void) {
    return concur__cur_worker ? &concur__cur_worker->fj : NULL;
}

CONCUR_API uintptr_t concur__fj_pushed(concur__fj *w, uintptr_t h, void *x) {
    (void)x;
    concur__dq_push_slow((concur__worker *)w, (uint32_t)((h - (uintptr_t)w->dq) / sizeof(concur__rec)));
    return 0;
}

/* Storage for the result of the typed spawn at virtual position h >= cap, which ran
   at once because the deque was full. Only the owner touches it, and nobody keeps a
   pointer into it across a task, so it may move when it grows. */
CONCUR__PRIVATE void *concur__fj_overflow(concur__fj *w, uintptr_t h) {
    uintptr_t i = (h - w->end) / sizeof(concur__rec);
    /* Positions beyond the deque come one spawn at a time: one this far out is not
       a spawn's. */
    if (i >= (1u << 28)) concur__fj_misuse(NULL);
    if (i >= w->overflow_cap) {
        uint32_t ncap = w->overflow_cap ? w->overflow_cap * 2 : 64;
        while (ncap <= i) ncap *= 2;
        void *n = CONCUR_REALLOC(w->overflow, (size_t)ncap * CONCUR_TASK_PAYLOAD);
        if (!n) {
            /* A void spawn cannot report it, and the result has nowhere else to go. */
            fprintf(stderr, "concur: out of memory for the results of %u typed spawns beyond "
                            "the deque (deque_size %u); raise deque_size\n",
                    (unsigned)(i + 1), (unsigned)w->cap);
            abort();
        }
        w->overflow = (unsigned char *)n;
        w->overflow_cap = ncap;
    }
    return w->overflow + (size_t)i * CONCUR_TASK_PAYLOAD;
}

/* A join whose record was stolen or asked for (it waits for the thief, working
   meanwhile), or whose spawn ran at once: returns where the result is. */
CONCUR_API uintptr_t concur__fj_join(concur__fj *w, uintptr_t h, void *x) {
    (void)x;
    if (h >= w->end) return (uintptr_t)concur__fj_overflow(w, h);
    if (w->top <= (uintptr_t)w->dq) concur__fj_misuse(NULL); /* nothing left to join */
    concur__dq_sync_top((concur__worker *)w);
    return (uintptr_t)&((concur__rec *)h)->payload;
}

#ifdef CONCUR__FJ_TRAMP
/* concur__fj_slow's callee: calls rax(rdi, rsi, rdx) with the stack aligned and
   returns its result in rax, with every other general register the ABI lets a callee
   clobber intact, except r10 and r11. The caller moved the stack pointer 128 bytes
   down before the call, which the unwind rules below account for: the return address
   is 136 bytes below the caller's stack pointer. */
__asm__(".text\n"
#  ifndef CONCUR_STATIC
        ".globl concur__fj_tramp\n"
#  endif
        ".p2align 4\n"
        ".type concur__fj_tramp,@function\n"
        "concur__fj_tramp:\n"
        "  .cfi_startproc\n"
        "  .cfi_def_cfa_offset 136\n"
        "  .cfi_offset %rip, -136\n"
        "  pushq %rbp\n"
        "  .cfi_def_cfa_offset 144\n"
        "  .cfi_offset %rbp, -144\n"
        "  movq %rsp, %rbp\n"
        "  .cfi_def_cfa_register %rbp\n"
        "  pushq %rcx\n"
        "  pushq %rdx\n"
        "  pushq %rsi\n"
        "  pushq %rdi\n"
        "  pushq %r8\n"
        "  pushq %r9\n"
        "  andq $-16, %rsp\n"
        "  call *%rax\n"
        "  leaq -48(%rbp), %rsp\n"
        "  popq %r9\n"
        "  popq %r8\n"
        "  popq %rdi\n"
        "  popq %rsi\n"
        "  popq %rdx\n"
        "  popq %rcx\n"
        "  popq %rbp\n"
        "  .cfi_def_cfa %rsp, 136\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size concur__fj_tramp,.-concur__fj_tramp\n");
#endif

/* task NULL: the name is not known (a SYNC below the bottom of the deque). */
CONCUR_API CONCUR__NORETURN void concur__fj_misuse(const char *task) {
    if (task)
        fprintf(stderr, "concur: CONCUR_SYNC(%s) has no CONCUR_SPAWN(%s) to join: each SYNC "
                        "joins the most recent spawn of its task not yet joined, which must "
                        "name the same task\n", task, task);
    else
        fprintf(stderr, "concur: a CONCUR_SYNC has no CONCUR_SPAWN to join: more SYNCs than "
                        "spawns\n");
    abort();
}


typedef struct concur__fj_entry {
    void (*run)(void *args);
    void *args;
} concur__fj_entry;

CONCUR__PRIVATE void *concur__fj_enter(void *arg) {
    concur__fj_entry *e = (concur__fj_entry *)arg;
    e->run(e->args);
    return NULL;
}

CONCUR_API int concur__fj_run(concur_pool *pool, void (*run)(void *args), void *args) {
    concur__worker *w = concur__cur_worker;
    if (!pool) pool = w ? w->pool : NULL;
    if (!pool || !run) return -EINVAL;
    if (w && w->pool == pool) {
        run(args);
        return 0;
    }
    concur__fj_entry e;
    e.run = run;
    e.args = args;
    concur_future *f = concur_pool_submit(pool, concur__fj_enter, &e);
    if (!f) return -errno;
    int rc = concur_future_result(f, CONCUR_FOREVER, NULL);
    concur_future_release(f);
    return rc;
}

/* ---- parallel for: recursive halving, so thieves take the biggest halves ---- */

typedef struct concur__pfor {
    void (*body)(int64_t, int64_t, void *);
    void *ctx;
    int64_t grain;
} concur__pfor;

typedef struct concur__pfor_range {
    const concur__pfor *pf;
    int64_t lo, hi;
} concur__pfor_range;

CONCUR__PRIVATE void concur__pfor_run(void *arg) {
    concur__pfor_range *r = (concur__pfor_range *)arg;
    const concur__pfor *pf = r->pf;
    int64_t lo = r->lo, hi = r->hi;
    concur_group g;
    concur_group_init(&g, NULL);
    concur__pfor_range kids[64];
    int nk = 0;
    while (hi - lo > pf->grain && nk < 64) {
        int64_t mid = lo + (hi - lo) / 2;
        kids[nk].pf = pf;
        kids[nk].lo = mid;
        kids[nk].hi = hi;
        concur_spawn(&g, concur__pfor_run, &kids[nk]);
        nk++;
        hi = mid;
    }
    pf->body(lo, hi, pf->ctx);
    int err = concur_group_wait(&g);
    if (err) concur_task_fail(err);
}

CONCUR__PRIVATE void *concur__pfor_root(void *arg) {
    concur__pfor_range *r = (concur__pfor_range *)arg;
    concur_group g;
    concur_group_init(&g, NULL);
    concur_spawn(&g, concur__pfor_run, r);
    int err = concur_group_wait(&g);
    if (err) concur_task_fail(err);
    return NULL;
}

CONCUR_API int concur_parallel_for(concur_pool *pool, int64_t begin, int64_t end, int64_t grain,
                                   void (*body)(int64_t lo, int64_t hi, void *ctx), void *ctx) {
    concur__worker *w = concur__cur_worker;
    if (!pool) pool = w ? w->pool : NULL;
    if (!pool || !body || grain < 0 || begin > end) return -EINVAL;
    if (begin == end) return 0;
    concur__pfor pf;
    pf.body = body;
    pf.ctx = ctx;
    /* About 32 ranges per worker: fine enough that a worker which starts late (a
       sleeping one takes tens of microseconds to wake) still gets its share, coarse
       enough that the spawns cost nothing next to the body. */
    pf.grain = grain ? grain : (end - begin) / ((int64_t)pool->nworkers * 32);
    if (pf.grain < 1) pf.grain = 1;
    concur__pfor_range root;
    root.pf = &pf;
    root.lo = begin;
    root.hi = end;
    if (w && w->pool == pool) {
        /* Inside the pool: run the root here, as part of the calling task. */
        concur_group g;
        concur_group_init(&g, pool);
        concur_spawn(&g, concur__pfor_run, &root);
        return concur_group_wait(&g);
    }
    concur_future *f = concur_pool_submit(pool, concur__pfor_root, &root);
    if (!f) return -errno;
    int rc = concur_future_result(f, CONCUR_FOREVER, NULL);
    concur_future_release(f);
    return rc;
}

#ifndef CONCUR_NO_IO
/* >>coro ---------------------------------------------------------------------------
   Context switch and stacks. A switch keeps what the C ABI makes a callee preserve,
   plus the floating-point control words (per-thread state that a coroutine must not
   leak into another). x86_64: CONCUR__SWITCH, an asm statement that saves the stack,
   frame and resume pointers and the control words in the record and names the rest
   clobbered, so the compiler saves only what is live there. aarch64: a called
   function that saves the callee-saved registers on the old stack, stores the stack
   pointer and loads the other one. Other architectures, and builds with
   CONCUR_CORO_UCONTEXT, use swapcontext, which also saves the signal mask with a
   system call (about 20x slower, still correct). */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#ifdef __linux__
#  include <sys/epoll.h>
#  include <sys/eventfd.h>
#endif

/* glibc hides part of POSIX.1-2008 and the Linux extensions under strict -std=c99
   (without feature macros). The loop then does without them: no name resolution
   (numeric addresses and "localhost" only), no stack-overflow message. */
#if defined(_GNU_SOURCE) || defined(_DEFAULT_SOURCE) || defined(__cplusplus) ||            \
    (defined(_POSIX_C_SOURCE) && _POSIX_C_SOURCE >= 200809L) || !defined(__GLIBC__)
#  define CONCUR__POSIX2008 1
#endif
#if !defined(MAP_ANONYMOUS) && defined(__linux__)
#  define MAP_ANONYMOUS 0x20
#endif
#if !defined(MAP_NORESERVE) && defined(__linux__) && (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__riscv))
#  define MAP_NORESERVE 0x4000
#endif
#ifndef MAP_NORESERVE
#  define MAP_NORESERVE 0
#endif
#ifndef MAP_STACK
#  define MAP_STACK 0
#endif
/* accept4 is a GNU extension even in gnu modes; its declaration is the same in glibc
   and musl. */
#if defined(__linux__) && !defined(__cplusplus) && !defined(_GNU_SOURCE)
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
#endif
#if defined(__linux__) && !defined(__cplusplus) && !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
int madvise(void *addr, size_t len, int advice);
#endif

#if !defined(CONCUR_CORO_UCONTEXT) && !(defined(__x86_64__) && !defined(__ILP32__)) && !defined(__aarch64__)
#  define CONCUR_CORO_UCONTEXT 1
#endif
#ifdef CONCUR_CORO_UCONTEXT
#  include <ucontext.h>
#endif

/* Sanitizer and valgrind annotations: each must be told when the stack changes. */
#if defined(__SANITIZE_ADDRESS__)
#  define CONCUR__ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define CONCUR__ASAN 1
#  endif
#endif
#if defined(__SANITIZE_THREAD__)
#  define CONCUR__TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define CONCUR__TSAN 1
#  endif
#endif
#ifdef CONCUR__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif
#ifdef CONCUR__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif
#if !defined(CONCUR_NO_VALGRIND) && defined(__has_include)
#  if __has_include(<valgrind/valgrind.h>)
#    include <valgrind/valgrind.h>
#    define CONCUR__VALGRIND 1
#  endif
#endif

#ifdef CONCUR__SWITCH_X86
typedef concur__swctx concur__ctx; /* kept in the record's hot part */
#else
typedef struct concur__ctx {
#  ifdef CONCUR_CORO_UCONTEXT
    ucontext_t uc;
#  else
    void *sp;
#  endif
} concur__ctx;
#endif

#if defined(CONCUR__SWITCH_X86)
/* The switch itself is CONCUR__SWITCH, next to concur_yield's inline hand-off. A new
   context starts at entry as if called: rsp = 8 mod 16, a null return address. */
CONCUR__PRIVATE void concur__ctx_make(concur__ctx *c, void *lo, size_t size, void (*entry)(void)) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    void **sp = (void **)(top - 8);
    *sp = NULL;
    c->sp = sp;
    c->pc = entry;
    c->bp = NULL;          /* ends frame-pointer backtraces */
    c->mxcsr = 0x1F80u;    /* MXCSR and x87 control word at reset */
    c->fpucw = 0x037Fu;
}

CONCUR__HOT void concur__ctx_swap(concur__ctx *from, concur__ctx *to) {
    CONCUR__SWITCH(from, to);
}
#elif !defined(CONCUR_CORO_UCONTEXT)
/* void concur__ctx_swap_asm(void **save_sp, void *load_sp). The symbol is local to
   the object file (no .globl), so two CONCUR_STATIC copies never clash. */
void concur__ctx_swap_asm(void **save_sp, void *load_sp);
#  if defined(__aarch64__)
__asm__(".text\n"
        ".p2align 4\n"
        ".type concur__ctx_swap_asm,%function\n"
        "concur__ctx_swap_asm:\n"
        "  sub sp, sp, #176\n"
        "  stp x19, x20, [sp, #0]\n"
        "  stp x21, x22, [sp, #16]\n"
        "  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n"
        "  stp x27, x28, [sp, #64]\n"
        "  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mrs x9, fpcr\n"
        "  str x9, [sp, #160]\n"
        "  mov x9, sp\n"
        "  str x9, [x0]\n"
        "  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n"
        "  ldp x21, x22, [sp, #16]\n"
        "  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n"
        "  ldp x27, x28, [sp, #64]\n"
        "  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  ldr x9, [sp, #160]\n"
        "  msr fpcr, x9\n"
        "  add sp, sp, #176\n"
        "  ret\n"
        ".size concur__ctx_swap_asm,.-concur__ctx_swap_asm\n");

CONCUR__PRIVATE void concur__ctx_make(concur__ctx *c, void *lo, size_t size, void (*entry)(void)) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);               /* x19..x29 = 0, FPCR = 0 (round to nearest) */
    sp[11] = (uint64_t)(uintptr_t)entry; /* x30: ret jumps there with sp = top */
    c->sp = sp;
}
#  endif

CONCUR__HOT void concur__ctx_swap(concur__ctx *from, concur__ctx *to) {
    concur__ctx_swap_asm(&from->sp, to->sp);
}
#else
CONCUR__PRIVATE void concur__ctx_make(concur__ctx *c, void *lo, size_t size, void (*entry)(void)) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}

CONCUR__PRIVATE void concur__ctx_swap(concur__ctx *from, concur__ctx *to) {
    swapcontext(&from->uc, &to->uc);
}
#endif

/* ---- stacks: mmap'd, a guard page below, cached per loop ---- */
typedef struct concur__stack concur__stack;
struct concur__stack {
    char *map;      /* the mapping: guard page, then the usable stack */
    size_t size;    /* usable bytes, above the guard */
    concur__stack *next_free;
    unsigned vg_id;
};

#ifndef MADV_GUARD_INSTALL
#  define MADV_GUARD_INSTALL 102
#endif

/* The guard costs no extra mapping with MADV_GUARD_INSTALL (Linux 6.13+); otherwise
   mprotect splits the mapping in two, and vm.max_map_count (65530 by default) caps
   live coroutines at about 32 000. */
CONCUR__PRIVATE concur__stack *concur__stack_new(size_t size) {
    size_t page = concur__page_size();
    concur__stack *s = (concur__stack *)concur__malloc(sizeof *s);
    if (!s) return NULL;
    if (CONCUR__FAULT(CONCUR_FAULT_MALLOC)) { CONCUR_FREE(s); return NULL; }
    void *m = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) { CONCUR_FREE(s); return NULL; }
    if (madvise(m, page, MADV_GUARD_INSTALL) != 0 && mprotect(m, page, PROT_NONE) != 0) {
        munmap(m, size + page);
        CONCUR_FREE(s);
        return NULL;
    }
    s->map = (char *)m;
    s->size = size;
    s->next_free = NULL;
    s->vg_id = 0;
#ifdef CONCUR__VALGRIND
    s->vg_id = VALGRIND_STACK_REGISTER(s->map + page, s->map + page + size);
#endif
    return s;
}

CONCUR__PRIVATE void concur__stack_free(concur__stack *s) {
#ifdef CONCUR__VALGRIND
    VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
    munmap(s->map, s->size + concur__page_size());
    CONCUR_FREE(s);
}

CONCUR__PRIVATE char *concur__stack_lo(concur__stack *s) { return s->map + concur__page_size(); }

/* >>loop ---------------------------------------------------------------------------
   One loop per thread. Coroutines wait through the waiter seam: the loop's park
   switches back to the loop, and whatever settles the waiter (a waker's unpark, a
   timer, a cancel, an fd event) makes the coroutine ready again, exactly once,
   because each of them must first win the waiter's state CAS. Wakers on other
   threads hand the coroutine over through a locked list and an eventfd.

   fds are registered with epoll once, edge-triggered, for both directions; each
   registration carries a generation number, so an event that was already fetched
   for an fd closed by concur_close never reaches a new fd with the same number. */

/* A coroutine's state says only whether the loop has started it and whether it has
   returned: where it is in between (running, queued, parked) is for the ready queue
   and its waiter to know, and a switch writes nothing more than it must. */

struct concur_co {
    /* What every switch and spawn touches comes first, in one cache line: with
       thousands alive, the record is cold each time its turn comes. hot is first:
       concur_yield's inline hand-off reaches it through the concur_co pointer. */
    concur__co_hot hot;
#ifndef CONCUR__SWITCH_X86
    concur__ctx ctx;
#endif
    concur__stack *stack;
    uint32_t refs;         /* the handle's and the loop's */
    uint32_t done;         /* published under lock for joiners */
    void *(*fn)(void *);
    void *arg;
    concur_loop *loop;
    void *result;
    int error;             /* -ECANCELED when cancelled before it started */
    uint32_t cancel_queued;/* on the loop's remote cancel list */
    concur_co *rnext;      /* remote start / wake list */
    concur_co *cnext;      /* remote cancel list */
    concur__waiter *waiter;/* while parked */
    int64_t deadline;
    size_t heap_idx;       /* 1-based position in the timer heap, 0: none */
    concur_mutex lock;     /* joiners */
    concur__wq joiners;
#ifdef CONCUR__ASAN
    void *asan_fake;
#endif
#ifdef CONCUR__TSAN
    void *tsan_fiber;
#endif
};

#ifdef CONCUR__SWITCH_X86
#  define CONCUR__CO_CTX(co) (&(co)->hot.sw)
#else
#  define CONCUR__CO_CTX(co) (&(co)->ctx)
#endif

typedef struct concur__fdslot {
    uint32_t gen;
    uint8_t registered;
    uint8_t nonblock;      /* O_NONBLOCK set by us, or found set */
    uint8_t not_socket;    /* send() said ENOTSOCK: write() from then on */
    uint8_t always_ready;  /* epoll refuses the fd (a regular file) */
    uint8_t stream;        /* a SOCK_STREAM socket: a short read empties it */
    uint8_t drained;       /* read to empty since its last readable event */
    uint8_t hup;           /* the peer hung up or failed: reads never block again */
    concur__waiter *rd, *wr;
} concur__fdslot;

struct concur_loop {
    concur__sched sched;     /* first: the seam's callbacks find the loop from it */
    concur__ctx main_ctx;
    concur__loop_hot hot;    /* current, ready queue, direct hand-offs */
    int64_t live CONCUR__ATOMIC64; /* started from other threads, not yet drained; atomic */
    int64_t local_live;      /* loop thread only: queued or alive here */
    concur_co *co_free;      /* finished coroutines' records, for the next concur_go */
    int co_cached;
    uint32_t running;
    int backend;
    int epfd;
    int wake_rd, wake_wr;    /* eventfd (both the same) or a pipe */
    concur__fdslot *fds;
    int nfds;
    concur_co **heap;
    size_t heap_len, heap_cap;
    concur__stack *stack_cache;
    int cached, cache_max;
    int cache_adaptive; /* default setting: cache every stack, trim when idle */
    size_t stack_size;
    concur_mutex remote_lock;
    concur_co *remote_head, *remote_tail, *cancel_head;
    struct pollfd *pfds;     /* poll backend */
    int *pfd_fds;
    int pfd_cap;
    unsigned busy_turns;
    unsigned direct_max;     /* a turn's allowance of direct hand-offs (concur__pace):
                                the turn starts direct at CONCUR__DIRECT_MAX - direct_max,
                                which keeps the hot compare against a constant */
    int64_t polled_at;       /* when the loop last polled for I/O */
#ifdef CONCUR__ASAN
    void *asan_fake;
    const void *main_bottom;
    size_t main_size;
#endif
#ifdef CONCUR__TSAN
    void *tsan_main;
#endif
};

static CONCUR__TLS concur_loop *concur__tls_loop;
/* Where concur_yield's inline hand-off finds the running loop: set while one of its
   coroutines runs, if this build switches with CONCUR__SWITCH (a sanitizer build must
   announce every switch, so it leaves it at the empty stand-in and the inline
   hand-off calls concur__yield_slow). */
#if defined(CONCUR__SWITCH_X86) && !defined(CONCUR__ASAN) && !defined(CONCUR__TSAN)
#  define CONCUR__INLINE_HANDOFF 1
#endif
/* CONCUR_STATIC files never inline the yield, so there it exists only to be set. */
#if (defined(__GNUC__) || defined(__clang__)) && \
    (!defined(CONCUR_STATIC) || defined(CONCUR__INLINE_HANDOFF))
/* Outside a loop's coroutines it names a loop with nothing ready, so the inline
   hand-off needs no test for NULL. */
static concur__loop_hot concur__no_loop;
#  ifdef CONCUR_STATIC
static
#  endif
__thread concur__loop_hot *concur__tls_hot = &concur__no_loop;
#endif

CONCUR__PRIVATE concur_co *concur__co_self(void) {
    concur_loop *L = concur__tls_loop;
    return L ? L->hot.current : NULL;
}

CONCUR__PRIVATE void concur__co_release(concur_co *co) {
    if (concur__fetch_add(&co->refs, (uint32_t)-1, ACQ_REL) == 1) CONCUR_FREE(co);
}

/* On the loop thread, for a record nobody else holds: spawning reuses it, sparing a
   malloc/free pair per coroutine. */
CONCUR__PRIVATE void concur__co_recycle(concur_loop *L, concur_co *co) {
    if (L->co_cached < L->cache_max || L->cache_adaptive) {
        co->hot.next = L->co_free;
        L->co_free = co;
        L->co_cached++;
    } else {
        CONCUR_FREE(co);
    }
}

/* ---- timers: a binary heap of parked coroutines by deadline ---- */
CONCUR__PRIVATE void concur__heap_set(concur_loop *L, size_t i, concur_co *co) {
    L->heap[i - 1] = co;
    co->heap_idx = i;
}

CONCUR__PRIVATE void concur__heap_up(concur_loop *L, size_t i) {
    concur_co *co = L->heap[i - 1];
    while (i > 1 && L->heap[i / 2 - 1]->deadline > co->deadline) {
        concur__heap_set(L, i, L->heap[i / 2 - 1]);
        i /= 2;
    }
    concur__heap_set(L, i, co);
}

CONCUR__PRIVATE void concur__heap_down(concur_loop *L, size_t i) {
    concur_co *co = L->heap[i - 1];
    for (;;) {
        size_t c = 2 * i;
        if (c > L->heap_len) break;
        if (c < L->heap_len && L->heap[c]->deadline < L->heap[c - 1]->deadline) c++;
        if (L->heap[c - 1]->deadline >= co->deadline) break;
        concur__heap_set(L, i, L->heap[c - 1]);
        i = c;
    }
    concur__heap_set(L, i, co);
}

CONCUR__PRIVATE int concur__heap_add(concur_loop *L, concur_co *co) {
    if (L->heap_len == L->heap_cap) {
        size_t cap = L->heap_cap ? L->heap_cap * 2 : 64;
        concur_co **h = (concur_co **)concur__malloc(cap * sizeof *h);
        if (!h) return -ENOMEM;
        if (L->heap_len) memcpy(h, L->heap, L->heap_len * sizeof *h);
        CONCUR_FREE(L->heap);
        L->heap = h;
        L->heap_cap = cap;
    }
    L->heap[L->heap_len++] = co;
    concur__heap_up(L, L->heap_len);
    return 0;
}

CONCUR__PRIVATE void concur__heap_remove(concur_loop *L, concur_co *co) {
    size_t i = co->heap_idx;
    co->heap_idx = 0;
    concur_co *last = L->heap[--L->heap_len];
    if (i - 1 == L->heap_len) return;
    concur__heap_set(L, i, last);
    concur__heap_up(L, i);
    concur__heap_down(L, last->heap_idx);
}

/* With thousands of coroutines alive, each one's record and stack top have left the
   cache by its next turn: start loading the next one's while this one runs (W5 went
   from about 145 to 105 ns per coroutine with 10 000 alive). */
CONCUR__PRIVATE void concur__prefetch_co(concur_co *co) {
#if defined(__GNUC__) && !defined(CONCUR_CORO_UCONTEXT)
    if (!co) return;
    char *sp = (char *)CONCUR__CO_CTX(co)->sp;
    if (sp) __builtin_prefetch(sp, 1);
    else if (co->stack) __builtin_prefetch(concur__stack_lo(co->stack) + co->stack->size - 64, 1);
    if (co->hot.next) __builtin_prefetch(co->hot.next); /* maybe stale: harmless */
#else
    (void)co;
#endif
}

/* ---- ready queue and hand-over from other threads ---- */
CONCUR__PRIVATE void concur__ready_push(concur_loop *L, concur_co *co) {
    if (L->hot.ready_tail) L->hot.ready_tail->hot.next = co; else L->hot.ready_head = co;
    L->hot.ready_tail = co;
}

CONCUR__PRIVATE void concur__loop_signal(concur_loop *L) {
    uint64_t one = 1;
    ssize_t n;
    do n = write(L->wake_wr, &one, L->wake_rd == L->wake_wr ? sizeof one : 1);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter or pipe is already full, so the loop wakes anyway. */
}

CONCUR__PRIVATE void concur__remote_push(concur_loop *L, concur_co *co) {
    concur__lock(&L->remote_lock);
    int was_idle = !L->remote_head && !L->cancel_head;
    co->rnext = NULL;
    if (L->remote_tail) L->remote_tail->rnext = co;
    else concur__store(&L->remote_head, co, RELEASE); /* the loop peeks without the lock */
    L->remote_tail = co;
    /* The loop empties both lists before it sleeps, so only the push that finds them
       empty needs to wake it. The wake-up goes out under the lock: the loop cannot
       take co off the list before that, so it cannot finish, return and have its
       eventfd closed by concur_loop_destroy while this write is still on its way
       (TSan saw it; a reused fd number would have got the 8 bytes). */
    if (was_idle) concur__loop_signal(L);
    concur__unlock(&L->remote_lock);
}

/* The loop's half of the waiter seam. */
CONCUR__PRIVATE void concur__loop_unpark(concur__sched *self, void *task) {
    concur_loop *L = (concur_loop *)self;
    concur_co *co = (concur_co *)task;
    if (concur__tls_loop == L) concur__ready_push(L, co);
    else concur__remote_push(L, co);
}

CONCUR__PRIVATE void *concur__loop_current_task(concur__sched *self) {
    return ((concur_loop *)self)->hot.current;
}

/* Every switch goes through these two, which tell ASan and TSan about the change of
   stack. asan_save is where ASan keeps the fake stack of the side that leaves (NULL
   for a coroutine that has finished and never comes back). */
#ifdef CONCUR__ASAN
#  define CONCUR__ASAN_SAVE(owner) (&(owner)->asan_fake)
#else
#  define CONCUR__ASAN_SAVE(owner) NULL
#endif

CONCUR__HOT void concur__swap_to_co(concur__ctx *from, void **asan_save, concur_co *to) {
#ifdef CONCUR__ASAN
    __sanitizer_start_switch_fiber(asan_save, concur__stack_lo(to->stack), to->stack->size);
#endif
#ifdef CONCUR__TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    concur__ctx_swap(from, CONCUR__CO_CTX(to));
#ifdef CONCUR__ASAN
    __sanitizer_finish_switch_fiber(*asan_save, NULL, NULL);
#else
    (void)asan_save;
#endif
}

CONCUR__HOT void concur__swap_to_loop(concur_loop *L, concur__ctx *from, void **asan_save) {
#ifdef CONCUR__ASAN
    __sanitizer_start_switch_fiber(asan_save, L->main_bottom, L->main_size);
#endif
#ifdef CONCUR__TSAN
    __tsan_switch_to_fiber(L->tsan_main, 0);
#endif
    concur__ctx_swap(from, &L->main_ctx);
#ifdef CONCUR__ASAN
    if (asan_save) __sanitizer_finish_switch_fiber(*asan_save, NULL, NULL);
#else
    (void)asan_save;
#endif
}

CONCUR__PRIVATE void concur__co_suspend(concur_loop *L, concur_co *co) {
    concur__swap_to_loop(L, CONCUR__CO_CTX(co), CONCUR__ASAN_SAVE(co));
}

/* Straight from one coroutine to another that is ready, without the loop in between:
   a yield or a park then costs one switch instead of two. Whoever resumes `from`
   later (the loop or another coroutine) sets L->hot.current to it; nothing else says
   which coroutine runs (waiters ask the loop, concur__loop_current_task). */
CONCUR__PRIVATE void concur__co_switch(concur_loop *L, concur_co *from, concur_co *to) {
    L->hot.current = to;
    concur__swap_to_co(CONCUR__CO_CTX(from), CONCUR__ASAN_SAVE(from), to);
}

/* The running coroutine gives up the CPU (it has parked, or queued itself). The loop
   gets control back after the turn's allowance of direct hand-offs, so it keeps polling
   for I/O and firing timers; new coroutines are always started by the loop. At most
   CONCUR__DIRECT_MAX: 256 hand-offs of yielding coroutines take about 2 µs, and each
   return to the loop cost a yield storm about 0.3 ns per switch at 64 (W4: 7.08 ->
   6.73-6.94 ns). Coroutines that compute between yields make turns long; the loop
   then lowers direct_max (see concur__pace). */
CONCUR__PRIVATE void concur__co_block(concur_loop *L, concur_co *co) {
    concur_co *next = L->hot.ready_head;
    if (next && next != co && next->hot.state != CONCUR__CO_NEW && L->hot.direct < CONCUR__DIRECT_MAX) {
        L->hot.direct++;
        if (next == L->hot.ready_tail) L->hot.ready_head = L->hot.ready_tail = NULL;
        else L->hot.ready_head = next->hot.next;
        concur__co_switch(L, co, next);
    } else {
        concur__co_suspend(L, co);
    }
}

CONCUR__PRIVATE int concur__take_cancel(concur_co *co) {
    return concur__xchg(&co->hot.cancel, 0, ACQ_REL) != 0;
}

CONCUR__PRIVATE int concur__loop_park(concur__sched *self, concur__waiter *w, int64_t deadline) {
    concur_loop *L = (concur_loop *)self;
    concur_co *co = (concur_co *)w->task;
    if (concur__load(&co->hot.cancel, ACQUIRE)) {
        uint32_t s = CONCUR__W_WAITING;
        if (concur__cas(&w->state, &s, CONCUR__W_CANCELED, ACQ_REL)) {
            concur__take_cancel(co);
            return -ECANCELED;
        }
    }
    co->waiter = w;
    co->deadline = deadline;
    if (deadline != CONCUR__NEVER && concur__heap_add(L, co) != 0) {
        /* No memory for the timer: fail now rather than wait forever (the state
           is closed as a timeout would close it, so no waker claims it). */
        uint32_t s = CONCUR__W_WAITING;
        if (concur__cas(&w->state, &s, CONCUR__W_TIMEDOUT, ACQ_REL)) {
            co->waiter = NULL;
            return -ENOMEM;
        }
    }
    /* Block even when the state already says how the wait ended: whoever moved it
       out of WAITING (a waker on another thread, a timer, a cancel) has queued this
       coroutine to run, or is about to, exactly once. Returning early would leave
       that resume to arrive later, at a coroutine that has moved on: queued twice,
       or finished and recycled. */
    int rc;
    for (;;) {
        concur__co_block(L, co);
        uint32_t s = concur__load(&w->state, ACQUIRE);
        if (s == CONCUR__W_NOTIFIED) { rc = 0; break; }
        if (s == CONCUR__W_TIMEDOUT) { rc = -ETIMEDOUT; break; }
        if (s == CONCUR__W_CANCELED) { rc = -ECANCELED; concur__take_cancel(co); break; }
    }
    if (co->heap_idx) concur__heap_remove(L, co);
    co->waiter = NULL;
    return rc;
}

/* Settles a parked coroutine's waiter from the loop (timer, cancel, close). */
CONCUR__PRIVATE void concur__co_settle(concur_loop *L, concur_co *co, uint32_t how) {
    concur__waiter *w = co->waiter;
    uint32_t s = CONCUR__W_WAITING;
    if (w && concur__cas(&w->state, &s, how, ACQ_REL)) concur__ready_push(L, co);
}

/* ---- running coroutines ---- */
CONCUR__PRIVATE CONCUR__NORETURN void concur__co_main(void) {
    concur_loop *L = concur__tls_loop;
    concur_co *co = L->hot.current;
#ifdef CONCUR__ASAN
    __sanitizer_finish_switch_fiber(NULL, &L->main_bottom, &L->main_size);
#endif
    co->result = co->fn(co->arg);
    co->hot.state = CONCUR__CO_DONE;
    concur__swap_to_loop(L, CONCUR__CO_CTX(co), NULL);
    CONCUR_ASSERT(!"concur: a finished coroutine was resumed");
    abort();
}

CONCUR__PRIVATE concur__stack *concur__stack_get(concur_loop *L) {
    concur__stack *s = L->stack_cache;
    if (s) {
        L->stack_cache = s->next_free;
        L->cached--;
        return s;
    }
    return concur__stack_new(L->stack_size);
}

/* With the default setting every stack comes back to the cache (so it never holds
   more than were alive at once): a burst of many short coroutines then costs no mmap,
   guard and munmap per coroutine (about 9 us here, against 0.1 us for a reused one).
   concur__stack_trim gives the excess back while the loop waits for I/O. */
CONCUR__PRIVATE void concur__stack_put(concur_loop *L, concur__stack *s) {
    if (L->cached < L->cache_max || L->cache_adaptive) {
        s->next_free = L->stack_cache;
        L->stack_cache = s;
        L->cached++;
    } else {
        concur__stack_free(s);
    }
}

/* A few at a time, so that a loop going idle does not hold up the events that wake
   it for long. */
CONCUR__PRIVATE void concur__stack_trim(concur_loop *L) {
    for (int i = 0; i < 16 && L->cached > L->cache_max; i++) {
        concur__stack *s = L->stack_cache;
        L->stack_cache = s->next_free;
        L->cached--;
        concur__stack_free(s);
    }
    for (int i = 0; i < 64 && L->co_cached > L->cache_max; i++) {
        concur_co *co = L->co_free;
        L->co_free = co->hot.next;
        L->co_cached--;
        CONCUR_FREE(co);
    }
}

/* On the loop's stack, after the coroutine switched away for the last time (or
   never started). */
CONCUR__PRIVATE void concur__co_finish(concur_loop *L, concur_co *co) {
    if (co->stack) {
        concur__stack_put(L, co->stack);
        co->stack = NULL;
    }
#ifdef CONCUR__TSAN
    if (co->tsan_fiber) __tsan_destroy_fiber(co->tsan_fiber);
    co->tsan_fiber = NULL;
#endif
    co->hot.state = CONCUR__CO_DONE;
    L->local_live--;
    /* Only the loop's reference left: detached, so no joiner can exist or appear. */
    if (concur__load(&co->refs, ACQUIRE) == 1) {
        concur__co_recycle(L, co);
        return;
    }
    concur__wakelist wl = {NULL};
    concur__lock(&co->lock);
    concur__store(&co->done, 1, RELEASE);
    concur__wq_claim_all(&co->joiners, &wl, 0);
    concur__unlock(&co->lock);
    concur__wakelist_fire(&wl);
    if (concur__fetch_add(&co->refs, (uint32_t)-1, ACQ_REL) == 1) concur__co_recycle(L, co);
}

CONCUR__PRIVATE void concur__co_resume(concur_loop *L, concur_co *co) {
    if (co->hot.state == CONCUR__CO_NEW) {
        if (concur__load(&co->hot.cancel, RELAXED) && concur__take_cancel(co)) {
            co->error = -ECANCELED;
            concur__co_finish(L, co);
            return;
        }
        if (!co->stack) co->stack = concur__stack_get(L);
        if (!co->stack) {
            co->error = -ENOMEM;
            concur__co_finish(L, co);
            return;
        }
        concur__ctx_make(CONCUR__CO_CTX(co), concur__stack_lo(co->stack), co->stack->size, concur__co_main);
#ifdef CONCUR__TSAN
        co->tsan_fiber = __tsan_create_fiber(0);
#endif
    }
    concur__sched *prev_sched = concur__cur_sched;
    concur__cur_sched = &L->sched; /* whose current task is L->hot.current */
    L->hot.current = co;
    co->hot.state = CONCUR__CO_STARTED;
#ifdef CONCUR__INLINE_HANDOFF
    concur__tls_hot = &L->hot;
#endif
    concur__swap_to_co(&L->main_ctx, CONCUR__ASAN_SAVE(L), co);
#ifdef CONCUR__INLINE_HANDOFF
    concur__tls_hot = &concur__no_loop;
#endif
    /* Not necessarily co: it may have handed over directly to others since. */
    concur_co *back = L->hot.current;
    L->hot.current = NULL;
    concur__cur_sched = prev_sched;
    if (back->hot.state == CONCUR__CO_DONE) concur__co_finish(L, back);
}

/* ---- fd table ---- */
CONCUR__PRIVATE concur__fdslot *concur__fdslot_of(concur_loop *L, int fd) {
    if (fd < 0) return NULL;
    if (fd >= L->nfds) {
        int n = L->nfds ? L->nfds : 64;
        while (n <= fd) n *= 2;
        concur__fdslot *t = (concur__fdslot *)concur__malloc((size_t)n * sizeof *t);
        if (!t) return NULL;
        if (L->nfds) memcpy(t, L->fds, (size_t)L->nfds * sizeof *t);
        memset(t + L->nfds, 0, (size_t)(n - L->nfds) * sizeof *t);
        CONCUR_FREE(L->fds);
        L->fds = t;
        L->nfds = n;
    }
    return &L->fds[fd];
}

/* A new fd with this number exists (accept, socket): forget the old one. */
CONCUR__PRIVATE void concur__fdslot_reset(concur_loop *L, int fd) {
    if (fd >= 0 && fd < L->nfds) {
        concur__fdslot *s = &L->fds[fd];
        s->gen++;
        s->registered = s->nonblock = s->not_socket = s->always_ready = 0;
        s->stream = s->drained = s->hup = 0;
    }
}

CONCUR__PRIVATE void concur__fd_wake(concur__fdslot *s, concur__waiter *w, int result) {
    if (s->rd == w) s->rd = NULL;
    if (s->wr == w) s->wr = NULL;
    if (concur__waiter_claim(w)) concur__waiter_publish(w, result);
}

CONCUR__PRIVATE void concur__fd_event(concur_loop *L, int fd, uint32_t gen, int in, int out, int err,
                                      int hup) {
    if (fd < 0 || fd >= L->nfds) return;
    concur__fdslot *s = &L->fds[fd];
    if (s->gen != gen) return; /* fetched before the fd was closed: stale */
    if (in || err) s->drained = 0;
    if (hup || err) s->hup = 1;
    concur__waiter *rd = s->rd, *wr = s->wr;
    if (rd && (in || err)) concur__fd_wake(s, rd, err ? CONCUR_READABLE | CONCUR_WRITABLE : CONCUR_READABLE);
    if (wr && wr != rd && (out || err))
        concur__fd_wake(s, wr, err ? CONCUR_READABLE | CONCUR_WRITABLE : CONCUR_WRITABLE);
}

/* In a coroutine: parks until fd is ready. Returns ready bits or a negative code. */
CONCUR__PRIVATE int concur__loop_wait_fd(concur_loop *L, int fd, int events, int64_t deadline) {
    concur__fdslot *s = concur__fdslot_of(L, fd);
    if (!s) return fd < 0 ? -EBADF : -ENOMEM;
    if (s->always_ready) return events;
#ifdef __linux__
    if (L->backend == CONCUR_BACKEND_EPOLL && !s->registered) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)s->gen << 32);
        if (CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, ENOMEM) || epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            if (errno == EEXIST) {
                if (epoll_ctl(L->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) return -errno;
            } else if (errno == EPERM) {
                s->always_ready = 1; /* regular files never block */
                return events;
            } else {
                return -errno;
            }
        }
        s->registered = 1;
        int type = 0;
        socklen_t type_len = sizeof type;
        s->stream = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM;
    }
#endif
    if (!s->registered) { /* poll: say EBADF now, not after a turn of the loop */
        if (fcntl(fd, F_GETFD) < 0) return -errno;
        s->registered = 1;
    }
    if (((events & CONCUR_READABLE) && s->rd) || ((events & CONCUR_WRITABLE) && s->wr))
        return -EBUSY;
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    if (events & CONCUR_READABLE) s->rd = &w;
    if (events & CONCUR_WRITABLE) s->wr = &w;
    int rc = concur__park(&w, deadline);
    s = &L->fds[fd]; /* the table may have grown meanwhile */
    if (s->rd == &w) s->rd = NULL;
    if (s->wr == &w) s->wr = NULL;
    return rc == 0 ? w.result : rc;
}

/* ---- polling ---- */
CONCUR__PRIVATE void concur__drain_wake(concur_loop *L) {
    char buf[64];
    while (read(L->wake_rd, buf, sizeof buf) > 0) {
    }
}

CONCUR__PRIVATE int concur__poll_timeout_ms(concur_loop *L) {
    if (L->hot.ready_head) return 0;
    if (!L->heap_len) return -1;
    return concur__poll_ms(L->heap[0]->deadline);
}

CONCUR__PRIVATE void concur__poll_io(concur_loop *L) {
    int timeout = concur__poll_timeout_ms(L);
#ifdef __linux__
    if (L->backend == CONCUR_BACKEND_EPOLL) {
        struct epoll_event evs[256];
        int n = epoll_wait(L->epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            uint64_t data = evs[i].data.u64;
            uint32_t e = evs[i].events;
            if (data == UINT64_MAX) { concur__drain_wake(L); continue; }
            concur__fd_event(L, (int)(uint32_t)data, (uint32_t)(data >> 32),
                             (e & (EPOLLIN | EPOLLRDHUP)) != 0, (e & EPOLLOUT) != 0,
                             (e & (EPOLLERR | EPOLLHUP)) != 0,
                             (e & (EPOLLRDHUP | EPOLLHUP)) != 0);
        }
        return;
    }
#endif
    /* poll(): rebuilt from the waiting fds each turn, O(fds) - the portable path. */
    int n = 1;
    for (int fd = 0; fd < L->nfds; fd++)
        if (L->fds[fd].rd || L->fds[fd].wr) n++;
    if (n > L->pfd_cap) {
        int cap = n * 2;
        struct pollfd *p = (struct pollfd *)concur__malloc((size_t)cap * sizeof *p);
        int *f = (int *)concur__malloc((size_t)cap * sizeof *f);
        if (!p || !f) {
            CONCUR_FREE(p);
            CONCUR_FREE(f);
            timeout = timeout < 0 || timeout > 10 ? 10 : timeout; /* retry soon */
            n = 1;
        } else {
            CONCUR_FREE(L->pfds);
            CONCUR_FREE(L->pfd_fds);
            L->pfds = p;
            L->pfd_fds = f;
            L->pfd_cap = cap;
        }
    }
    struct pollfd local[1];
    struct pollfd *pf = L->pfds ? L->pfds : local;
    pf[0].fd = L->wake_rd;
    pf[0].events = POLLIN;
    pf[0].revents = 0;
    int k = 1;
    for (int fd = 0; fd < L->nfds && k < n; fd++) {
        concur__fdslot *s = &L->fds[fd];
        if (!s->rd && !s->wr) continue;
        pf[k].fd = fd;
        pf[k].events = (short)((s->rd ? POLLIN : 0) | (s->wr ? POLLOUT : 0));
        pf[k].revents = 0;
        L->pfd_fds[k] = (int)s->gen;
        k++;
    }
    int r = poll(pf, (nfds_t)k, timeout);
    if (r <= 0) return;
    if (pf[0].revents) concur__drain_wake(L);
    for (int i = 1; i < k; i++) {
        short e = pf[i].revents;
        if (!e) continue;
        if (e & POLLNVAL) { /* closed behind the loop's back */
            concur__fdslot *s = &L->fds[pf[i].fd];
            concur__waiter *rd = s->rd, *wr = s->wr;
            if (rd) concur__fd_wake(s, rd, -EBADF);
            if (wr && wr != rd) concur__fd_wake(s, wr, -EBADF);
            continue;
        }
        concur__fd_event(L, pf[i].fd, (uint32_t)L->pfd_fds[i], (e & POLLIN) != 0,
                         (e & POLLOUT) != 0, (e & (POLLERR | POLLHUP | POLLNVAL)) != 0,
                         (e & POLLHUP) != 0);
    }
}

CONCUR__PRIVATE void concur__fire_timers(concur_loop *L, int64_t now) {
    while (L->heap_len && L->heap[0]->deadline <= now) {
        concur_co *co = L->heap[0];
        concur__heap_remove(L, co);
        concur__co_settle(L, co, CONCUR__W_TIMEDOUT);
    }
}

CONCUR__PRIVATE void concur__cancel_local(concur_loop *L, concur_co *co) {
    if (co->hot.state == CONCUR__CO_DONE) return;
    concur__store(&co->hot.cancel, 1, RELEASE);
    concur__co_settle(L, co, CONCUR__W_CANCELED); /* if it is parked */
}

CONCUR__PRIVATE void concur__drain_remote(concur_loop *L) {
    if (!concur__load(&L->remote_head, ACQUIRE) && !concur__load(&L->cancel_head, ACQUIRE)) return;
    concur__lock(&L->remote_lock);
    concur_co *r = L->remote_head, *c = L->cancel_head;
    concur__store(&L->remote_head, (concur_co *)NULL, RELAXED);
    concur__store(&L->cancel_head, (concur_co *)NULL, RELAXED);
    L->remote_tail = NULL;
    concur__unlock(&L->remote_lock);
    while (r) {
        concur_co *next = r->rnext;
        if (r->hot.state == CONCUR__CO_NEW) { /* counted here from now on */
            L->local_live++;
            concur__fetch_add(&L->live, -1, ACQ_REL);
        }
        concur__ready_push(L, r);
        r = next;
    }
    while (c) {
        /* The link is read before the flag is cleared: from then on a new cancel may
           queue c again, writing its link (it reads the flag with acquire). */
        concur_co *next = c->cnext;
        concur__store(&c->cancel_queued, 0, RELEASE);
        concur__cancel_local(L, c);
        concur__co_release(c);
        c = next;
    }
}

/* ---- stack overflow report ----
   A fault inside the current coroutine's guard page prints what happened and how to
   fix it, then dies of the same SIGSEGV. Installed only when SIGSEGV has its default
   action, so an application's (or a sanitizer's) own handler always wins. */
#if defined(CONCUR__POSIX2008) && defined(SA_ONSTACK)
#  define CONCUR__OVERFLOW_REPORT 1
static struct sigaction concur__segv_old;
static uint32_t concur__segv_installed;

static void concur__segv_handler(int sig, siginfo_t *si, void *uctx) {
    (void)uctx;
    concur_loop *L = concur__tls_loop;
    concur_co *co = L ? L->hot.current : NULL;
    if (co && co->stack) {
        char *addr = (char *)si->si_addr;
        size_t page = concur__page_size();
        if (addr >= co->stack->map - page && addr < co->stack->map + page) {
            char msg[200];
            int n = snprintf(msg, sizeof msg,
                             "concur: coroutine stack overflow (stack size %zu KiB); raise "
                             "concur_loop_desc.stack_size\n",
                             co->stack->size / 1024);
            if (n > 0) {
                ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
                (void)w;
            }
        }
    }
    /* Back to the previous action and return: the access faults again and the
       process dies as it would have without us. */
    sigaction(sig, &concur__segv_old, NULL);
}

CONCUR__PRIVATE void concur__overflow_report_install(void) {
    uint32_t expected = 0;
    if (!concur__cas(&concur__segv_installed, &expected, 1, ACQ_REL)) return;
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) ||
        cur.sa_handler != SIG_DFL)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = concur__segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    concur__segv_old = cur;
    sigaction(SIGSEGV, &sa, NULL);
}
#endif

/* ---- public ---- */

CONCUR_API concur_loop *concur_loop_create(const concur_loop_desc *desc) {
    concur_loop_desc d;
    if (desc) d = *desc;
    else memset(&d, 0, sizeof d);
    if (d.backend < CONCUR_BACKEND_AUTO || d.backend > CONCUR_BACKEND_POLL ||
        d.stack_size > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    concur_loop *L = (concur_loop *)concur__malloc(sizeof *L);
    if (!L) { errno = ENOMEM; return NULL; }
    memset(L, 0, sizeof *L);
    L->sched.park = concur__loop_park;
    L->sched.unpark = concur__loop_unpark;
    L->sched.current = concur__loop_current_task;
    size_t page = concur__page_size();
    size_t size = d.stack_size ? d.stack_size : 256 * 1024;
    if (size < 16 * 1024) size = 16 * 1024;
    L->stack_size = (size + page - 1) / page * page;
    L->cache_max = d.stack_cache < 0 ? 0 : d.stack_cache ? d.stack_cache : CONCUR__STACK_CACHE_DEFAULT;
    L->cache_adaptive = d.stack_cache == 0;
#if defined(__linux__) && !defined(CONCUR_IO_POLL)
    L->backend = d.backend == CONCUR_BACKEND_POLL ? CONCUR_BACKEND_POLL : CONCUR_BACKEND_EPOLL;
#else
    L->backend = CONCUR_BACKEND_POLL;
#endif
    L->epfd = L->wake_rd = L->wake_wr = -1;
    int err = 0;
#ifdef __linux__
    L->wake_rd = L->wake_wr = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, EMFILE) ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (L->wake_rd < 0) err = errno;
    if (!err && L->backend == CONCUR_BACKEND_EPOLL) {
        L->epfd = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, EMFILE) ? -1 : epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u64 = UINT64_MAX;
        if (L->epfd < 0 || CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, ENOMEM) ||
            epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->wake_rd, &ev) != 0)
            err = errno;
    }
#else
    int p[2];
    if (pipe(p) != 0) err = errno;
    else {
        L->wake_rd = p[0];
        L->wake_wr = p[1];
        for (int i = 0; i < 2; i++) {
            fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
            fcntl(p[i], F_SETFD, FD_CLOEXEC);
        }
    }
#endif
    if (err) {
        if (L->epfd >= 0) close(L->epfd);
        if (L->wake_rd >= 0) close(L->wake_rd);
        if (L->wake_wr >= 0 && L->wake_wr != L->wake_rd) close(L->wake_wr);
        CONCUR_FREE(L);
        errno = err;
        return NULL;
    }
    return L;
}

/* Coroutines that compute between yields must not starve the others' I/O, timers
   and wake-ups from other threads (asyncio's loop polls once per iteration). While
   coroutines stay ready the loop still polls at least every CONCUR__BUSY_POLL_NS, and
   it keeps turns about that short: a turn that ran longer scales the allowance of
   direct hand-offs down in proportion, one well under it doubles the allowance back
   towards CONCUR__DIRECT_MAX. A loop starts with a small allowance, so coroutines
   that compute from the start never make a long first turn. What remains: one long
   turn when coroutines turn from yielding fast to computing. Costs one clock read
   per turn that handed off (a turn of yields without work is 256 hand-offs). */
#define CONCUR__BUSY_POLL_NS 1000000
CONCUR__PRIVATE void concur__pace(concur_loop *L, int64_t turn_ns) {
    if (turn_ns > CONCUR__BUSY_POLL_NS)
        L->direct_max = (unsigned)((int64_t)L->direct_max * CONCUR__BUSY_POLL_NS / turn_ns);
    else if (turn_ns < CONCUR__BUSY_POLL_NS / 4 && L->direct_max < CONCUR__DIRECT_MAX)
        L->direct_max = L->direct_max < CONCUR__DIRECT_MAX / 2 ? L->direct_max * 2 + 1
                                                               : CONCUR__DIRECT_MAX;
}

CONCUR_API int concur_loop_run(concur_loop *L) {
    if (!L) return -EINVAL;
    if (concur__tls_loop) return -EBUSY;
    uint32_t expected = 0;
    if (!concur__cas(&L->running, &expected, 1, ACQ_REL)) return -EBUSY;
    concur__tls_loop = L;
#ifdef CONCUR__TSAN
    L->tsan_main = __tsan_get_current_fiber();
#endif
#ifdef CONCUR__OVERFLOW_REPORT
    /* The report runs on an alternate signal stack: the faulting one is full. */
    concur__overflow_report_install();
    stack_t old_alt, alt;
    void *alt_mem = NULL;
    if (sigaltstack(NULL, &old_alt) == 0 && (old_alt.ss_flags & SS_DISABLE)) {
        size_t alt_size = 64 * 1024;
        /* Not through the fault hook: without it only the overflow report is lost,
           which no caller could be told about anyway. */
        alt_mem = CONCUR_MALLOC(alt_size);
        if (alt_mem) {
            alt.ss_sp = alt_mem;
            alt.ss_size = alt_size;
            alt.ss_flags = 0;
            if (sigaltstack(&alt, NULL) != 0) { CONCUR_FREE(alt_mem); alt_mem = NULL; }
        }
    }
#endif
    L->direct_max = 1;
    int64_t now = concur__now_ns(), mark = now; /* the last clock read */
    unsigned turns = 0;                         /* turns since mark */
    L->polled_at = now;
    for (;;) {
        concur__drain_remote(L);
        unsigned direct_from = CONCUR__DIRECT_MAX - L->direct_max;
        L->hot.direct = direct_from;
        /* One batch: coroutines made ready while it runs wait for the next turn, so
           the loop polls for I/O between batches and nobody starves. */
        concur_co *co = L->hot.ready_head, *last = L->hot.ready_tail;
        L->hot.ready_head = L->hot.ready_tail = NULL;
        unsigned ran = 0;
        while (co) {
            concur_co *next = co == last ? NULL : co->hot.next;
            concur__prefetch_co(next);
            concur__co_resume(L, co);
            co = next;
            ran++;
        }
        if (L->local_live == 0 && concur__load(&L->live, ACQUIRE) == 0) {
            /* A cancel from another thread that raced with its coroutine's end holds
               a reference on the list: give it back now, not at the next run. */
            concur__drain_remote(L);
            break;
        }
        /* A turn that ran one coroutine, which handed off to nobody, lasted one of its
           slices: a lone coroutine that yields in a loop reads the clock every 4th
           turn only (a read added 14 ns to its 33 ns yield), and the turns in between
           are paced by their average. Pending timers need the time every turn. */
        turns++;
        unsigned busy = L->hot.ready_head ? ++L->busy_turns : 0;
        if (ran > 1 || L->hot.direct != direct_from || (busy & 3) == 0 || L->heap_len) {
            now = concur__now_ns();
            concur__pace(L, turns == 1 ? now - mark : (now - mark) / turns);
            mark = now;
            turns = 0;
        }
        /* While coroutines stay ready a poll would find nothing most times and costs
           a system call: poll every 32nd busy turn, at least every
           CONCUR__BUSY_POLL_NS, and always before sleeping. */
        if (!L->hot.ready_head || (busy & 31) == 0 || now - L->polled_at >= CONCUR__BUSY_POLL_NS) {
            if (!L->hot.ready_head && (L->cached > L->cache_max || L->co_cached > L->cache_max))
                concur__stack_trim(L);
            concur__poll_io(L);
            now = mark = L->polled_at = concur__now_ns(); /* time asleep is no turn's */
            turns = 0;
        }
        if (L->heap_len) concur__fire_timers(L, now);
    }
#ifdef CONCUR__OVERFLOW_REPORT
    if (alt_mem) {
        stack_t off;
        memset(&off, 0, sizeof off);
        off.ss_flags = SS_DISABLE;
        sigaltstack(&off, NULL);
        CONCUR_FREE(alt_mem);
    }
#endif
    concur__tls_loop = NULL;
    concur__store(&L->running, 0, RELEASE);
    return 0;
}

CONCUR_API int concur_loop_destroy(concur_loop *L) {
    if (!L) return -EINVAL;
    if (concur__load(&L->running, ACQUIRE) || concur__load(&L->live, ACQUIRE) > 0 ||
        L->local_live > 0)
        return -EBUSY;
    /* Cancels queued after the last run ended (their coroutines are finished). */
    concur__drain_remote(L);
    while (L->co_free) {
        concur_co *co = L->co_free;
        L->co_free = co->hot.next;
        CONCUR_FREE(co);
    }
    while (L->stack_cache) {
        concur__stack *s = L->stack_cache;
        L->stack_cache = s->next_free;
        concur__stack_free(s);
    }
    if (L->epfd >= 0) close(L->epfd);
    close(L->wake_rd);
    if (L->wake_wr != L->wake_rd) close(L->wake_wr);
    CONCUR_FREE(L->fds);
    CONCUR_FREE(L->heap);
    CONCUR_FREE(L->pfds);
    CONCUR_FREE(L->pfd_fds);
    CONCUR_FREE(L);
    return 0;
}

CONCUR_API concur_loop *concur_loop_current(void) { return concur__tls_loop; }

CONCUR_API concur_co *concur_co_current(void) { return concur__co_self(); }

CONCUR_API concur_co *concur_go(concur_loop *loop, void *(*fn)(void *), void *arg) {
    if (!loop) loop = concur__tls_loop;
    if (!loop || !fn) { errno = EINVAL; return NULL; }
    int here = concur__tls_loop == loop;
    concur_co *co;
    if (here && loop->co_free) {
        co = loop->co_free;
        loop->co_free = co->hot.next;
        loop->co_cached--;
    } else {
        co = (concur_co *)concur__malloc(sizeof *co);
        if (!co) { errno = ENOMEM; return NULL; }
    }
    /* A copy, not memset: for a record this small, memset becomes rep stos, whose
       start-up alone costs a tenth of a spawn. */
    static concur_co zero_co; /* never written; a const one would be ill-formed C++ */
    *co = zero_co;
    co->loop = loop;
    co->fn = fn;
    co->arg = arg;
    co->refs = 2;
    if (here) {
        co->stack = concur__stack_get(loop);
        if (!co->stack) {
            concur__co_recycle(loop, co);
            errno = ENOMEM;
            return NULL;
        }
        loop->local_live++;
        concur__ready_push(loop, co);
    } else {
        concur__fetch_add(&loop->live, 1, ACQ_REL);
        concur__remote_push(loop, co);
    }
    return co;
}

CONCUR_API int concur_join(concur_co *co, double timeout, void **result) {
    if (result) *result = NULL;
    if (!co) return -EINVAL;
    if (co == concur__co_self()) return -EDEADLK;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur__lock(&co->lock);
    if (!concur__load(&co->done, ACQUIRE)) {
        if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) {
            concur__unlock(&co->lock);
            return -ETIMEDOUT;
        }
        concur__waiter w;
        concur__waiter_init(&w, NULL);
        rc = concur__wait_on(&co->lock, &co->joiners, &w, deadline);
        if (rc) return rc;
    } else {
        concur__unlock(&co->lock);
    }
    /* done was published under the lock after result/error were written. */
    rc = co->error;
    if (result && !rc) *result = co->result;
    concur__co_release(co); /* the loop holds its own reference until it is done */
    return rc;
}

CONCUR_API int concur_detach(concur_co *co) {
    if (!co) return -EINVAL;
    concur__co_release(co);
    return 0;
}

CONCUR_API int concur_cancel(concur_co *co) {
    if (!co) return -EINVAL;
    if (concur__load(&co->done, ACQUIRE)) return -EALREADY;
    concur_loop *L = co->loop;
    if (concur__tls_loop == L) {
        concur__cancel_local(L, co);
        return 0;
    }
    concur__lock(&L->remote_lock);
    int was_idle = !L->remote_head && !L->cancel_head;
    int queue = !concur__load(&co->cancel_queued, ACQUIRE);
    if (queue) {
        concur__store(&co->cancel_queued, 1, RELAXED);
        concur__fetch_add(&co->refs, 1, ACQ_REL);
        co->cnext = L->cancel_head;
        concur__store(&L->cancel_head, co, RELEASE);
    }
    if (queue && was_idle) concur__loop_signal(L); /* under the lock: see concur__remote_push */
    concur__unlock(&L->remote_lock);
    return 0;
}

CONCUR_API int (concur_yield)(void) {
#ifdef CONCUR__INLINE_YIELD
    return concur__yield_inline();
#else
    return concur__yield_slow();
#endif
}

CONCUR_API int concur__yield_slow(void) {
    concur_loop *L = concur__tls_loop;
    concur_co *co = L ? L->hot.current : NULL;
    if (!co) {
        sched_yield();
        return 0;
    }
    concur__ready_push(L, co);
    concur__co_block(L, co);
    /* A coroutine that only computes and yields must still be stoppable (asyncio's
       sleep(0) raises CancelledError the same way). Only the loop's thread sets the
       flag, so a plain load sees it. */
    if (concur__load(&co->hot.cancel, RELAXED) && concur__take_cancel(co)) return -ECANCELED;
    return 0;
}

CONCUR_API int concur_sleep(double seconds) {
    if (seconds != seconds || seconds < 0) return -EINVAL;
    int64_t deadline;
    concur__deadline(seconds, &deadline);
    concur__waiter w;
    concur__waiter_init(&w, NULL);
    int rc = concur__park(&w, deadline);
    return rc == -ETIMEDOUT ? 0 : rc;
}

/* ---- fd wrappers ---- */

/* The loop of the running coroutine, or NULL when the caller is a plain thread. */
CONCUR__PRIVATE concur_loop *concur__io_loop(void) {
    concur_loop *L = concur__tls_loop;
    return L && L->hot.current ? L : NULL;
}

CONCUR__PRIVATE int concur__set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    return 0;
}

/* Before a coroutine's first syscall on fd: the fd must not block the loop, and a
   pending cancel is delivered here. */
CONCUR__PRIVATE int concur__io_enter(concur_loop *L, int fd) {
    if (fd < 0) return -EBADF;
    if (!L) return 0;
    if (concur__load(&L->hot.current->hot.cancel, RELAXED) && concur__take_cancel(L->hot.current))
        return -ECANCELED;
    concur__fdslot *s = concur__fdslot_of(L, fd);
    if (!s) return -ENOMEM;
    if (!s->nonblock) {
        int rc = concur__set_nonblock(fd);
        if (rc) return rc;
        s->nonblock = 1;
    }
    return 0;
}

/* Thread path: poll with the remaining time, surviving EINTR. */
CONCUR__PRIVATE int concur__thread_wait_fd(int fd, int events, int64_t deadline) {
    for (;;) {
        int ms = concur__poll_ms(deadline);
        if (ms == 0) return -ETIMEDOUT;
        struct pollfd p;
        p.fd = fd;
        p.events = (short)(((events & CONCUR_READABLE) ? POLLIN : 0) |
                           ((events & CONCUR_WRITABLE) ? POLLOUT : 0));
        p.revents = 0;
        int r = poll(&p, 1, ms);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) {
            if (deadline != CONCUR__NEVER && concur__now_ns() >= deadline) return -ETIMEDOUT;
            continue;
        }
        if (p.revents & POLLNVAL) return -EBADF;
        int got = 0;
        if (p.revents & POLLIN) got |= CONCUR_READABLE;
        if (p.revents & POLLOUT) got |= CONCUR_WRITABLE;
        if (p.revents & (POLLERR | POLLHUP)) got |= events;
        return got & events ? got & events : events;
    }
}

CONCUR__PRIVATE int concur__wait_fd_deadline(concur_loop *L, int fd, int events, int64_t deadline) {
    if (L) return concur__loop_wait_fd(L, fd, events, deadline);
    return concur__thread_wait_fd(fd, events, deadline);
}

CONCUR_API int concur_wait_fd(int fd, int events, double timeout) {
    if (fd < 0) return -EBADF;
    if (!(events & (CONCUR_READABLE | CONCUR_WRITABLE)) ||
        (events & ~(CONCUR_READABLE | CONCUR_WRITABLE)))
        return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur_loop *L = concur__io_loop();
    if (L && concur__take_cancel(L->hot.current)) return -ECANCELED;
    return concur__wait_fd_deadline(L, fd, events, deadline);
}

/* The operations the wrappers share: one syscall, -errno, EINTR retried. */
enum { CONCUR__OP_READ, CONCUR__OP_WRITE, CONCUR__OP_RECV, CONCUR__OP_SEND };

CONCUR__PRIVATE ssize_t concur__write_nosigpipe(int fd, const void *buf, size_t len) {
    /* write(2) on a pipe raises SIGPIPE when the reader is gone. Block it in this
       thread for the call, and take a SIGPIPE we caused back out of the pending set,
       so the process's disposition is never touched. */
    sigset_t block, old, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = write(fd, buf, len);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&block, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

CONCUR__PRIVATE ssize_t concur__io_once(concur_loop *L, int op, int fd, void *buf, size_t len, int flags) {
    ssize_t n;
    for (;;) {
        if (CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, EIO)) return -EIO;
        switch (op) {
        case CONCUR__OP_READ: n = read(fd, buf, len); break;
        case CONCUR__OP_RECV: n = recv(fd, buf, len, flags | (L ? MSG_DONTWAIT : 0)); break;
        case CONCUR__OP_SEND: n = send(fd, buf, len, flags | MSG_NOSIGNAL | (L ? MSG_DONTWAIT : 0)); break;
        default: {
            concur__fdslot *s = L && fd < L->nfds ? &L->fds[fd] : NULL;
            if (!s || !s->not_socket) {
                n = send(fd, buf, len, MSG_NOSIGNAL | (L ? MSG_DONTWAIT : 0));
                if (n >= 0 || errno != ENOTSOCK) break;
                if (s) s->not_socket = 1;
            }
            n = concur__write_nosigpipe(fd, buf, len);
            break;
        }
        }
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

CONCUR__PRIVATE ssize_t concur__io_read(int op, int fd, void *buf, size_t len, int flags, double timeout) {
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    if (!buf && len) return -EINVAL;
    concur_loop *L = concur__io_loop();
    rc = concur__io_enter(L, fd);
    if (rc) return rc;
    /* A thread with a deadline polls first: the fd may be blocking. */
    if (!L && deadline != CONCUR__NEVER) {
        rc = concur__thread_wait_fd(fd, CONCUR_READABLE, deadline);
        if (rc < 0) return rc;
    }
    /* Edge-triggered epoll tells when a stream socket gets new data, so a read that
       emptied it (came back short) means the next read would say EAGAIN until the
       next event: a server that reads again right after answering skips that system
       call and parks at once (a third of the calls in an echo round trip). Not once
       the peer has hung up: the end of the stream (or an error) may sit behind the
       data just read, and its edge may already have been reported. */
    concur__fdslot *s = L && L->backend == CONCUR_BACKEND_EPOLL ? &L->fds[fd] : NULL;
    int track = s && len > 0 && !(flags & MSG_PEEK);
    for (;;) {
        if (!track || !s->drained) { /* an event (in, hang-up, error) clears drained */
            ssize_t n = concur__io_once(L, op, fd, buf, len, flags);
            if (n != -EAGAIN && n != -EWOULDBLOCK) {
                if (track && s->stream && !s->hup && n > 0 && (size_t)n < len) s->drained = 1;
                return n;
            }
        }
        rc = concur__wait_fd_deadline(L, fd, CONCUR_READABLE, deadline);
        if (rc < 0) return rc;
        if (s) s = &L->fds[fd]; /* the table may have grown while parked */
    }
}

CONCUR__PRIVATE ssize_t concur__io_write(int op, int fd, const void *buf, size_t len, int flags,
                                         double timeout, size_t *done_out) {
    size_t done = 0;
    if (done_out) *done_out = 0;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    if (!buf && len) return -EINVAL;
    if (len > (size_t)SSIZE_MAX) return -EINVAL;
    concur_loop *L = concur__io_loop();
    rc = concur__io_enter(L, fd);
    if (rc) return rc;
    ssize_t result = (ssize_t)len;
    while (done < len) {
        if (!L && deadline != CONCUR__NEVER) {
            rc = concur__thread_wait_fd(fd, CONCUR_WRITABLE, deadline);
            if (rc < 0) { result = rc; break; }
        }
        ssize_t n = concur__io_once(L, op, fd, (char *)buf + done, len - done, flags);
        if (n >= 0) { done += (size_t)n; continue; }
        if (n != -EAGAIN && n != -EWOULDBLOCK) { result = n; break; }
        rc = concur__wait_fd_deadline(L, fd, CONCUR_WRITABLE, deadline);
        if (rc < 0) { result = rc; break; }
    }
    if (done_out) *done_out = done;
    return result;
}

CONCUR_API ssize_t concur_read(int fd, void *buf, size_t len, double timeout) {
    return concur__io_read(CONCUR__OP_READ, fd, buf, len, 0, timeout);
}

CONCUR_API ssize_t concur_recv(int fd, void *buf, size_t len, int flags, double timeout) {
    return concur__io_read(CONCUR__OP_RECV, fd, buf, len, flags, timeout);
}

CONCUR_API ssize_t concur_write(int fd, const void *buf, size_t len, double timeout, size_t *written) {
    return concur__io_write(CONCUR__OP_WRITE, fd, buf, len, 0, timeout, written);
}

CONCUR_API ssize_t concur_send(int fd, const void *buf, size_t len, int flags, double timeout,
                               size_t *sent) {
    return concur__io_write(CONCUR__OP_SEND, fd, buf, len, flags, timeout, sent);
}

CONCUR_API int concur_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, double timeout) {
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur_loop *L = concur__io_loop();
    rc = concur__io_enter(L, fd);
    if (rc) return rc;
    for (;;) {
        if (!L && deadline != CONCUR__NEVER) {
            rc = concur__thread_wait_fd(fd, CONCUR_READABLE, deadline);
            if (rc < 0) return rc;
        }
        int c = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, EMFILE) ? -1
                                                             : accept4(fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) {
            if (L) concur__fdslot_reset(L, c);
            return c;
        }
        int e = errno;
        if (e == EINTR || e == ECONNABORTED) continue;
        if (e != EAGAIN && e != EWOULDBLOCK) return -e;
        rc = concur__wait_fd_deadline(L, fd, CONCUR_READABLE, deadline);
        if (rc < 0) return rc;
    }
}

CONCUR_API int concur_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout) {
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    if (!addr) return -EINVAL;
    concur_loop *L = concur__io_loop();
    rc = concur__io_enter(L, fd);
    if (rc) return rc;
    /* A thread's blocking socket goes non-blocking for the call, so the timeout holds. */
    int restore = -1;
    if (!L) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0) return -errno;
        if (!(fl & O_NONBLOCK)) {
            if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
            restore = fl;
        }
    }
    rc = 0;
    if (connect(fd, addr, addrlen) != 0) {
        rc = -errno;
        if (rc == -EINPROGRESS || rc == -EINTR) {
            rc = concur__wait_fd_deadline(L, fd, CONCUR_WRITABLE, deadline);
            if (rc > 0) {
                int err = 0;
                socklen_t el = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
                rc = -err;
            }
        }
    }
    if (restore >= 0) fcntl(fd, F_SETFL, restore);
    return rc;
}

CONCUR_API int concur_close(int fd) {
    if (fd < 0) return -EBADF;
    concur_loop *L = concur__tls_loop;
    if (L && fd < L->nfds) {
        concur__fdslot *s = &L->fds[fd];
        concur__waiter *rd = s->rd, *wr = s->wr;
        if (rd) concur__fd_wake(s, rd, -EBADF);
        if (wr && wr != rd) concur__fd_wake(s, wr, -EBADF);
#ifdef __linux__
        /* A dup of fd would keep the registration alive after close. */
        if (s->registered) epoll_ctl(L->epfd, EPOLL_CTL_DEL, fd, NULL);
#endif
        concur__fdslot_reset(L, fd);
    }
    /* Linux releases the fd even when close reports EINTR: never retry. */
    if (close(fd) != 0 && errno != EINTR) return -errno;
    return 0;
}

/* ---- TCP helpers ---- */

CONCUR__PRIVATE int concur__socket(int family) {
    int fd = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, EMFILE) ? -1
                                                          : socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    concur_loop *L = concur__tls_loop;
    if (L) concur__fdslot_reset(L, fd);
    return fd;
}

/* Numeric addresses (and "localhost") without a resolver. 1 when parsed. */
CONCUR__PRIVATE int concur__parse_numeric(const char *host, int port, struct sockaddr_storage *ss,
                                          socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (!host || !*host || strcmp(host, "localhost") == 0) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        v4->sin_addr.s_addr = htonl(host && *host ? INADDR_LOOPBACK : INADDR_ANY);
        *len = sizeof *v4;
        return 1;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 1;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 1;
    }
    return 0;
}

CONCUR_API int concur_tcp_listen(const char *host, int port, int backlog) {
    if (port < 0 || port > 65535) return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t len;
    if (!concur__parse_numeric(host, port, &ss, &len)) return -EINVAL;
    int fd = concur__socket(ss.ss_family);
    if (fd < 0) return fd;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

CONCUR_API int concur_tcp_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

CONCUR__PRIVATE int concur__dial_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline) {
    int fd = concur__socket(sa->sa_family);
    if (fd < 0) return fd;
    double left = deadline == CONCUR__NEVER ? -1.0 : (double)(deadline - concur__now_ns()) / 1e9;
    if (deadline != CONCUR__NEVER && left < 0) left = 0;
    int rc = concur_connect(fd, sa, len, left);
    if (rc != 0) {
        concur_close(fd);
        return rc;
    }
    return fd;
}

#ifdef CONCUR__POSIX2008
/* getaddrinfo blocks for as long as DNS takes, so it runs on its own thread; the
   waiting side (coroutine or thread) waits on a future with its deadline and may give
   up first. The request is shared by two references: whoever lets go last frees it. */
typedef struct concur__resolve {
    uint32_t refs;
    char host[256];
    char port[8];
    struct addrinfo *res;
    int err;
    concur_future *done;
} concur__resolve;

CONCUR__PRIVATE void concur__resolve_unref(concur__resolve *r) {
    if (concur__fetch_add(&r->refs, (uint32_t)-1, ACQ_REL) != 1) return;
    if (r->res) freeaddrinfo(r->res);
    concur_future_release(r->done);
    CONCUR_FREE(r);
}

static void *concur__resolve_main(void *arg) {
    concur__resolve *r = (concur__resolve *)arg;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int e = getaddrinfo(r->host, r->port, &hints, &r->res);
    r->err = e == 0 ? 0 : e == EAI_NONAME ? -ENOENT : e == EAI_MEMORY ? -ENOMEM
           : e == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    concur_future_set_value(r->done, NULL);
    concur__resolve_unref(r);
    return NULL;
}
#endif

CONCUR_API int concur_tcp_dial(const char *host, int port, double timeout) {
    if (!host || !*host || port <= 0 || port > 65535) return -EINVAL;
    int64_t deadline;
    int rc = concur__deadline(timeout, &deadline);
    if (rc) return rc;
    concur_loop *L = concur__io_loop();
    if (L && concur__take_cancel(L->hot.current)) return -ECANCELED;
    struct sockaddr_storage ss;
    socklen_t len;
    if (concur__parse_numeric(host, port, &ss, &len))
        return concur__dial_addr((struct sockaddr *)&ss, len, deadline);
#ifdef CONCUR__POSIX2008
    if (strlen(host) >= 256) return -EINVAL;
    concur__resolve *r = (concur__resolve *)concur__malloc(sizeof *r);
    if (!r) return -ENOMEM;
    memset(r, 0, sizeof *r);
    strcpy(r->host, host);
    snprintf(r->port, sizeof r->port, "%d", port);
    r->refs = 2;
    r->done = concur_future_create();
    if (!r->done) { CONCUR_FREE(r); return -ENOMEM; }
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = CONCUR__FAULT(CONCUR_FAULT_THREAD) ? EAGAIN
                                                : pthread_create(&tid, &attr, concur__resolve_main, r);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        concur_future_release(r->done);
        CONCUR_FREE(r);
        return -e;
    }
    rc = concur__future_wait_deadline(r->done, deadline);
    if (rc == 0) {
        rc = r->err ? r->err : -EHOSTUNREACH;
        for (struct addrinfo *ai = r->res; ai; ai = ai->ai_next) {
            rc = concur__dial_addr(ai->ai_addr, ai->ai_addrlen, deadline);
            if (rc >= 0 || rc == -ETIMEDOUT || rc == -ECANCELED) break;
        }
    }
    concur__resolve_unref(r);
    return rc;
#else
    return -EAFNOSUPPORT;
#endif
}
#endif /* CONCUR_NO_IO */

#ifndef CONCUR_NO_PROCESS
/* >>process ------------------------------------------------------------------------
   The process pool has three kinds of process:
   - the parent, where callers submit; a pool thread (the driver) polls the worker
     sockets, completes futures, enforces timeouts and replaces workers;
   - the helper, forked once at creation before the pool owns any thread. It is
     single-threaded and does two things on request: fork a worker, and reap one. So no
     worker is ever forked from the multi-threaded parent, the parent never waits on a
     pid it did not fork (its SIGCHLD is never touched, no status is stolen), and a pid
     stays valid for kill() until the driver itself asks for the reap;
   - the workers, each with its own AF_UNIX stream socket to the parent. A dead worker
     closes only its own channel, which the driver sees at once as end of file.
   A frame is a fixed header plus an optional inline payload. Payloads of
   shm_threshold bytes or more stay in shared memory instead: each worker has an input
   arena the parent writes and an output arena the worker writes, memfd files mapped
   on both sides, passed once with SCM_RIGHTS and kept, so a big task costs one copy
   in and one copy out and no page faults after the first. One task is in flight per
   worker, which keeps both arenas free of races. A submitted task's big input and
   room for its result come in recycled segments instead, whose fds go with every
   task; a worker keeps the last few mapped by id (concur__wseg_map). */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#ifdef __linux__
#  include <sys/prctl.h>
#  include <sys/eventfd.h>
#  include <sys/syscall.h>
#  if !defined(__cplusplus) && !defined(CONCUR__FUTEX)
long syscall(long number, ...);
#  endif
#endif

/* Every frame type carries a tag in its high half: a task that writes to the channel
   by mistake (a stray fd) breaks the framing, and the next header read is then
   garbage, which the tag (and the task id it must match) tells apart, so the worker
   is dropped instead of the program waiting for bytes that never come. */
#define CONCUR__PF_TAG 0x63630000u
enum {
    CONCUR__PF_TASK = CONCUR__PF_TAG | 1, /* parent -> worker: payload inline */
    CONCUR__PF_TASK_SHM,    /* parent -> worker: payload in the input arena */
    CONCUR__PF_EXIT,        /* parent -> worker: exit now (shutdown) */
    CONCUR__PF_HELLO,       /* worker -> parent: initializer ran, status is its result */
    CONCUR__PF_RESULT,      /* worker -> parent: result inline */
    CONCUR__PF_RESULT_SHM   /* worker -> parent: result in the output arena */
};

typedef struct concur__pframe {
    uint32_t type;
    int32_t status;     /* the task's return code; HELLO: the initializer's */
    uint64_t id;
    uint64_t fn;        /* the task function's address: the same in every forked copy */
    uint64_t len;       /* payload bytes */
    uint64_t arena;     /* size of the sender's arena when the payload is in it */
    uint64_t in_item;   /* map chunks: item sizes; 0 for a plain task */
    uint64_t out_item;
    /* TASK_SHM: size of the output segment that came along (0: none); RESULT_SHM:
       nonzero when the result is in that segment, which is now this many bytes. */
    uint64_t out_cap;
    /* TASK_SHM: the segments' ids, never reused within a pool, so that a worker can
       keep its mapping of a segment from one task to the next. */
    uint64_t in_seg_id, out_seg_id;
} concur__pframe;

/* Parent <-> helper, one SOCK_SEQPACKET message each. */
enum { CONCUR__H_SPAWN = 1, CONCUR__H_REAP, CONCUR__H_SPAWNED, CONCUR__H_REAPED };
typedef struct concur__hmsg {
    int32_t op, index, pid, status;
} concur__hmsg;

enum {
    CONCUR__W_EMPTY = 0, /* no process */
    CONCUR__W_SPAWNING,  /* asked the helper; pid or hello may still be missing */
    CONCUR__W_IDLE,
    CONCUR__W_BUSY,      /* a task is in flight, or a timed-out one is being killed */
    CONCUR__W_RETIRING,  /* will exit by itself (max tasks, or asked to) */
    CONCUR__W_DEAD       /* end of file seen, reap requested */
};

typedef struct concur__pmap {
    concur_mutex lock;
    int32_t refs;
    int abandoned;      /* the caller returned: out must not be written any more */
    unsigned char *out;
} concur__pmap;

typedef struct concur__ptask {
    struct concur__ptask *next;
    concur_future *future;     /* the task's own reference */
    concur_proc_fn fn;
    uint64_t id;
    unsigned char *in;         /* a copy while queued */
    const unsigned char *in_ref; /* map chunks: the caller's own input, which stays
                                    valid until the map returns (see abandoned) */
    size_t in_len;
    int64_t timeout_ns;        /* < 0: none */
    concur__pmap *map;         /* map chunks only */
    size_t out_off, in_item, out_item;
    struct concur__seg *in_seg;  /* big input, in shared memory */
    struct concur__seg *out_seg; /* lent to the worker for a big result */
} concur__ptask;

/* A shared-memory segment: a memfd mapped here, lent to a worker for one task (its
   input, or room for its result) and recycled afterwards. A result segment goes to
   the future, and back to the free list when the future is freed, which may be after
   the pool is gone: the list is its own reference-counted object. */
typedef struct concur__seg {
    struct concur__seg *next;
    struct concur__segs *owner;
    uint64_t id;
    int fd;
    size_t cap;
    unsigned char *map;
} concur__seg;

typedef struct concur__segs {
    concur_mutex lock;
    int32_t refs;       /* the pool, plus every segment out of the list */
    int closed;         /* the pool is gone: returned segments are freed */
    concur__seg *free;
    size_t free_bytes;
    int live;           /* segments in existence (each holds an fd here) */
    int live_max;
    int64_t last_use;   /* for giving idle memory back */
    uint64_t last_id;   /* ids of new segments count up from here */
} concur__segs;

typedef struct concur__pworker {
    int index;
    int state;
    int pid;                   /* 0 until the helper reports it */
    int fd;                    /* the parent's end of the channel, -1 when none */
    int hello, eof, reap_sent;
    int init_status;
    int kill_reason;           /* 0, -ETIMEDOUT or CONCUR_ESHUTDOWN: why we stop it */
    int tasks_done;
    concur__ptask *task;       /* in flight */
    struct concur__seg *held[2]; /* a timed-out task's segments, until the reap */
    int64_t deadline;          /* of the task in flight */
    int64_t kill_at;           /* SIGKILL after SIGTERM */
    /* Held while a frame goes out; the driver takes it before closing fd or changing
       the input arena, so a submitter's direct dispatch never writes a stale fd. */
    concur_mutex send_lock;
    int out_fd;                /* output arena (worker-owned), mapped read-only */
    unsigned char *out_map;
    size_t out_len;
    concur__pframe rx;         /* frame being received (the driver only) */
    size_t rx_got;
    int rx_fd;                 /* an fd that came with the frame's first bytes */
    int retiring;              /* exits by itself: max tasks reached, or asked to */
    unsigned char *rx_body;
    size_t rx_body_got;
} concur__pworker;

enum { CONCUR__PP_RUNNING = 0, CONCUR__PP_STOPPING, CONCUR__PP_STOPPED };

struct concur_procpool {
    concur_mutex lock;
    concur_procpool_desc desc; /* defaults filled in */
    int nworkers;
    concur__pworker *workers;
    concur__ptask *qhead, *qtail;
    uint64_t next_id;
    int state;
    int broken;                /* 0, or the code new work fails with (CONCUR_EBROKEN) */
    int64_t stop_deadline;
    int stop_forced;
    int helper_pid;
    int helper_gone;
    int ctl;                   /* to the helper */
    int wake_rd, wake_wr;
    uint32_t wake_pending;
    int64_t driver_deadline;   /* when the driver's poll would return by itself */
    pthread_t driver;
    int driver_running;
    int joined;
    int64_t *crash_times;      /* ring of the last max_restarts + 1 crashes */
    int crash_pos;
    concur_event stopped;
    /* The helper's and workers' own copies of the memory are made at creation; these
       two are read there. */
    int64_t *kids;             /* helper: pid per worker slot */
    concur__segs *segs;
};

/* The worker process's state; lives in the worker only. */
/* A worker keeps the parent's segments mapped from one task to the next, by id: a
   segment that comes back costs no mmap, no page-table fill and no munmap with its
   TLB shootdown (for a task of 100 KB in and out, those were most of its cost). */
#define CONCUR__WSEG_KEEP 8
typedef struct concur__wseg {
    uint64_t id, used;
    unsigned char *map;
    size_t cap;
} concur__wseg;

typedef struct concur__wproc {
    int fd;
    size_t threshold;
    /* The worker's own output arena, for big results of tasks that came without an
       output segment; -1 without shared memory (results go inline). */
    int arena_fd;
    unsigned char *arena;
    size_t arena_cap;
    int arena_sent;
    /* This task's output segment, when the parent lent one. */
    int seg_fd;
    unsigned char *seg;
    size_t seg_cap;
    int seg_slot; /* its entry in segmap */
    concur__wseg segmap[CONCUR__WSEG_KEEP];
    uint64_t seg_clock;
    /* Where output goes now: the arena, or the segment. */
    unsigned char *out_buf;
    size_t out_cap;
    unsigned char *inbuf;      /* inline input */
    size_t inbuf_cap;
} concur__wproc;

struct concur_proc_out {
    concur__wproc *wp;
    size_t base, len;
};

#define CONCUR__PP_THRESHOLD_DEFAULT ((size_t)64 * 1024)
#define CONCUR__PP_WAIT_SPIN_US 100

CONCUR__PRIVATE size_t concur__pp_round(size_t n) {
    size_t pg = concur__page_size();
    return (n + pg - 1) / pg * pg;
}

CONCUR__PRIVATE int concur__memfd(size_t size) {
#if defined(__linux__) && defined(SYS_memfd_create)
    int fd = (int)syscall(SYS_memfd_create, "concur-arena", 1u /* MFD_CLOEXEC */);
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
#else
    (void)size;
    return -ENOSYS;
#endif
}

/* Sends a header, an optional payload and up to two fds (-1: none), all of it; EINTR
   and short writes are continued. 0 or -errno (a dead peer gives -EPIPE, never
   SIGPIPE). */
CONCUR__PRIVATE int concur__send_frame(int fd, const concur__pframe *h, const void *payload, size_t plen,
                                       int fd1, int fd2) {
    struct iovec iov[2];
    iov[0].iov_base = (void *)h;
    iov[0].iov_len = sizeof *h;
    iov[1].iov_base = (void *)payload;
    iov[1].iov_len = plen;
    int niov = plen ? 2 : 1, first = 0;
    int fds[2], nfds = 0;
    if (fd1 >= 0) fds[nfds++] = fd1;
    if (fd2 >= 0) fds[nfds++] = fd2;
    union { struct cmsghdr align; char buf[CMSG_SPACE(2 * sizeof(int))]; } cbuf;
    while (first < niov) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov + first;
        m.msg_iovlen = (size_t)(niov - first);
        if (nfds) {
            memset(&cbuf, 0, sizeof cbuf);
            m.msg_control = cbuf.buf;
            m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
            struct cmsghdr *c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
            memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
        }
        ssize_t n = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, ENOBUFS) ? -1 : sendmsg(fd, &m, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        nfds = 0; /* attached to the first byte, sent */
        size_t left = (size_t)n;
        while (first < niov && left >= iov[first].iov_len) left -= iov[first++].iov_len;
        if (first < niov) {
            iov[first].iov_base = (char *)iov[first].iov_base + left;
            iov[first].iov_len -= left;
        }
    }
    return 0;
}

/* One recvmsg. fds that came along fill the -1 slots of fds[0..nfds) in order; any
   beyond are closed. */
CONCUR__PRIVATE ssize_t concur__recv_some(int fd, void *buf, size_t len, int flags, int *fds, int nfds) {
    struct iovec iov;
    iov.iov_base = buf;
    iov.iov_len = len;
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int) * 4)]; } cbuf;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf.buf;
    m.msg_controllen = sizeof cbuf.buf;
#ifdef MSG_CMSG_CLOEXEC
    flags |= MSG_CMSG_CLOEXEC;
#endif
    ssize_t n;
    do n = CONCUR__FAULT_ERRNO(CONCUR_FAULT_IO, ECONNRESET) ? -1 : recvmsg(fd, &m, flags);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int passed, k = 0;
            memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            while (k < nfds && fds[k] >= 0) k++;
            if (k < nfds) fds[k] = passed;
            else close(passed);
        }
    }
    return n;
}

/* Blocking: reads exactly len bytes. 1, 0 at end of file, or -errno. */
CONCUR__PRIVATE int concur__recv_all(int fd, void *buf, size_t len, int *fds, int nfds) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = concur__recv_some(fd, (char *)buf + got, len - got, 0, fds, nfds);
        if (n < 0) return (int)n;
        if (n == 0) return 0;
        got += (size_t)n;
    }
    return 1;
}

/* ---- the worker process ---------------------------------------------------------- */

/* The pool as the helper and the workers inherited it. Held here so that leak
   checkers running in those processes (valgrind follows forks) see it as reachable. */
static const concur_procpool *volatile concur__proc_inherited;

#if !defined(MAP_POPULATE) && defined(__linux__) && (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__riscv))
#  define MAP_POPULATE 0x8000 /* hidden by strict -std=c99; the value is the kernel's */
#endif
#ifndef MAP_POPULATE
#  define MAP_POPULATE 0
#endif

/* populate: fill the page tables in one go (a worker maps each task's segments and
   touches every page: one call instead of a fault per page). */
CONCUR__PRIVATE void *concur__map_shared(int fd, size_t len, int prot, int populate) {
    void *m = mmap(NULL, len, prot, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* Worker: the slot of segment id (cap bytes, open as fd), mapped: the kept mapping,
   or a new one in place of an older size of the same segment or of the least
   recently used (an empty slot's `used` is 0, so empty slots go first). -1 when it
   cannot be mapped. */
CONCUR__PRIVATE int concur__wseg_map(concur__wproc *wp, uint64_t id, int fd, size_t cap) {
    int victim = -1;
    for (int i = 0; i < CONCUR__WSEG_KEEP; i++) {
        concur__wseg *e = &wp->segmap[i];
        if (e->map && e->id == id) {
            if (e->cap == cap) {
                e->used = ++wp->seg_clock;
                return i;
            }
            victim = i; /* the segment grew since: its old mapping goes */
            break;
        }
        if (victim < 0 || e->used < wp->segmap[victim].used) victim = i;
    }
    void *m = concur__map_shared(fd, cap, PROT_READ | PROT_WRITE, 1);
    if (!m) return -1;
    concur__wseg *e = &wp->segmap[victim];
    if (e->map) munmap(e->map, e->cap);
    e->id = id;
    e->map = (unsigned char *)m;
    e->cap = cap;
    e->used = ++wp->seg_clock;
    return victim;
}

/* Makes room for need bytes of output. Shared files grow in place (the parent keeps
   its fd and only remaps). 0 or -ENOMEM. */
CONCUR__COLD int concur__wout_grow(concur__wproc *wp, size_t need) {
    size_t cap = wp->out_cap ? wp->out_cap : concur__pp_round(4096);
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return -ENOMEM;
        cap *= 2;
    }
    cap = concur__pp_round(cap);
    int on_seg = wp->seg_fd >= 0;
    int fd = on_seg ? wp->seg_fd : wp->arena_fd;
    if (fd >= 0) {
        void *m = ftruncate(fd, (off_t)cap) == 0 ? concur__map_shared(fd, cap, PROT_READ | PROT_WRITE, 0) : NULL;
        if (!m) return -ENOMEM;
        if (wp->out_buf) munmap(wp->out_buf, wp->out_cap);
        wp->out_buf = (unsigned char *)m;
        wp->out_cap = cap;
        if (on_seg) {
            wp->seg = wp->out_buf;
            wp->seg_cap = cap;
            wp->segmap[wp->seg_slot].map = wp->seg;
            wp->segmap[wp->seg_slot].cap = cap;
        } else {
            wp->arena = wp->out_buf;
            wp->arena_cap = cap;
        }
        return 0;
    }
    unsigned char *b = (unsigned char *)CONCUR_REALLOC(wp->out_buf, cap);
    if (!b) return -ENOMEM;
    wp->out_buf = wp->arena = b;
    wp->out_cap = wp->arena_cap = cap;
    return 0;
}

/* A map calls the task function once per item, and each call asks for room that the
   chunk has already reserved: keep that check out of a call. */
static inline int concur__wout_reserve(concur__wproc *wp, size_t need) {
    return need <= wp->out_cap ? 0 : concur__wout_grow(wp, need);
}

CONCUR_API void *concur_proc_alloc(concur_proc_out *out, size_t len) {
    if (!out || !out->wp) { errno = EINVAL; return NULL; }
    if (len > SIZE_MAX - out->base || concur__wout_reserve(out->wp, out->base + len) < 0) {
        errno = ENOMEM;
        return NULL;
    }
    out->len = len;
    return out->wp->out_buf + out->base;
}

CONCUR_API int concur_proc_write(concur_proc_out *out, const void *data, size_t len) {
    if (!out || !out->wp || (!data && len)) return -EINVAL;
    size_t end = out->base + out->len;
    if (len > SIZE_MAX - end || concur__wout_reserve(out->wp, end + len) < 0) return -ENOMEM;
    if (len) memcpy(out->wp->out_buf + end, data, len);
    out->len += len;
    return 0;
}

/* Runs one frame's work; returns the status and sets *out_len. */
CONCUR__PRIVATE int concur__worker_run(concur__wproc *wp, const concur__pframe *h, const unsigned char *in,
                                       size_t *out_len) {
    concur_proc_fn fn;
    memcpy(&fn, &h->fn, sizeof fn);
    concur_proc_out out;
    out.wp = wp;
    out.base = 0;
    out.len = 0;
    *out_len = 0;
    if (!h->in_item) {
        int rc = fn(in, (size_t)h->len, &out);
        if (rc >= 0) *out_len = out.len;
        return rc < 0 ? rc : 0;
    }
    size_t n = (size_t)(h->len / h->in_item), osz = (size_t)h->out_item;
    if (osz && n > SIZE_MAX / osz) return -ENOMEM;
    if (concur__wout_reserve(wp, n * osz) < 0) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        out.base = i * osz;
        out.len = 0;
        int rc = fn(in + i * (size_t)h->in_item, (size_t)h->in_item, &out);
        if (rc < 0) return rc;
        if (out.len > osz) return -EMSGSIZE;
        if (out.len < osz) memset(wp->out_buf + out.base + out.len, 0, osz - out.len);
    }
    *out_len = n * osz;
    return 0;
}

CONCUR__PRIVATE CONCUR__NORETURN void concur__proc_worker_main(const concur_procpool *pp, int fd, int helper_pid) {
    concur__proc_inherited = pp;
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    /* The helper may have died before the line above: then nobody would reap us. */
    if (getppid() != helper_pid) _exit(0);
    concur__wproc wp;
    memset(&wp, 0, sizeof wp);
    wp.fd = fd;
    wp.threshold = pp->desc.shm_threshold;
    wp.seg_fd = -1;
    wp.arena_fd = concur__memfd(concur__page_size());
    if (wp.arena_fd >= 0) {
        wp.arena = (unsigned char *)concur__map_shared(wp.arena_fd, concur__page_size(), PROT_READ | PROT_WRITE, 0);
        if (!wp.arena) {
            close(wp.arena_fd);
            wp.arena_fd = -1;
        } else {
            wp.arena_cap = concur__page_size();
        }
    }
    concur__pframe h;
    memset(&h, 0, sizeof h);
    h.type = CONCUR__PF_HELLO;
    h.status = pp->desc.initializer ? pp->desc.initializer(pp->desc.init_arg) : 0;
    fflush(NULL);
    if (concur__send_frame(fd, &h, NULL, 0, -1, -1) < 0 || h.status < 0) _exit(0);
    int done = 0;
    for (;;) {
        int fds[2] = {-1, -1};
        if (concur__recv_all(fd, &h, sizeof h, fds, 2) <= 0 || h.type == CONCUR__PF_EXIT) _exit(0);
        const unsigned char *in = NULL;
        int status = 0;
        wp.out_buf = wp.arena;
        wp.out_cap = wp.arena_cap;
        if (h.type == CONCUR__PF_TASK_SHM) {
            /* Input segment first, then (optionally) room for the result. */
            int in_slot = fds[0] >= 0 && h.arena >= h.len && h.arena
                              ? concur__wseg_map(&wp, h.in_seg_id, fds[0], (size_t)h.arena) : -1;
            if (in_slot >= 0) in = wp.segmap[in_slot].map;
            else if (h.len) status = -EPROTO;
            /* The input's slot is the most recently used, so this cannot evict it. */
            int out_slot = fds[1] >= 0 && h.out_cap
                               ? concur__wseg_map(&wp, h.out_seg_id, fds[1], (size_t)h.out_cap) : -1;
            if (out_slot >= 0) {
                wp.seg = wp.segmap[out_slot].map;
                wp.seg_slot = out_slot;
                wp.seg_fd = fds[1]; /* open while the task runs: a bigger result grows it */
                fds[1] = -1;
                wp.seg_cap = (size_t)h.out_cap;
                wp.out_buf = wp.seg;
                wp.out_cap = wp.seg_cap;
            }
        } else if (h.type == CONCUR__PF_TASK) {
            if (h.len > wp.inbuf_cap) {
                unsigned char *b = (unsigned char *)CONCUR_REALLOC(wp.inbuf, (size_t)h.len);
                if (!b) _exit(70); /* cannot even drain the frame: the parent sees a death */
                wp.inbuf = b;
                wp.inbuf_cap = (size_t)h.len;
            }
            if (h.len && concur__recv_all(fd, wp.inbuf, (size_t)h.len, NULL, 0) <= 0) _exit(0);
            in = wp.inbuf;
        } else {
            _exit(71);
        }
        size_t out_len = 0;
        if (!status) status = concur__worker_run(&wp, &h, in, &out_len);
        fflush(NULL);
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) close(fds[i]);
        concur__pframe r;
        memset(&r, 0, sizeof r);
        r.id = h.id;
        r.status = status;
        r.len = status < 0 ? 0 : out_len;
        int pass = -1;
        size_t plen = (size_t)r.len;
        if (plen >= wp.threshold && wp.seg_fd >= 0) {
            r.type = CONCUR__PF_RESULT_SHM; /* in the segment the parent lent */
            r.out_cap = wp.seg_cap;
            plen = 0;
        } else if (plen >= wp.threshold && wp.arena_fd >= 0 && wp.seg_fd < 0) {
            r.type = CONCUR__PF_RESULT_SHM;
            r.arena = wp.arena_cap;
            if (!wp.arena_sent) pass = wp.arena_fd;
            wp.arena_sent = 1;
            plen = 0;
        } else {
            r.type = CONCUR__PF_RESULT;
        }
        int sent = concur__send_frame(fd, &r, wp.out_buf, plen, pass, -1);
        if (wp.seg_fd >= 0) { /* the mapping stays in segmap */
            close(wp.seg_fd);
            wp.seg_fd = -1;
            wp.seg = NULL;
            wp.seg_cap = 0;
        }
        if (sent < 0) _exit(0);
        if (pp->desc.max_tasks_per_child > 0 && ++done >= pp->desc.max_tasks_per_child) _exit(0);
    }
}

/* ---- the helper process ---------------------------------------------------------- */

CONCUR__PRIVATE void concur__close_fds_except(int keep) {
#if defined(__linux__) && defined(SYS_close_range)
    /* keep may be below 3 when the program runs with stdio closed. */
    unsigned above = keep + 1 < 3 ? 3u : (unsigned)keep + 1u;
    if ((keep <= 3 || syscall(SYS_close_range, 3u, (unsigned)keep - 1u, 0u) == 0) &&
        syscall(SYS_close_range, above, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; fd++)
        if (fd != keep) close(fd);
}

CONCUR__PRIVATE int concur__reap(int pid, int *status) {
    int r;
    do r = waitpid(pid, status, 0);
    while (r < 0 && errno == EINTR);
    return r;
}

CONCUR__PRIVATE CONCUR__NORETURN void concur__helper_main(concur_procpool *pp, int ctl, int kill_with_parent) {
    concur__proc_inherited = pp;
    concur__fault_disarm(); /* a test arms failures for the program's own calls */
    /* Handlers belong to the parent's code; the helper and its workers start from the
       defaults, except SIGINT: Ctrl-C goes to the whole process group, and only the
       parent should act on it (the workers exit when it does). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < 65; s++) {
        struct sigaction old;
        if (sigaction(s, NULL, &old) != 0) continue;
        if (s == SIGCHLD || old.sa_handler != SIG_IGN) {
            sa.sa_handler = SIG_DFL;
            sigaction(s, &sa, NULL);
        }
    }
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef __linux__
    if (kill_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
#else
    (void)kill_with_parent;
#endif
    concur__close_fds_except(ctl);
    int self = (int)getpid();
    for (;;) {
        concur__hmsg m;
        int got_fd = -1;
        ssize_t n = concur__recv_some(ctl, &m, sizeof m, 0, &got_fd, 1);
        if (n != (ssize_t)sizeof m) {
            if (got_fd >= 0) close(got_fd);
            break; /* the parent is gone or closed the pool */
        }
        concur__hmsg r;
        memset(&r, 0, sizeof r);
        r.index = m.index;
        if (m.op == CONCUR__H_SPAWN && m.index >= 0 && m.index < pp->nworkers) {
            int pid = got_fd >= 0 ? (int)fork() : -1;
            if (pid == 0) {
                close(ctl);
                concur__proc_worker_main(pp, got_fd, self);
                _exit(0);
            }
            int err = got_fd >= 0 ? errno : EBADF;
            if (got_fd >= 0) close(got_fd);
            pp->kids[m.index] = pid > 0 ? pid : 0;
            r.op = CONCUR__H_SPAWNED;
            r.pid = pid > 0 ? pid : -err;
        } else if (m.op == CONCUR__H_REAP && m.index >= 0 && m.index < pp->nworkers && m.pid > 0) {
            int st = 0, got;
            do got = (int)waitpid(m.pid, &st, WNOHANG);
            while (got < 0 && errno == EINTR);
            /* End of file came first; the process is normally already dead. If it only
               closed its socket, it cannot serve any more: finish it. A kill does not
               change the status of a process that is already exiting. */
            if (got == 0) {
                kill(m.pid, SIGKILL);
                got = concur__reap(m.pid, &st);
            }
            pp->kids[m.index] = 0;
            r.op = CONCUR__H_REAPED;
            r.pid = m.pid;
            r.status = got == m.pid ? st : -1;
        } else {
            if (got_fd >= 0) close(got_fd);
            continue;
        }
        if (send(ctl, &r, sizeof r, MSG_NOSIGNAL) < 0) break;
    }
    for (int i = 0; i < pp->nworkers; i++)
        if (pp->kids[i] > 0) kill((int)pp->kids[i], SIGKILL);
    for (int i = 0; i < pp->nworkers; i++) {
        int st;
        if (pp->kids[i] > 0) concur__reap((int)pp->kids[i], &st);
    }
    _exit(0);
}

/* ---- the parent ------------------------------------------------------------------- */

CONCUR__PRIVATE void concur__pp_wake(concur_procpool *pp) {
    if (concur__xchg(&pp->wake_pending, 1, ACQ_REL)) return;
    uint64_t one = 1;
    ssize_t n;
    do n = write(pp->wake_wr, &one, pp->wake_wr == pp->wake_rd ? sizeof one : 1);
    while (n < 0 && errno == EINTR);
}

/* Idle segments kept for reuse, at most, in bytes. A burst of big tasks keeps what it
   used (reused segments cost no page faults and no zeroing), and the pool thread
   gives all but CONCUR__SEG_FLOOR back after CONCUR__SEG_IDLE_NS without use. The
   number of segments in existence is bounded too (each holds an fd): a quarter of
   the fd limit, at most 1024; past it, payloads go through the socket. */
#define CONCUR__SEG_KEEP ((size_t)1024 << 20)
#define CONCUR__SEG_FLOOR ((size_t)16 << 20)
#define CONCUR__SEG_IDLE_NS (CONCUR__NS / 2)

CONCUR__PRIVATE void concur__seg_destroy(concur__seg *s) {
    /* Workers may still have it mapped (they keep segments by id, and this id never
       comes again): emptying the file gives its memory back now, not when they exit. */
    int emptied = ftruncate(s->fd, 0); /* on failure only the memory outlives us */
    (void)emptied;
    munmap(s->map, s->cap);
    close(s->fd);
    CONCUR_FREE(s);
}

CONCUR__PRIVATE void concur__segs_unref(concur__segs *ss) {
    if (concur__fetch_add(&ss->refs, -1, ACQ_REL) != 1) return;
    while (ss->free) {
        concur__seg *s = ss->free;
        ss->free = s->next;
        concur__seg_destroy(s);
    }
    CONCUR_FREE(ss);
}

/* A segment of at least need bytes: a recycled one (its pages are already there, so
   no page faults and no zeroing), or a new one. NULL when none can be had. */
CONCUR__PRIVATE concur__seg *concur__seg_get(concur__segs *ss, size_t need) {
    concur__lock(&ss->lock);
    concur__seg **best = NULL;
    uint64_t id = 0;
    for (concur__seg **p = &ss->free; *p; p = &(*p)->next)
        if ((*p)->cap >= need && (*p)->cap / 4 <= need && (!best || (*p)->cap < (*best)->cap)) best = p;
    concur__seg *s = NULL;
    if (best) {
        s = *best;
        *best = s->next;
        ss->free_bytes -= s->cap;
    } else if (ss->live >= ss->live_max) {
        concur__unlock(&ss->lock);
        return NULL;
    } else {
        ss->live++;
        id = ++ss->last_id;
    }
    concur__fetch_add(&ss->refs, 1, RELAXED);
    ss->last_use = concur__now_ns();
    concur__unlock(&ss->lock);
    if (s) return s;
    size_t cap = concur__pp_round(need);
    s = (concur__seg *)concur__malloc(sizeof *s);
    int fd = s ? concur__memfd(cap) : -1;
    void *m = fd >= 0 ? concur__map_shared(fd, cap, PROT_READ | PROT_WRITE, 0) : NULL;
    if (!m) {
        if (fd >= 0) close(fd);
        if (s) CONCUR_FREE(s);
        concur__lock(&ss->lock);
        ss->live--;
        concur__unlock(&ss->lock);
        concur__segs_unref(ss);
        return NULL;
    }
    s->next = NULL;
    s->owner = ss;
    s->id = id;
    s->fd = fd;
    s->cap = cap;
    s->map = (unsigned char *)m;
    return s;
}

/* Back to the free list (or freed: beyond the keep limit, or once the pool is gone). */
CONCUR__PRIVATE void concur__seg_put(concur__seg *s) {
    if (!s) return;
    concur__segs *ss = s->owner;
    concur__lock(&ss->lock);
    int keep = !ss->closed && ss->free_bytes + s->cap <= CONCUR__SEG_KEEP;
    if (keep) {
        s->next = ss->free;
        ss->free = s;
        ss->free_bytes += s->cap;
        ss->last_use = concur__now_ns();
    } else {
        ss->live--;
    }
    concur__unlock(&ss->lock);
    if (!keep) concur__seg_destroy(s);
    concur__segs_unref(ss);
}

CONCUR__PRIVATE void concur__seg_release_bytes(void *seg) { concur__seg_put((concur__seg *)seg); }

/* Pool thread: frees idle segments beyond the floor once they have been idle long
   enough. Returns when to look again (CONCUR__NEVER: nothing to give back). */
CONCUR__PRIVATE int64_t concur__segs_trim(concur__segs *ss, int64_t now) {
    concur__seg *drop = NULL;
    concur__lock(&ss->lock);
    if (ss->free_bytes <= CONCUR__SEG_FLOOR) {
        concur__unlock(&ss->lock);
        return CONCUR__NEVER;
    }
    if (now - ss->last_use < CONCUR__SEG_IDLE_NS) {
        int64_t at = ss->last_use + CONCUR__SEG_IDLE_NS;
        concur__unlock(&ss->lock);
        return at;
    }
    while (ss->free && ss->free_bytes > CONCUR__SEG_FLOOR) {
        concur__seg *s = ss->free;
        ss->free = s->next;
        ss->free_bytes -= s->cap;
        ss->live--;
        s->next = drop;
        drop = s;
    }
    concur__unlock(&ss->lock);
    while (drop) { /* idle segments hold no reference on the list */
        concur__seg *s = drop;
        drop = s->next;
        concur__seg_destroy(s);
    }
    return CONCUR__NEVER;
}

/* The worker grew a segment: map it again at its new size. 0 or -ENOMEM. */
CONCUR__PRIVATE int concur__seg_resize(concur__seg *s, size_t cap) {
    if (cap <= s->cap) return 0;
    void *m = concur__map_shared(s->fd, cap, PROT_READ | PROT_WRITE, 0);
    if (!m) return -ENOMEM;
    munmap(s->map, s->cap);
    concur__lock(&s->owner->lock);
    s->cap = cap;
    s->map = (unsigned char *)m;
    concur__unlock(&s->owner->lock);
    return 0;
}

CONCUR__PRIVATE void concur__pmap_unref(concur__pmap *m) {
    if (m && concur__fetch_add(&m->refs, -1, ACQ_REL) == 1) CONCUR_FREE(m);
}

CONCUR__PRIVATE void concur__ptask_free(concur__ptask *t) {
    concur__fetch_add(&concur__proc_pending, (uint32_t)-1, RELAXED);
    concur__seg_put(t->in_seg);
    concur__seg_put(t->out_seg);
    if (t->future) concur_future_release(t->future);
    concur__pmap_unref(t->map);
    if (t->in) CONCUR_FREE(t->in);
    CONCUR_FREE(t);
}

/* Completes t's future (outside the pool lock: callbacks may submit) and frees t.
   Takes ownership of bytes. */
CONCUR__PRIVATE void concur__ptask_finish(concur__ptask *t, int err, void *bytes, size_t len, int death) {
    concur__store(&t->future->detail, death, RELAXED);
    concur__future_complete(t->future, NULL, err, bytes, len, 0);
    concur__ptask_free(t);
}

CONCUR__PRIVATE void concur__ptask_fail_list(concur__ptask *t, int err) {
    while (t) {
        concur__ptask *next = t->next;
        concur__ptask_finish(t, err, NULL, 0, 0);
        t = next;
    }
}

/* Caller holds pp->lock. Takes the whole queue. */
CONCUR__PRIVATE concur__ptask *concur__pp_take_queue(concur_procpool *pp) {
    concur__ptask *q = pp->qhead;
    pp->qhead = pp->qtail = NULL;
    return q;
}

CONCUR__PRIVATE void concur__pp_send_failed(concur__pworker *w, int rc) {
    /* A dead worker gives end of file by itself, but a send can also fail with the
       worker alive (ENOBUFS, ENOMEM), or stop halfway through a frame: it would wait
       for the rest forever. Hanging up makes both ends see end of file now, so the
       task fails as if the worker had died and a fresh one takes its place. */
    if (rc < 0) shutdown(w->fd, SHUT_RDWR);
}

/* Sends t to w; w->send_lock held. in/len: the input when it is not in a segment. A
   failed send is left to the end-of-file handling, which fails the task. */
CONCUR__PRIVATE void concur__pp_send_task(concur_procpool *pp, concur__pworker *w, concur__ptask *t,
                                          const void *in, size_t len) {
    concur__pframe h;
    memset(&h, 0, sizeof h);
    h.id = t->id;
    memcpy(&h.fn, &t->fn, sizeof t->fn);
    h.len = len;
    h.in_item = t->in_item;
    h.out_item = t->out_item;
    if (w->fd < 0) return;
    if (!t->in_seg && len >= pp->desc.shm_threshold && (t->in_seg = concur__seg_get(pp->segs, len)) != NULL)
        memcpy(t->in_seg->map, in, len);
    if (t->in_seg) {
        /* Room for a result of the input's size comes along: results that big land
           there and go to the future as they are. */
        size_t want = t->in_item ? len / t->in_item * t->out_item : len;
        if (!t->out_seg && want >= pp->desc.shm_threshold) t->out_seg = concur__seg_get(pp->segs, want);
        h.type = CONCUR__PF_TASK_SHM;
        h.arena = t->in_seg->cap;
        h.out_cap = t->out_seg ? t->out_seg->cap : 0;
        h.in_seg_id = t->in_seg->id;
        h.out_seg_id = t->out_seg ? t->out_seg->id : 0;
        concur__pp_send_failed(w, concur__send_frame(w->fd, &h, NULL, 0, t->in_seg->fd,
                                                     t->out_seg ? t->out_seg->fd : -1));
        return;
    }
    h.type = CONCUR__PF_TASK;
    concur__pp_send_failed(w, concur__send_frame(w->fd, &h, in, len, -1, -1));
}

/* Caller holds pp->lock; w is idle. Marks t in flight on w. */
CONCUR__PRIVATE void concur__pp_assign(concur__pworker *w, concur__ptask *t) {
    w->state = CONCUR__W_BUSY;
    w->task = t;
    w->deadline = t->timeout_ns < 0 ? CONCUR__NEVER : concur__now_ns() + t->timeout_ns;
}

CONCUR__PRIVATE concur__pworker *concur__pp_idle(concur_procpool *pp) {
    for (int i = 0; i < pp->nworkers; i++)
        if (pp->workers[i].state == CONCUR__W_IDLE) return &pp->workers[i];
    return NULL;
}

/* Queues t, or sends it straight to an idle worker (from the submitting thread: one
   wake-up less on the way there). Returns the caller's future reference. */
CONCUR__PRIVATE concur_future *concur__pp_submit_task(concur_procpool *pp, concur__ptask *t, const void *in,
                                                      size_t len) {
    concur_future *f = concur_future_retain(t->future);
    concur__lock(&pp->lock);
    int err = pp->broken ? pp->broken : pp->state != CONCUR__PP_RUNNING ? CONCUR_ESHUTDOWN : 0;
    concur__pworker *w = err || pp->qhead ? NULL : concur__pp_idle(pp);
    if (err) {
        concur__unlock(&pp->lock);
        concur__ptask_finish(t, err, NULL, 0, 0);
        return f;
    }
    t->id = ++pp->next_id;
    t->in_len = len;
    if (w) {
        concur_future_set_running(t->future);
        concur__pp_assign(w, t);
        int wake = w->deadline < pp->driver_deadline;
        concur__unlock(&pp->lock);
        concur__lock(&w->send_lock);
        concur__pp_send_task(pp, w, t, in, len);
        concur__unlock(&w->send_lock);
        if (wake) concur__pp_wake(pp);
        return f;
    }
    concur__unlock(&pp->lock);
    if (t->map) {
        t->in_ref = (const unsigned char *)in;
    } else if (len >= pp->desc.shm_threshold && (t->in_seg = concur__seg_get(pp->segs, len)) != NULL) {
        /* The one copy a big input gets: the worker reads it where it lies. */
        memcpy(t->in_seg->map, in, len);
    } else {
        /* Copied outside the lock; rechecked after. */
        t->in = (unsigned char *)concur__malloc(len ? len : 1);
        if (!t->in) {
            concur_future_release(f);
            concur__ptask_free(t);
            errno = ENOMEM;
            return NULL;
        }
        if (len) memcpy(t->in, in, len);
    }
    t->in_len = len;
    concur__lock(&pp->lock);
    err = pp->broken ? pp->broken : pp->state != CONCUR__PP_RUNNING ? CONCUR_ESHUTDOWN : 0;
    if (err) {
        concur__unlock(&pp->lock);
        concur__ptask_finish(t, err, NULL, 0, 0);
        return f;
    }
    t->next = NULL;
    if (pp->qtail) pp->qtail->next = t;
    else pp->qhead = t;
    pp->qtail = t;
    int wake = concur__pp_idle(pp) != NULL;
    concur__unlock(&pp->lock);
    if (wake) concur__pp_wake(pp);
    return f;
}

CONCUR__PRIVATE concur__ptask *concur__ptask_new(concur_proc_fn fn, int64_t timeout_ns) {
    concur__ptask *t = (concur__ptask *)concur__malloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->future = concur_future_create();
    if (!t->future) {
        CONCUR_FREE(t);
        return NULL;
    }
    t->fn = fn;
    t->timeout_ns = timeout_ns;
    t->future->detail = -CONCUR__PP_WAIT_SPIN_US;
    concur__fetch_add(&concur__proc_pending, 1, RELAXED);
    return t;
}

CONCUR__PRIVATE int concur__pp_timeout_ns(double timeout, int64_t *ns) {
    if (timeout != timeout) return -EINVAL;
    *ns = timeout <= 0 || timeout > 1e9 ? -1 : (int64_t)(timeout * 1e9);
    return 0;
}

CONCUR_API concur_future *concur_procpool_submit_timeout(concur_procpool *pp, concur_proc_fn fn,
                                                         const void *in, size_t in_len,
                                                         double timeout) {
    int64_t ns;
    if (!pp || !fn || (!in && in_len) || concur__pp_timeout_ns(timeout, &ns)) {
        errno = EINVAL;
        return NULL;
    }
    concur__ptask *t = concur__ptask_new(fn, ns);
    if (!t) { errno = ENOMEM; return NULL; }
    return concur__pp_submit_task(pp, t, in, in_len);
}

CONCUR_API concur_future *concur_procpool_submit(concur_procpool *pp, concur_proc_fn fn,
                                                 const void *in, size_t in_len) {
    return concur_procpool_submit_timeout(pp, fn, in, in_len, pp ? pp->desc.task_timeout : 0);
}

CONCUR_API int concur_procpool_map(concur_procpool *pp, concur_proc_fn fn, const void *in, size_t n,
                                   size_t in_size, void *out, size_t out_size, size_t chunk,
                                   double timeout) {
    if (!pp || !fn || (!in && n && in_size) || (!out && n && out_size) || timeout != timeout)
        return -EINVAL;
    if (n == 0) return 0;
    if (in_size == 0 || (in_size && n > SIZE_MAX / in_size) || (out_size && n > SIZE_MAX / out_size))
        return -EINVAL;
    if (chunk == 0) {
        size_t parts = (size_t)pp->nworkers * 4;
        chunk = (n + parts - 1) / parts;
    }
    size_t nchunks = (n + chunk - 1) / chunk;
    if (nchunks > (size_t)INT32_MAX) return -EINVAL;
    int64_t task_ns = -1;
    concur__pp_timeout_ns(pp->desc.task_timeout, &task_ns);
    concur_future **fs = (concur_future **)concur__malloc(nchunks * sizeof *fs);
    concur__pmap *map = (concur__pmap *)concur__malloc(sizeof *map);
    if (!fs || !map) {
        if (fs) CONCUR_FREE(fs);
        if (map) CONCUR_FREE(map);
        return -ENOMEM;
    }
    memset(fs, 0, nchunks * sizeof *fs);
    memset(map, 0, sizeof *map);
    map->refs = 1;
    map->out = (unsigned char *)out;
    size_t made = 0;
    int rc = 0;
    for (; made < nchunks; made++) {
        size_t first = made * chunk, count = n - first < chunk ? n - first : chunk;
        concur__ptask *t = concur__ptask_new(fn, task_ns);
        if (!t) { rc = -ENOMEM; break; }
        t->map = map;
        concur__fetch_add(&map->refs, 1, RELAXED);
        t->in_item = in_size;
        t->out_item = out_size;
        t->out_off = first * out_size;
        fs[made] = concur__pp_submit_task(pp, t, (const unsigned char *)in + first * in_size, count * in_size);
        if (!fs[made]) { rc = -ENOMEM; break; }
    }
    if (!rc) rc = concur_wait_all(fs, made, timeout);
    if (rc) {
        concur__lock(&map->lock);
        map->abandoned = 1;
        concur__unlock(&map->lock);
        for (size_t i = 0; i < made; i++) concur_future_cancel(fs[i]);
    } else {
        for (size_t i = 0; i < made && !rc; i++) rc = concur_future_error(fs[i]);
    }
    for (size_t i = 0; i < made; i++) concur_future_release(fs[i]);
    CONCUR_FREE(fs);
    concur__pmap_unref(map);
    return rc;
}

CONCUR_API int concur_future_death(concur_future *f, int *signo, int *exit_code) {
    if (signo) *signo = 0;
    if (exit_code) *exit_code = -1;
    if (!concur__future_ok(f) || !concur__future_is_done(f) || f->error != CONCUR_EWORKERDIED) return -EINVAL;
    int st = f->detail - 1; /* stored + 1 so that 0 means "no status" */
    if (st < 0) return 0;
    if (WIFSIGNALED(st) && signo) *signo = WTERMSIG(st);
    if (WIFEXITED(st) && exit_code) *exit_code = WEXITSTATUS(st);
    return 0;
}

CONCUR_API int concur_procpool_workers(concur_procpool *pp) { return pp ? pp->nworkers : -EINVAL; }

/* Driver: a complete frame arrived from w. */
CONCUR__PRIVATE void concur__pp_on_frame(concur_procpool *pp, concur__pworker *w, int got_fd) {
    concur__pframe *h = &w->rx;
    if (h->type == CONCUR__PF_HELLO) {
        if (got_fd >= 0) close(got_fd);
        concur__lock(&pp->lock);
        w->hello = 1;
        w->init_status = h->status;
        if (h->status < 0) {
            pp->broken = CONCUR_EBROKEN;
        } else if (w->state == CONCUR__W_SPAWNING && w->pid > 0) {
            w->state = CONCUR__W_IDLE;
        }
        concur__unlock(&pp->lock);
        return;
    }
    void *bytes = w->rx_body;
    size_t len = (size_t)h->len;
    w->rx_body = NULL;
    if (h->type == CONCUR__PF_RESULT_SHM) {
        if (got_fd >= 0) {
            /* The worker's output arena, sent once; kept for its later results. */
            if (w->out_map) munmap(w->out_map, w->out_len);
            if (w->out_fd >= 0) close(w->out_fd);
            w->out_fd = got_fd;
            w->out_map = NULL;
            w->out_len = 0;
        }
        if (w->out_fd >= 0 && h->arena > w->out_len) {
            if (w->out_map) munmap(w->out_map, w->out_len);
            struct stat st;
            /* Pages past the end of the file would raise SIGBUS here, in the program:
               never map more than the worker's file holds, whatever the frame says. */
            void *m = fstat(w->out_fd, &st) == 0 && (uint64_t)st.st_size >= h->arena
                          ? mmap(NULL, (size_t)h->arena, PROT_READ, MAP_SHARED, w->out_fd, 0)
                          : MAP_FAILED;
            w->out_map = m == MAP_FAILED ? NULL : (unsigned char *)m;
            w->out_len = w->out_map ? (size_t)h->arena : 0;
        }
    }
    concur__lock(&pp->lock);
    concur__ptask *t = w->task;
    if (!t || t->id != h->id) {
        /* The answer to a task that timed out meanwhile. */
        concur__unlock(&pp->lock);
        if (bytes) CONCUR_FREE(bytes);
        return;
    }
    w->task = NULL;
    w->deadline = CONCUR__NEVER;
    w->tasks_done++;
    int max = pp->desc.max_tasks_per_child;
    if (max > 0 && w->tasks_done >= max) w->retiring = 1;
    w->state = w->retiring ? CONCUR__W_RETIRING : CONCUR__W_IDLE;
    concur__unlock(&pp->lock);
    if (got_fd >= 0 && h->type != CONCUR__PF_RESULT_SHM) close(got_fd);
    int err = h->status < 0 ? h->status : 0;
    const unsigned char *src = (const unsigned char *)bytes;
    concur__seg *result_seg = NULL;
    if (!err && h->type == CONCUR__PF_RESULT_SHM && h->out_cap) {
        /* In the segment we lent; the worker may have grown it. */
        result_seg = t->out_seg;
        if (!result_seg || concur__seg_resize(result_seg, (size_t)h->out_cap) < 0 || len > result_seg->cap) {
            result_seg = NULL;
            err = -EPROTO;
        } else {
            src = result_seg->map;
        }
    } else if (!err && h->type == CONCUR__PF_RESULT_SHM) {
        src = w->out_map;
        if (!src || len > w->out_len) err = -EPROTO;
    }
    if (!err && t->map && len != t->in_len / t->in_item * t->out_item) err = -EPROTO;
    if (!err && t->map) {
        concur__lock(&t->map->lock);
        if (!t->map->abandoned && len) memcpy(t->map->out + t->out_off, src, len);
        concur__unlock(&t->map->lock);
        len = 0;
    } else if (!err && result_seg) {
        /* Handed over as it is: no copy. The future gives the segment back. Only the
           pool completes a running process future, so this cannot race. */
        t->out_seg = NULL;
        if (bytes) CONCUR_FREE(bytes);
        t->future->bytes_shared = 1;
        concur__store(&t->future->nu.shared_seg, (void *)result_seg, RELAXED);
        concur__store(&t->future->detail, 0, RELAXED);
        int rc = concur__future_complete(t->future, NULL, 0, result_seg->map, len, 0);
        CONCUR__CHECK(rc == 0);
        (void)rc;
        concur__ptask_free(t);
        return;
    } else if (!err && h->type == CONCUR__PF_RESULT_SHM) {
        bytes = concur__malloc(len ? len : 1);
        if (!bytes) err = -ENOMEM;
        else memcpy(bytes, src, len);
    }
    if (err || t->map) {
        if (bytes) CONCUR_FREE(bytes);
        bytes = NULL;
        len = 0;
    }
    concur__ptask_finish(t, err, bytes, len, 0);
}

/* Driver: reads what w has sent. Returns 0, or 1 when the channel is gone (or can
   no longer be trusted). */
CONCUR__PRIVATE int concur__pp_read(concur_procpool *pp, concur__pworker *w) {
    for (;;) {
        if (w->rx_got < sizeof w->rx) {
            ssize_t n = concur__recv_some(w->fd, (char *)&w->rx + w->rx_got, sizeof w->rx - w->rx_got,
                                          MSG_DONTWAIT, &w->rx_fd, 1);
            if (n == -EAGAIN || n == -EWOULDBLOCK) return 0;
            if (n <= 0) return 1;
            w->rx_got += (size_t)n;
            if (w->rx_got < sizeof w->rx) continue;
            w->rx_body_got = 0;
            uint32_t type = w->rx.type;
            if (type != CONCUR__PF_HELLO && type != CONCUR__PF_RESULT && type != CONCUR__PF_RESULT_SHM)
                return 1; /* not our protocol: a task scribbled on the socket */
            /* Ours in form, but not what this worker can be saying now: a second
               greeting, or a result for a task it does not hold (one that timed out
               is being killed: its late answer is dropped later). */
            concur__lock(&pp->lock);
            int expected = type == CONCUR__PF_HELLO ? !w->hello
                                                    : w->task ? w->task->id == w->rx.id : w->kill_reason != 0;
            concur__unlock(&pp->lock);
            if (!expected) return 1;
            if (type == CONCUR__PF_RESULT && w->rx.len) {
                /* Cannot hold the result: drop the worker so that the task fails
                   instead of the stream losing its framing. */
                if (w->rx.len > SIZE_MAX) return 1;
                w->rx_body = (unsigned char *)concur__malloc((size_t)w->rx.len);
                if (!w->rx_body) return 1;
            }
        }
        if (w->rx.type == CONCUR__PF_RESULT && w->rx_body_got < w->rx.len) {
            ssize_t n = concur__recv_some(w->fd, w->rx_body + w->rx_body_got,
                                          (size_t)w->rx.len - w->rx_body_got, MSG_DONTWAIT, &w->rx_fd, 1);
            if (n == -EAGAIN || n == -EWOULDBLOCK) return 0;
            if (n <= 0) return 1;
            w->rx_body_got += (size_t)n;
            if (w->rx_body_got < w->rx.len) continue;
        }
        int got_fd = w->rx_fd;
        w->rx_fd = -1;
        w->rx_got = 0;
        concur__pp_on_frame(pp, w, got_fd);
    }
}

/* The process pool's system calls in the program, through the fault hook. */
CONCUR__PRIVATE int concur__pp_socketpair(int type, int sv[2]) {
    if (CONCUR__FAULT(CONCUR_FAULT_PROCESS)) {
        errno = EMFILE;
        return -1;
    }
    return socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv);
}

CONCUR__PRIVATE int concur__pp_spawn(concur_procpool *pp, concur__pworker *w) {
    int sv[2];
    if (concur__pp_socketpair(SOCK_STREAM, sv) < 0) return -errno;
    concur__hmsg m;
    memset(&m, 0, sizeof m);
    m.op = CONCUR__H_SPAWN;
    m.index = w->index;
    struct iovec iov;
    iov.iov_base = &m;
    iov.iov_len = sizeof m;
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof cbuf.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &sv[1], sizeof(int));
    ssize_t n;
    do n = sendmsg(pp->ctl, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : 0;
    close(sv[1]);
    if (err) {
        close(sv[0]);
        return -err;
    }
    w->fd = sv[0];
    w->state = CONCUR__W_SPAWNING;
    w->pid = 0;
    w->hello = w->eof = w->reap_sent = 0;
    w->kill_reason = 0;
    w->tasks_done = 0;
    w->deadline = w->kill_at = CONCUR__NEVER;
    w->rx_got = 0;
    w->rx_fd = -1;
    w->retiring = 0;
    return 0;
}

/* Driver: w's channel is gone. Closes our end and asks the helper for the status. */
CONCUR__PRIVATE void concur__pp_lost(concur_procpool *pp, concur__pworker *w) {
    concur__lock(&w->send_lock);
    concur__lock(&pp->lock);
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    w->eof = 1;
    if (w->state != CONCUR__W_EMPTY) w->state = CONCUR__W_DEAD;
    concur__unlock(&pp->lock);
    concur__unlock(&w->send_lock);
    if (w->rx_body) CONCUR_FREE(w->rx_body);
    w->rx_body = NULL;
    w->rx_got = 0;
    if (w->rx_fd >= 0) close(w->rx_fd);
    w->rx_fd = -1;
    if (w->out_map) munmap(w->out_map, w->out_len);
    if (w->out_fd >= 0) close(w->out_fd);
    w->out_map = NULL;
    w->out_len = 0;
    w->out_fd = -1;
}

CONCUR__PRIVATE void concur__pp_request_reap(concur_procpool *pp, concur__pworker *w) {
    if (w->reap_sent || w->pid <= 0) return;
    w->reap_sent = 1;
    concur__hmsg m;
    memset(&m, 0, sizeof m);
    m.op = CONCUR__H_REAP;
    m.index = w->index;
    m.pid = w->pid;
    if (pp->helper_gone || send(pp->ctl, &m, sizeof m, MSG_NOSIGNAL) != (ssize_t)sizeof m)
        pp->helper_gone = 1;
}

/* Caller holds pp->lock. Records a crash; marks the pool broken when more than
   max_restarts fell within restart_window. */
CONCUR__PRIVATE void concur__pp_count_crash(concur_procpool *pp) {
    if (pp->desc.max_restarts < 0) return;
    int64_t now = concur__now_ns();
    int slots = pp->desc.max_restarts + 1;
    pp->crash_times[pp->crash_pos] = now;
    pp->crash_pos = (pp->crash_pos + 1) % slots;
    /* The ring holds the last max_restarts + 1 crashes; the slot after the newest is
       the oldest of them. */
    int64_t oldest = pp->crash_times[pp->crash_pos];
    if (oldest && now - oldest <= (int64_t)(pp->desc.restart_window * 1e9)) pp->broken = CONCUR_EBROKEN;
}

/* Caller holds pp->lock; w is empty. */
CONCUR__PRIVATE void concur__pp_respawn(concur_procpool *pp, concur__pworker *w) {
    if (pp->state != CONCUR__PP_RUNNING || pp->broken || pp->helper_gone) return;
    if (concur__pp_spawn(pp, w) < 0) pp->broken = CONCUR_EBROKEN;
}

/* Driver: the helper reaped w (status < 0: unknown). Fails its task, counts a crash,
   replaces the worker. */
CONCUR__PRIVATE void concur__pp_reaped(concur_procpool *pp, concur__pworker *w, int status) {
    concur__lock(&pp->lock);
    concur__ptask *t = w->task;
    w->task = NULL;
    int reason = w->kill_reason;
    int clean_exit = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    int expected = reason || w->retiring || (!t && clean_exit && w->hello);
    if (!expected) concur__pp_count_crash(pp);
    if (!w->hello && w->init_status >= 0 && !expected && pp->desc.max_restarts < 0) {
        /* Nothing would stop a worker that never comes up from being replaced forever. */
        pp->broken = CONCUR_EBROKEN;
    }
    w->state = CONCUR__W_EMPTY;
    w->pid = 0;
    w->kill_at = CONCUR__NEVER;
    concur__seg *held0 = w->held[0], *held1 = w->held[1];
    w->held[0] = w->held[1] = NULL;
    concur__pp_respawn(pp, w);
    concur__unlock(&pp->lock);
    concur__seg_put(held0);
    concur__seg_put(held1);
    if (t) {
        int err = reason ? reason : CONCUR_EWORKERDIED;
        concur__ptask_finish(t, err, NULL, 0, err == CONCUR_EWORKERDIED ? status + 1 : 0);
    }
}

CONCUR__PRIVATE void concur__pp_on_helper(concur_procpool *pp) {
    for (;;) {
        concur__hmsg m;
        ssize_t n;
        do n = recv(pp->ctl, &m, sizeof m, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n != (ssize_t)sizeof m) {
            /* The helper is gone (killed from outside): its workers die with it
               (PR_SET_PDEATHSIG), nobody can be reaped or replaced any more. */
            concur__lock(&pp->lock);
            pp->helper_gone = 1;
            pp->broken = CONCUR_EBROKEN;
            concur__unlock(&pp->lock);
            for (int i = 0; i < pp->nworkers; i++) {
                concur__pworker *w = &pp->workers[i];
                if (w->state != CONCUR__W_EMPTY) {
                    if (w->fd >= 0) concur__pp_lost(pp, w);
                    concur__pp_reaped(pp, w, -1);
                }
            }
            return;
        }
        if (m.index < 0 || m.index >= pp->nworkers) continue;
        concur__pworker *w = &pp->workers[m.index];
        if (m.op == CONCUR__H_SPAWNED) {
            concur__lock(&pp->lock);
            if (m.pid <= 0) {
                /* fork failed in the helper: a crash for the restart limit, then
                   another try. */
                concur__unlock(&pp->lock);
                concur__pp_lost(pp, w);
                concur__lock(&pp->lock);
                concur__pp_count_crash(pp);
                w->state = CONCUR__W_EMPTY;
                concur__pp_respawn(pp, w);
            } else {
                w->pid = m.pid;
                if (w->hello && w->state == CONCUR__W_SPAWNING && w->init_status >= 0) w->state = CONCUR__W_IDLE;
            }
            int eof = w->eof && w->pid > 0;
            concur__unlock(&pp->lock);
            if (eof) concur__pp_request_reap(pp, w);
        } else if (m.op == CONCUR__H_REAPED && w->reap_sent && m.pid == w->pid) {
            concur__pp_reaped(pp, w, m.status);
        }
    }
}

CONCUR__PRIVATE void *concur__pp_driver(void *arg) {
    concur_procpool *pp = (concur_procpool *)arg;
    int n = pp->nworkers;
    struct pollfd *pfd = (struct pollfd *)(pp->crash_times + (pp->desc.max_restarts >= 0 ? pp->desc.max_restarts + 1 : 0));
    int *who = (int *)(pfd + n + 2);
    char *send_now = (char *)(who + n + 2);
    for (;;) {
        int64_t now = concur__now_ns(), deadline = CONCUR__NEVER;
        concur__ptask *expired = NULL, *failed = NULL;
        int fail_err = 0, done = 0, nfd = 0;
        memset(send_now, 0, (size_t)n);
        concur__lock(&pp->lock);
        int64_t grace = (int64_t)(pp->desc.kill_grace * 1e9);
        if (pp->state == CONCUR__PP_STOPPING && !pp->stop_forced && pp->stop_deadline <= now) {
            pp->stop_forced = 1;
            for (int i = 0; i < n; i++) {
                concur__pworker *w = &pp->workers[i];
                if (w->state == CONCUR__W_EMPTY || w->state == CONCUR__W_DEAD || w->pid <= 0) continue;
                if (!w->kill_reason) w->kill_reason = CONCUR_ESHUTDOWN;
                if (w->kill_at == CONCUR__NEVER) {
                    kill(w->pid, SIGTERM);
                    w->kill_at = now + grace;
                }
            }
        }
        if (pp->qhead && (pp->broken || pp->stop_forced)) {
            failed = concur__pp_take_queue(pp);
            fail_err = pp->broken ? pp->broken : CONCUR_ESHUTDOWN;
        }
        for (int i = 0; i < n; i++) {
            concur__pworker *w = &pp->workers[i];
            /* A submitter that dispatched straight to this worker may still be
               sending (and reading the task's segments) under send_lock; the lock
               order is send_lock, then pp->lock, so only try it. When busy, the
               expiry waits for the next turn, which comes at once (deadline past). */
            if (w->state == CONCUR__W_BUSY && w->task && w->deadline <= now &&
                concur__lock_try(&w->send_lock)) {
                /* The worker may still be writing into the task's segments until it
                   is reaped: they stay with it and are recycled only then. */
                w->held[0] = w->task->in_seg;
                w->held[1] = w->task->out_seg;
                w->task->in_seg = w->task->out_seg = NULL;
                concur__unlock(&w->send_lock);
                w->task->next = expired;
                expired = w->task;
                w->task = NULL;
                w->kill_reason = -ETIMEDOUT;
                kill(w->pid, SIGTERM);
                w->kill_at = now + grace;
            }
            if (w->kill_at <= now && w->pid > 0 && w->state != CONCUR__W_DEAD) {
                kill(w->pid, SIGKILL);
                w->kill_at = CONCUR__NEVER;
            }
            while (w->state == CONCUR__W_IDLE && pp->qhead) {
                concur__ptask *t = pp->qhead;
                pp->qhead = t->next;
                if (!pp->qhead) pp->qtail = NULL;
                if (concur_future_set_running(t->future) != 0) {
                    t->next = failed; /* cancelled while queued: only freed */
                    failed = t;
                    if (!fail_err) fail_err = -ECANCELED;
                    continue;
                }
                concur__pp_assign(w, t);
                send_now[i] = 1;
            }
            if (w->state == CONCUR__W_IDLE && pp->state == CONCUR__PP_STOPPING && !pp->qhead) {
                w->state = CONCUR__W_RETIRING;
                w->retiring = 1;
                send_now[i] = 2;
            }
            if (w->state == CONCUR__W_BUSY && w->task && w->deadline < deadline) deadline = w->deadline;
            if (w->kill_at < deadline) deadline = w->kill_at;
        }
        if (pp->state == CONCUR__PP_STOPPING) {
            done = 1;
            for (int i = 0; i < n; i++)
                if (pp->workers[i].state != CONCUR__W_EMPTY) done = 0;
            if (!pp->stop_forced && pp->stop_deadline < deadline) deadline = pp->stop_deadline;
        }
        int64_t trim_at = concur__segs_trim(pp->segs, now);
        if (trim_at < deadline) deadline = trim_at;
        pp->driver_deadline = deadline;
        concur__unlock(&pp->lock);

        while (expired) {
            concur__ptask *next = expired->next;
            concur__ptask_finish(expired, -ETIMEDOUT, NULL, 0, 0);
            expired = next;
        }
        while (failed) {
            concur__ptask *next = failed->next;
            if (concur__future_is_done(failed->future)) concur__ptask_free(failed);
            else concur__ptask_finish(failed, fail_err == -ECANCELED ? CONCUR_ESHUTDOWN : fail_err, NULL, 0, 0);
            failed = next;
        }
        for (int i = 0; i < n; i++) {
            concur__pworker *w = &pp->workers[i];
            if (!send_now[i]) continue;
            concur__lock(&w->send_lock);
            if (send_now[i] == 1) {
                /* Only the driver finishes a task in flight, so w->task is stable. */
                concur__ptask *t = w->task;
                if (t->map) {
                    /* The map may have given up and returned: then its input is
                       gone, and an empty chunk goes instead (its answer is dropped). */
                    concur__lock(&t->map->lock);
                    concur__pp_send_task(pp, w, t, t->in_ref, t->map->abandoned ? 0 : t->in_len);
                    concur__unlock(&t->map->lock);
                } else {
                    concur__pp_send_task(pp, w, t, t->in, t->in_len);
                    if (t->in) CONCUR_FREE(t->in);
                    t->in = NULL;
                }
            } else if (w->fd >= 0) {
                concur__pframe h;
                memset(&h, 0, sizeof h);
                h.type = CONCUR__PF_EXIT;
                concur__pp_send_failed(w, concur__send_frame(w->fd, &h, NULL, 0, -1, -1));
            }
            concur__unlock(&w->send_lock);
        }
        if (done) break;

        pfd[nfd].fd = pp->wake_rd;
        pfd[nfd].events = POLLIN;
        who[nfd++] = -1;
        if (!pp->helper_gone) {
            pfd[nfd].fd = pp->ctl;
            pfd[nfd].events = POLLIN;
            who[nfd++] = -2;
        }
        for (int i = 0; i < n; i++) {
            if (pp->workers[i].fd < 0) continue;
            pfd[nfd].fd = pp->workers[i].fd;
            pfd[nfd].events = POLLIN;
            who[nfd++] = i;
        }
        int ready = poll(pfd, (nfds_t)nfd, concur__poll_ms(deadline));
        if (ready <= 0) continue;
        for (int k = 0; k < nfd; k++) {
            if (!pfd[k].revents) continue;
            if (who[k] == -1) {
                /* Drain first, then clear: clearing first would let a wake written in
                   between be drained while the flag stays set, and every later
                   waker would then skip the write. The state a waker published
                   before setting the flag is read at the top of the loop. */
                char buf[64];
                while (read(pp->wake_rd, buf, sizeof buf) > 0) {
                }
                concur__store(&pp->wake_pending, 0, SEQ_CST);
            } else if (who[k] == -2) {
                concur__pp_on_helper(pp);
            } else {
                concur__pworker *w = &pp->workers[who[k]];
                if (w->fd >= 0 && concur__pp_read(pp, w)) {
                    concur__pp_lost(pp, w);
                    concur__pp_request_reap(pp, w);
                    if (pp->helper_gone) concur__pp_reaped(pp, w, -1);
                }
            }
        }
    }
    /* Every worker is reaped; closing the channel lets the helper exit. */
    close(pp->ctl);
    pp->ctl = -1;
    int st;
    if (pp->helper_pid > 0) concur__reap(pp->helper_pid, &st);
    pp->helper_pid = 0;
    concur_event_set(&pp->stopped);
    return NULL;
}

CONCUR__PRIVATE void concur__pp_free(concur_procpool *pp) {
    if (pp->ctl >= 0) close(pp->ctl);
    if (pp->helper_pid > 0) {
        int st;
        /* The helper exits when its channel closes, killing any worker it has. */
        concur__reap(pp->helper_pid, &st);
    }
    for (int i = 0; pp->workers && i < pp->nworkers; i++) {
        concur__pworker *w = &pp->workers[i];
        if (w->fd >= 0) close(w->fd);
        if (w->rx_fd >= 0) close(w->rx_fd);
        if (w->rx_body) CONCUR_FREE(w->rx_body);
        if (w->out_map) munmap(w->out_map, w->out_len);
        if (w->out_fd >= 0) close(w->out_fd);
        if (w->task) concur__ptask_free(w->task);
        concur__seg_put(w->held[0]);
        concur__seg_put(w->held[1]);
    }
    concur__ptask *q = pp->qhead;
    while (q) {
        concur__ptask *next = q->next;
        concur__ptask_free(q);
        q = next;
    }
    if (pp->wake_rd >= 0) close(pp->wake_rd);
    if (pp->wake_wr >= 0 && pp->wake_wr != pp->wake_rd) close(pp->wake_wr);
    if (pp->crash_times) CONCUR_FREE(pp->crash_times);
    if (pp->workers) CONCUR_FREE(pp->workers);
    if (pp->kids) CONCUR_FREE(pp->kids);
    if (pp->segs) {
        concur__lock(&pp->segs->lock);
        pp->segs->closed = 1;
        concur__unlock(&pp->segs->lock);
        concur__segs_unref(pp->segs);
    }
    CONCUR_FREE(pp);
}

CONCUR__PRIVATE int concur__pp_desc_ok(const concur_procpool_desc *d) {
    return d->workers >= 0 && d->workers <= 1024 && d->max_tasks_per_child >= 0 &&
           d->task_timeout == d->task_timeout && d->task_timeout >= 0 &&
           d->restart_window == d->restart_window && d->restart_window >= 0 && d->kill_grace == d->kill_grace &&
           d->kill_grace >= 0 && d->kill_grace <= 3600 && d->max_restarts <= 100000;
}

CONCUR_API concur_procpool *concur_procpool_create(const concur_procpool_desc *desc) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    if (!concur__pp_desc_ok(&d)) { errno = EINVAL; return NULL; }
    if (d.workers == 0) d.workers = CONCUR__PROCS_DEFAULT();
    if (d.max_restarts == 0) d.max_restarts = 20;
    if (d.restart_window == 0) d.restart_window = 10;
    if (d.shm_threshold == 0) d.shm_threshold = CONCUR__PP_THRESHOLD_DEFAULT;
    if (d.kill_grace == 0) d.kill_grace = 0.5;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    concur__store(&concur__proc_cpus, (uint32_t)(cpus < 1 ? 1 : cpus), RELAXED);
    int n = d.workers;
    concur_procpool *pp = (concur_procpool *)concur__malloc(sizeof *pp);
    if (!pp) { errno = ENOMEM; return NULL; }
    memset(pp, 0, sizeof *pp);
    pp->desc = d;
    pp->nworkers = n;
    pp->ctl = pp->wake_rd = pp->wake_wr = -1;
    concur_event_init(&pp->stopped);
    /* One block for the crash ring and the driver's poll arrays. */
    size_t ring = d.max_restarts >= 0 ? (size_t)d.max_restarts + 1 : 0;
    size_t scratch = ring * sizeof(int64_t) + (size_t)(n + 2) * (sizeof(struct pollfd) + sizeof(int)) + (size_t)n + 16;
    int err = ENOMEM, kill_with_parent = 0, pid = -1;
    int ctl[2];
    sigset_t all, old;
    /* Each part is made usable for concur__pp_free as soon as it exists. */
    pp->crash_times = (int64_t *)concur__malloc(scratch);
    if (pp->crash_times) memset(pp->crash_times, 0, scratch);
    pp->workers = (concur__pworker *)concur__malloc((size_t)n * sizeof *pp->workers);
    if (pp->workers) {
        memset(pp->workers, 0, (size_t)n * sizeof *pp->workers);
        for (int i = 0; i < n; i++) {
            concur__pworker *w = &pp->workers[i];
            w->index = i;
            w->fd = w->out_fd = w->rx_fd = -1;
            w->deadline = w->kill_at = CONCUR__NEVER;
        }
    }
    pp->kids = (int64_t *)concur__malloc((size_t)n * sizeof *pp->kids);
    if (pp->kids) memset(pp->kids, 0, (size_t)n * sizeof *pp->kids);
    pp->segs = (concur__segs *)concur__malloc(sizeof *pp->segs);
    if (pp->segs) {
        memset(pp->segs, 0, sizeof *pp->segs);
        pp->segs->refs = 1;
        long open_max = sysconf(_SC_OPEN_MAX);
        long live_max = open_max > 0 ? open_max / 4 : 256;
        pp->segs->live_max = (int)(live_max < 32 ? 32 : live_max > 1024 ? 1024 : live_max);
    }
    if (!pp->crash_times || !pp->workers || !pp->kids || !pp->segs) goto fail;
    concur__store(&concur__future_seg_release, &concur__seg_release_bytes, RELEASE);
#ifdef __linux__
    pp->wake_rd = pp->wake_wr = CONCUR__FAULT(CONCUR_FAULT_PROCESS) ? (errno = EMFILE, -1)
                                                                     : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pp->wake_rd < 0) { err = errno; goto fail; }
#else
    {
        int p[2];
        if (pipe(p) < 0) { err = errno; goto fail; }
        pp->wake_rd = p[0];
        pp->wake_wr = p[1];
        for (int i = 0; i < 2; i++) {
            fcntl(p[i], F_SETFD, FD_CLOEXEC);
            fcntl(p[i], F_SETFL, O_NONBLOCK);
        }
    }
#endif
    if (concur__pp_socketpair(SOCK_SEQPACKET, ctl) < 0) { err = errno; goto fail; }
    /* Output still buffered in stdio would be written again by every worker's copy. */
    fflush(NULL);
#ifdef __linux__
    /* PR_SET_PDEATHSIG fires when the forking *thread* exits: only safe to ask for
       from the main thread. Elsewhere the helper relies on its channel's end of file. */
    kill_with_parent = (long)getpid() == syscall(SYS_gettid);
#endif
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = CONCUR__FAULT(CONCUR_FAULT_PROCESS) ? (errno = EAGAIN, -1) : (int)fork();
    if (pid == 0) {
        close(ctl[0]);
        concur__helper_main(pp, ctl[1], kill_with_parent);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(ctl[1]);
    pp->ctl = ctl[0];
    if (pid < 0) goto fail;
    pp->helper_pid = pid;
    for (int i = 0; i < n; i++) {
        int rc = concur__pp_spawn(pp, &pp->workers[i]);
        if (rc < 0) { err = -rc; goto fail; }
    }
    for (int i = 0; i < n; i++) {
        concur__hmsg m;
        ssize_t got;
        do got = recv(pp->ctl, &m, sizeof m, 0);
        while (got < 0 && errno == EINTR);
        if (got != (ssize_t)sizeof m || m.op != CONCUR__H_SPAWNED || m.index < 0 || m.index >= n) {
            err = ECHILD;
            goto fail;
        }
        if (m.pid <= 0) { err = -m.pid; goto fail; }
        pp->workers[m.index].pid = m.pid;
    }
    for (int i = 0; i < n; i++) {
        concur__pworker *w = &pp->workers[i];
        concur__pframe h;
        int got_fd = -1;
        int rc = concur__recv_all(w->fd, &h, sizeof h, &got_fd, 1);
        if (got_fd >= 0) close(got_fd);
        if (rc <= 0 || h.type != CONCUR__PF_HELLO) { err = rc < 0 ? -rc : ECHILD; goto fail; }
        if (h.status < 0) { err = h.status > -4096 ? -h.status : ECHILD; goto fail; }
        w->hello = 1;
        w->state = CONCUR__W_IDLE;
    }
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* The driver blocks every signal, so the program's handlers run on its own threads. */
    err = concur__thread_start(&pp->driver, concur__pp_driver, pp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) goto fail;
    pp->driver_running = 1;
    return pp;
fail:
    concur__pp_free(pp);
    errno = err ? err : ENOMEM;
    return NULL;
}

CONCUR_API int concur_procpool_shutdown(concur_procpool *pp, int cancel_pending, double timeout) {
    if (!pp) return -EINVAL;
    int64_t deadline;
    if (concur__deadline(timeout, &deadline)) return -EINVAL;
    if (pthread_equal(pthread_self(), pp->driver)) return -EDEADLK;
    concur__lock(&pp->lock);
    if (pp->state == CONCUR__PP_RUNNING) {
        pp->state = CONCUR__PP_STOPPING;
        pp->stop_deadline = deadline;
    } else if (deadline < pp->stop_deadline) {
        pp->stop_deadline = deadline;
    }
    concur__ptask *cancel = cancel_pending ? concur__pp_take_queue(pp) : NULL;
    concur__unlock(&pp->lock);
    while (cancel) {
        concur__ptask *next = cancel->next;
        concur_future_cancel(cancel->future);
        concur__ptask_free(cancel);
        cancel = next;
    }
    concur__pp_wake(pp);
    return concur_event_wait(&pp->stopped, CONCUR_FOREVER);
}

CONCUR_API int concur_procpool_destroy(concur_procpool *pp) {
    if (!pp) return -EINVAL;
    int rc = concur_procpool_shutdown(pp, 0, CONCUR_FOREVER);
    if (rc) return rc;
    pthread_join(pp->driver, NULL);
    concur__pp_free(pp);
    return 0;
}
#endif /* CONCUR_NO_PROCESS */

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__) || defined(__clang__)
#  pragma GCC diagnostic pop
#endif
#endif /* CONCUR_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 The concur.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
*/
