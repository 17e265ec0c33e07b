/* The implementation translation unit for the C configurations. */
#define CONCUR_IMPLEMENTATION
#include "../concur.h"
