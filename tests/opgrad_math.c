/*
 * opgrad_math.c - the math family's entries of the table-driven gradient
 * check (see tests/opgrad.h).
 */
#include "opgrad.h"

void opgrad_fill_math(op_entry *table)
{
    (void)table;
}
