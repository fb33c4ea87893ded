/*
 * test_index.c - the index suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    return s;
}
