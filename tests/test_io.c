/*
 * test_io.c - the io suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    return s;
}
