/*
 * nn.c - (being written; see include/tapegrad/ops_*.h for its family).
 */
#include "ops_impl.h"
