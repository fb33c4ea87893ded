/*
 * test_math.c - the math suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *math_suite(void)
{
    Suite *s = suite_create("math");
    return s;
}
