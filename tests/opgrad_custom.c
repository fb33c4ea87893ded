/*
 * opgrad_custom.c - the custom family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_custom(op_entry *table)
{
    (void)table;
}
