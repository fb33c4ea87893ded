/*
 * tapegrad/nn.h - (being written).
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_NN_H */
