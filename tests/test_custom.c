/*
 * test_custom.c - the custom suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *custom_suite(void)
{
    Suite *s = suite_create("custom");
    return s;
}
