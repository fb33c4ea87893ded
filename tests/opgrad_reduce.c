/*
 * opgrad_reduce.c - the reduce family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_reduce(op_entry *table)
{
    (void)table;
}
