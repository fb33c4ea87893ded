/*
 * opgrad_conv.c - the conv family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_conv(op_entry *table)
{
    (void)table;
}
