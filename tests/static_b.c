/* Second translation unit of the CONCUR_STATIC link check (see static_a.c). */
#define CONCUR_STATIC
#define CONCUR_IMPLEMENTATION
#include "../concur.h"

int static_b_roundtrip(int v);

int static_b_roundtrip(int v) {
    concur_future *f = concur_future_create();
    if (!f) return -1;
    concur_future_set_value(f, (void *)(intptr_t)v);
    int out = (int)(intptr_t)concur_future_value(f);
    concur_future_release(f);
    return out;
}
