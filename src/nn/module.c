/*
 * module.c - (being written).
 */
#include "../ops/ops_impl.h"
#include "tapegrad/nn.h"
