/*
 * test_data.c - the data suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    return s;
}
