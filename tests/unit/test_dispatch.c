/*
 * Unit test for dispatch: every route of the route table has a handler, so
 * a route added to router.c without one fails here, not on a live request.
 */
#include <check.h>

#include "handlers.h"

START_TEST(test_every_route_has_a_handler)
{
    enum route r = dispatch_first_unhandled();
    ck_assert_msg(r == ROUTE_COUNT, "route %s (%d) has no handler in api/dispatch.c",
                  route_name(r), (int)r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("handlers");
    SRunner *sr;
    int failed;
    tcase_add_test(tc, test_every_route_has_a_handler);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
