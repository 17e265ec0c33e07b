/* The implementation compiled as C++: the test programs (plain C) link against it,
   which also proves the extern "C" declarations. */
#define CONCUR_IMPLEMENTATION
#include "../concur.h"
