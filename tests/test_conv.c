/*
 * test_conv.c - the conv suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    return s;
}
