/* CONCUR_STATIC in two translation units of one program: each gets a private copy of
   the library, and linking them together must not clash. */
#define CONCUR_STATIC
#define CONCUR_IMPLEMENTATION
#include "../concur.h"
#include <stdio.h>
#include <string.h>

int static_b_roundtrip(int v);

static int static_a_roundtrip(int v) {
    concur_chan *ch = concur_chan_create(sizeof v, 1);
    int out = -1;
    if (!ch || concur_chan_send(ch, &v, 0) || concur_chan_recv(ch, &out, 0)) out = -1;
    concur_chan_destroy(ch);
    return out;
}

int main(void) {
    int ok = static_a_roundtrip(5) == 5 && static_b_roundtrip(6) == 6 &&
             strcmp(concur_version(), CONCUR_VERSION) == 0;
    printf("%s static_two_tus\n", ok ? "ok  " : "FAIL");
    return ok ? 0 : 1;
}
