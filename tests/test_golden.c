/*
 * test_golden.c - the golden suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *golden_suite(void)
{
    Suite *s = suite_create("golden");
    return s;
}
