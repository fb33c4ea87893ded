/*
 * test_optim.c - the optim suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    return s;
}
