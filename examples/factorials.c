/* factorials.c - the concurrent.futures pattern in C: submit many, consume as completed.

   Submits one task per number to a thread pool; each computes n! exactly as a big
   number. The main thread takes the results with the as-completed iterator, in the
   order the tasks finish (small factorials first, whatever the submission order), and
   prints each, or the task's own error: a negative n fails with -EDOM and a too-large
   n with -ERANGE, reported through concur_task_fail just as a Python task would
   raise. 35!, 36! and 37! are checked against their known values.

   Build and run:
       cc -O2 -pthread examples/factorials.c -o factorials && ./factorials
   Exits 0 when every result and every error is the expected one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* A big number: little-endian limbs in base 10^9. */
typedef struct bignum { int len; unsigned *limb; } bignum;
#define LIMB_BASE 1000000000u
enum { MAX_N = 20000 };

static char *bignum_to_string(const bignum *b) {
    char *s = (char *)malloc((size_t)b->len * 9 + 1);
    if (!s) return NULL;
    int pos = sprintf(s, "%u", b->limb[b->len - 1]);
    for (int i = b->len - 2; i >= 0; i--) pos += sprintf(s + pos, "%09u", b->limb[i]);
    return s;
}

/* n! as a decimal string, or NULL after concur_task_fail. */
static void *factorial_task(void *arg) {
    long n = (long)(intptr_t)arg;
    if (n < 0) { concur_task_fail(-EDOM); return NULL; }
    if (n > MAX_N) { concur_task_fail(-ERANGE); return NULL; }
    bignum b;
    /* n! < n^n, which has n * digits(n) decimal digits: a safe bound on the limbs. */
    long digits_of_n = 1;
    for (long m = n; m >= 10; m /= 10) digits_of_n++;
    b.limb = (unsigned *)malloc(sizeof(unsigned) * (size_t)(n * digits_of_n / 9 + 2));
    if (!b.limb) { concur_task_fail(-ENOMEM); return NULL; }
    b.len = 1;
    b.limb[0] = 1;
    for (long k = 2; k <= n; k++) {
        unsigned long long carry = 0;
        for (int i = 0; i < b.len; i++) {
            unsigned long long v = (unsigned long long)b.limb[i] * (unsigned long long)k + carry;
            b.limb[i] = (unsigned)(v % LIMB_BASE);
            carry = v / LIMB_BASE;
        }
        while (carry) {
            b.limb[b.len++] = (unsigned)(carry % LIMB_BASE);
            carry /= LIMB_BASE;
        }
    }
    char *s = bignum_to_string(&b);
    free(b.limb);
    if (!s) concur_task_fail(-ENOMEM);
    return s;
}

static const struct { long n; const char *value; } known[] = {
    {35, "10333147966386144929666651337523200000000"},
    {36, "371993326789901217467999448150835200000000"},
    {37, "13763753091226345046315979581580902400000000"},
};

int main(void) {
    static const long numbers[] = {5000, 35, 36, 37, 1000, -3, 12000, 20, 50000};
    enum { N = sizeof numbers / sizeof numbers[0] };
    concur_pool *pool = concur_pool_create(NULL);
    if (!pool) { perror("concur_pool_create"); return 1; }

    concur_future *futures[N];
    for (int i = 0; i < N; i++) {
        futures[i] = concur_pool_submit(pool, factorial_task, (void *)(intptr_t)numbers[i]);
        if (!futures[i]) { perror("concur_pool_submit"); return 1; }
    }

    int bad = 0;
    concur_as_completed *it = concur_as_completed_create(futures, N);
    if (!it) { perror("concur_as_completed_create"); return 1; }
    for (int i; (i = concur_as_completed_next(it, 60.0)) >= 0;) {
        void *value;
        int rc = concur_future_result(futures[i], 0, &value);
        long n = numbers[i];
        if (rc != 0) {
            printf("%6ld! -> error: %s\n", n, concur_strerror(rc));
            bad |= !((n < 0 && rc == -EDOM) || (n > MAX_N && rc == -ERANGE));
            continue;
        }
        char *digits = (char *)value;
        size_t len = strlen(digits);
        if (len <= 50) printf("%6ld! = %s\n", n, digits);
        else printf("%6ld! = %.20s...%.10s (%zu digits)\n", n, digits, digits + len - 10, len);
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (known[k].n == n && strcmp(known[k].value, digits) != 0) {
                printf("        WRONG: expected %s\n", known[k].value);
                bad = 1;
            }
        free(digits);
    }
    concur_as_completed_destroy(it);
    for (int i = 0; i < N; i++) concur_future_release(futures[i]);
    concur_pool_destroy(pool);
    printf(bad ? "factorials: FAILED\n" : "factorials: all results and errors as expected\n");
    return bad;
}
