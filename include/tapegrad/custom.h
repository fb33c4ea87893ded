/*
 * tapegrad/custom.h - user-defined ops (implemented in src/autograd/custom.c).
 */
#ifndef TAPEGRAD_CUSTOM_H
#define TAPEGRAD_CUSTOM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TG_OPS_CUSTOM(X)

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_CUSTOM_H */
