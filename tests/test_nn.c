/*
 * test_nn.c - the nn suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    return s;
}
