/*
 * test_layers.c - the layers suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    return s;
}
