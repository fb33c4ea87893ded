/*
 * opgrad_nn.c - the nn family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_nn(op_entry *table)
{
    (void)table;
}
