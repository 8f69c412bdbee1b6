/*
 * test_helpers: fixtures shared by the Check suites that feed JSON to the
 * pure modules (validate, segment, customize).
 */
#ifndef CRM_TEST_HELPERS_H
#define CRM_TEST_HELPERS_H

#include <check.h>
#include <jansson.h>
#include <stdio.h>

/* Parse test JSON (any value, duplicate keys refused); the test fails on a typo. */
static inline json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    ck_assert_msg(v != NULL, "bad test JSON (%s): %s", e.text, text);
    return v;
}

/* "ptr1 | ptr2 | ..." of a validation errors array, for failure messages;
 * static buffer. */
static inline const char *pointers(json_t *errors)
{
    static char buf[4096];
    size_t i, n = 0;
    json_t *e;
    buf[0] = '\0';
    json_array_foreach(errors, i, e) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " | " : "",
                              json_string_value(json_object_get(e, "pointer")));
        if (n >= sizeof(buf))
            break;
    }
    return buf;
}

/* Run a suite's tests; the process's exit status. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

#endif
