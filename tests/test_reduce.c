/*
 * test_reduce.c - the reduce suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *reduce_suite(void)
{
    Suite *s = suite_create("reduce");
    return s;
}
