/*
 * data.c - (being written).
 */
#include "io_impl.h"
#include "tapegrad/data.h"
