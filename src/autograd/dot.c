/*
 * dot.c - (being written).
 */
#include "../ops/ops_impl.h"
