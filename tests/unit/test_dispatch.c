/*
 * Unit tests for the server's tables: every route of the route table has a
 * handler (a route added to router.c without one fails here, not on a live
 * request), and every statement of the store catalogue has a unique name
 * and its SQL.
 */
#include <check.h>
#include <string.h>

#include "handlers.h"
#include "store.h"
#include "test_helpers.h"

START_TEST(test_every_route_has_a_handler)
{
    enum route r = dispatch_first_unhandled();
    ck_assert_msg(r == ROUTE_COUNT, "route %s (%d) has no handler in api/dispatch.c",
                  route_name(r), (int)r);
}
END_TEST

START_TEST(test_every_statement_has_a_unique_name_and_sql)
{
    ck_assert_int_eq(store_statement_count, STMT_COUNT);
    for (int i = 0; i < STMT_COUNT; i++) {
        ck_assert_msg(store_statements[i].name != NULL && store_statements[i].sql != NULL,
                      "statement %d has no row in store.c", i);
        for (int j = 0; j < i; j++)
            ck_assert_msg(strcmp(store_statements[i].name, store_statements[j].name) != 0,
                          "statement name '%s' used twice", store_statements[i].name);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("handlers");
    tcase_add_test(tc, test_every_route_has_a_handler);
    tcase_add_test(tc, test_every_statement_has_a_unique_name_and_sql);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
