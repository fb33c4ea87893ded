/*
 * opgrad_index.c - the index family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_index(op_entry *table)
{
    (void)table;
}
