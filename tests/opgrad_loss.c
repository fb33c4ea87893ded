/*
 * opgrad_loss.c - the loss family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_loss(op_entry *table)
{
    (void)table;
}
