/*
 * optim.c - (being written).
 */
#include "../tensor/tensor_impl.h"
#include "tapegrad/optim.h"
