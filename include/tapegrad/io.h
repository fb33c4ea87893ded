/*
 * tapegrad/io.h - (being written).
 */
#ifndef TAPEGRAD_IO_H
#define TAPEGRAD_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_IO_H */
