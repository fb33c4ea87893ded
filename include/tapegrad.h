/*
 * tapegrad.h - the umbrella header. Users include only this.
 *
 * tapegrad is a reverse-mode automatic differentiation tensor engine in
 * C11. Ops on tensors run eagerly and are recorded on the tape of the
 * context they allocate in; tg_backward() replays the chain rule in
 * reverse and accumulates gradients into every leaf that requires them.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include "tapegrad/core.h"
#include "tapegrad/tensor.h"
#include "tapegrad/autograd.h"
#include "tapegrad/ops.h"
#include "tapegrad/optim.h"
#include "tapegrad/io.h"
#include "tapegrad/nn.h"
#include "tapegrad/data.h"
#include "tapegrad/dist.h"

#endif /* TAPEGRAD_H */
