/*
 * test_loss.c - the loss suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    return s;
}
