/*
 * Unit tests for cases.c: the status transition table (and the array of
 * statuses the database is sent for each target), the part an interaction
 * plays in a case, and the bodies of POST /v1/customers/{id}/cases and
 * PATCH /v1/cases/{id}.
 */
#include <check.h>
#include <string.h>

#include "cases.h"
#include "test_helpers.h"

START_TEST(test_transitions)
{
    /* forward: open -> in_progress -> resolved | closed; open may finish at once */
    ck_assert(case_transition_allowed("open", "in_progress"));
    ck_assert(case_transition_allowed("open", "resolved"));
    ck_assert(case_transition_allowed("open", "closed"));
    ck_assert(case_transition_allowed("in_progress", "resolved"));
    ck_assert(case_transition_allowed("in_progress", "closed"));
    ck_assert(case_transition_allowed("resolved", "closed"));
    /* reopen */
    ck_assert(case_transition_allowed("resolved", "open"));
    ck_assert(case_transition_allowed("closed", "open"));
    /* illegal */
    ck_assert(!case_transition_allowed("in_progress", "open"));
    ck_assert(!case_transition_allowed("closed", "resolved"));
    ck_assert(!case_transition_allowed("closed", "in_progress"));
    ck_assert(!case_transition_allowed("resolved", "in_progress"));
    /* no change is always allowed; unknown statuses never */
    for (int i = 0; case_status_name(i) != NULL; i++)
        ck_assert(case_transition_allowed(case_status_name(i), case_status_name(i)));
    ck_assert(!case_transition_allowed("open", "pending"));
    ck_assert(!case_transition_allowed(NULL, "open"));
}
END_TEST

START_TEST(test_allowed_from)
{
    char out[64];
    ck_assert(case_allowed_from("open", out, sizeof(out)));
    ck_assert_str_eq(out, "{open,resolved,closed}");
    ck_assert(case_allowed_from("in_progress", out, sizeof(out)));
    ck_assert_str_eq(out, "{open,in_progress}");
    ck_assert(case_allowed_from("resolved", out, sizeof(out)));
    ck_assert_str_eq(out, "{open,in_progress,resolved}");
    ck_assert(case_allowed_from("closed", out, sizeof(out)));
    ck_assert_str_eq(out, "{open,in_progress,resolved,closed}");
    ck_assert(!case_allowed_from("reopened", out, sizeof(out)));
    ck_assert(!case_allowed_from("closed", out, 10)); /* too small: refused, not cut */
    /* the array agrees with the table for every pair */
    for (int t = 0; case_status_name(t) != NULL; t++) {
        char list[80], word[40];
        ck_assert(case_allowed_from(case_status_name(t), out, sizeof(out)));
        snprintf(list, sizeof(list), ",%.*s,", (int)strlen(out) - 2, out + 1);
        for (int f = 0; case_status_name(f) != NULL; f++) {
            snprintf(word, sizeof(word), ",%s,", case_status_name(f));
            ck_assert_msg((strstr(list, word) != NULL) ==
                              case_transition_allowed(case_status_name(f), case_status_name(t)),
                          "%s -> %s", case_status_name(f), case_status_name(t));
        }
    }
}
END_TEST

START_TEST(test_roles)
{
    ck_assert_int_eq(case_role_of("complaint", false), CASE_ROLE_OPEN);
    ck_assert_int_eq(case_role_of("complaint", true), CASE_ROLE_COMPLAINT);
    ck_assert_int_eq(case_role_of("outbound_message", true), CASE_ROLE_RESPONSE);
    ck_assert_int_eq(case_role_of("support_call", true), CASE_ROLE_RESPONSE);
    ck_assert_int_eq(case_role_of("purchase", true), CASE_ROLE_FOLLOW);
    ck_assert_int_eq(case_role_of("support_call", false), CASE_ROLE_NONE);
    ck_assert_int_eq(case_role_of("purchase", false), CASE_ROLE_NONE);
    ck_assert_ptr_null(case_role_name(CASE_ROLE_NONE));
    ck_assert_str_eq(case_role_name(CASE_ROLE_OPEN), "open");
    ck_assert_str_eq(case_role_name(CASE_ROLE_RESPONSE), "response");
    ck_assert_str_eq(case_opening_type_list(), "complaint");
    ck_assert_str_eq(case_response_type_list(), "outbound_message, support_call");
    ck_assert_str_eq(case_status_list(), "open, in_progress, resolved, closed");
    ck_assert_str_eq(case_priority_list(), "low, normal, high, urgent");
}
END_TEST

START_TEST(test_create_body)
{
    struct case_create cc;
    json_t *errors = json_array();
    json_t *b = J("{\"source\": \"crm-ui\", \"channel\": \"phone\", \"subject\": \"broken lid\","
                  "\"priority\": \"high\", \"purchase_id\": \"0E9B2D4C-1111-4222-8333-944455556666\"}");
    ck_assert_msg(validate_case_create(b, &cc, errors), "%s", pointers(errors));
    ck_assert_str_eq(cc.channel, "phone");
    ck_assert_str_eq(cc.priority, "high");
    ck_assert_str_eq(cc.purchase_id, "0e9b2d4c-1111-4222-8333-944455556666");
    ck_assert_ptr_null(cc.assignee);
    json_decref(b);

    b = J("{\"channel\": \"fax\", \"priority\": \"asap\", \"subject\": \"\", \"purchase_id\": 3,"
          "\"opened_at\": \"yesterday\", \"status\": \"open\"}");
    ck_assert(!validate_case_create(b, &cc, errors));
    ck_assert_str_eq(pointers(errors),
                     "/status | /source | /channel | /subject | /priority | /purchase_id | /opened_at");
    json_decref(b);
    json_decref(errors);
}
END_TEST

START_TEST(test_patch_body)
{
    json_t *errors = json_array(), *patch;
    const char *status;
    json_t *b = J("{\"status\": \"resolved\", \"assignee\": null}");
    ck_assert_msg(validate_case_patch(b, &patch, &status, errors), "%s", pointers(errors));
    ck_assert_str_eq(status, "resolved");
    ck_assert(json_is_null(json_object_get(patch, "assignee")));
    ck_assert_int_eq(json_object_size(patch), 2);
    json_decref(patch);
    json_decref(b);

    b = J("{\"priority\": \"low\"}");
    ck_assert(validate_case_patch(b, &patch, &status, errors));
    ck_assert_ptr_null(status);
    json_decref(patch);
    json_decref(b);

    b = J("{}");
    ck_assert(!validate_case_patch(b, &patch, &status, errors));
    ck_assert_ptr_null(patch);
    json_decref(b);
    json_array_clear(errors);

    b = J("{\"status\": null, \"priority\": \"soon\", \"subject\": 7, \"owner\": \"x\"}");
    ck_assert(!validate_case_patch(b, &patch, &status, errors));
    ck_assert_str_eq(pointers(errors), "/owner | /status | /priority | /subject");
    json_decref(b);
    json_decref(errors);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cases");
    TCase *tc = tcase_create("cases");
    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_allowed_from);
    tcase_add_test(tc, test_roles);
    tcase_add_test(tc, test_create_body);
    tcase_add_test(tc, test_patch_body);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
