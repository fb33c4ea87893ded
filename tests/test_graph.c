/*
 * test_graph.c - the graph suite (being written).
 */
#include <check.h>

#include "tapegrad.h"
#include "test_util.h"

Suite *graph_suite(void)
{
    Suite *s = suite_create("graph");
    return s;
}
