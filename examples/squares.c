/* squares.c - the multiprocessing example in C: a pool of 4 worker processes maps
   square over a list, results in input order.

   The Python original:
       with multiprocessing.Pool(processes=4) as pool:
           results = pool.map(calculate_square, [1, 2, 3, 4, 5, 6, 7, 8])
   Each square is computed in a worker process (the line it prints comes from there,
   so the order of those lines varies); the results come back in input order.

   Build and run:
       cc -O2 -pthread examples/squares.c -o squares && ./squares
   Exits 0 when every result is right. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* Runs in a worker: one int64 in, its square out. */
static int calculate_square(const void *in, size_t len, concur_proc_out *out) {
    int64_t number, result;
    if (len != sizeof number) return -EINVAL;
    memcpy(&number, in, sizeof number);
    result = number * number;
    printf("The square of %lld is %lld (worker pid %ld)\n", (long long)number, (long long)result,
           (long)getpid());
    return concur_proc_write(out, &result, sizeof result);
}

int main(void) {
    int64_t numbers[] = {1, 2, 3, 4, 5, 6, 7, 8}, results[8];
    enum { N = sizeof numbers / sizeof numbers[0] };

    /* Created first thing: workers are forked from the program as it is now. */
    concur_procpool_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.workers = 4;
    concur_procpool *pool = concur_procpool_create(&desc);
    if (!pool) {
        perror("concur_procpool_create");
        return 1;
    }
    /* chunk 1: one task per number, spread over the 4 workers as Pool.map would for
       so short a list. */
    int rc = concur_procpool_map(pool, calculate_square, numbers, N, sizeof numbers[0], results,
                                 sizeof results[0], 1, 30);
    concur_procpool_destroy(pool);
    if (rc != 0) {
        fprintf(stderr, "map failed: %s\n", concur_strerror(rc));
        return 1;
    }
    printf("Final results: [");
    int ok = 1;
    for (int i = 0; i < N; i++) {
        printf("%s%lld", i ? ", " : "", (long long)results[i]);
        ok &= results[i] == numbers[i] * numbers[i];
    }
    printf("]\n");
    return ok ? 0 : 1;
}
