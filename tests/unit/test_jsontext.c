/*
 * Unit tests for jsontext: what it writes must parse (with jansson) back to
 * exactly what went in, for awkward strings, nested payloads and buffers
 * that grow many times.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"
#include "test_helpers.h"

/* The text as a JSON string literal, parsed back by jansson. */
static char *round_trip_string(const char *s)
{
    struct jsontext t;
    json_error_t e;
    json_t *v;
    char *text, *back;
    jsontext_init(&t);
    jsontext_string(&t, s);
    text = jsontext_take(&t);
    ck_assert_ptr_nonnull(text);
    v = json_loads(text, JSON_DECODE_ANY, &e);
    ck_assert_msg(v != NULL, "not JSON (%s): %s", e.text, text);
    ck_assert(json_is_string(v));
    back = strdup(json_string_value(v));
    json_decref(v);
    free(text);
    return back;
}

START_TEST(test_string_escapes)
{
    const char *cases[] = {
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\n\r\t\b\f",
        "\x01\x02\x1f\x7f end",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\\\"\\\"",
        "ends with backslash \\",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *back = round_trip_string(cases[i]);
        ck_assert_str_eq(back, cases[i]);
        free(back);
    }
}
END_TEST

START_TEST(test_control_characters_are_escaped)
{
    struct jsontext t;
    char *text;
    jsontext_init(&t);
    jsontext_string(&t, "a\x01" "b\nc\"");
    text = jsontext_take(&t);
    ck_assert_str_eq(text, "\"a\\u0001b\\nc\\\"\"");
    free(text);
}
END_TEST

START_TEST(test_members_and_commas)
{
    struct jsontext t;
    json_t *v, *payload = J("{\"sku\":\"X\",\"n\":[1,2,{\"k\":null}],\"s\":\"\\u00e9\\\"\"}");
    char *text;
    jsontext_init(&t);
    jsontext_raw(&t, "[{");
    jsontext_member(&t, "a", "1");
    jsontext_member(&t, "b\"", "two\\");
    jsontext_member_json(&t, "payload", payload);
    jsontext_raw(&t, "},{");
    jsontext_member_json(&t, "first", payload);
    jsontext_member(&t, "last", "");
    jsontext_raw(&t, "}]");
    text = jsontext_take(&t);
    v = J(text);
    ck_assert_int_eq((int)json_array_size(v), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(v, 0), "a")), "1");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(v, 0), "b\"")), "two\\");
    ck_assert(json_equal(json_object_get(json_array_get(v, 0), "payload"), payload));
    ck_assert(json_equal(json_object_get(json_array_get(v, 1), "first"), payload));
    ck_assert_int_eq((int)json_object_size(json_array_get(v, 1)), 2);
    json_decref(v);
    json_decref(payload);
    free(text);
}
END_TEST

START_TEST(test_printf_appends_formatted_text)
{
    struct jsontext t;
    char big[3000];
    char *out;
    jsontext_init(&t);
    jsontext_printf(&t, "(%s = $%d)", "c.tier", 1);
    jsontext_raw(&t, " AND ");
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    jsontext_printf(&t, "%s|%.2f", big, 19.99); /* past the first 256-byte buffer */
    out = jsontext_take(&t);
    ck_assert_int_eq(strlen(out), strlen("(c.tier = $1) AND ") + 2999 + strlen("|19.99"));
    ck_assert(strncmp(out, "(c.tier = $1) AND xxx", 21) == 0);
    ck_assert_str_eq(out + strlen(out) - 6, "|19.99");
    free(out);
}
END_TEST

START_TEST(test_grows_and_empties)
{
    struct jsontext t;
    json_t *v;
    char key[32], *text;
    jsontext_init(&t);
    text = jsontext_take(&t);
    ck_assert_str_eq(text, "");
    free(text);
    jsontext_raw(&t, "{");
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        jsontext_member(&t, key, "value with \"quotes\"");
    }
    jsontext_raw(&t, "}");
    text = jsontext_take(&t);
    ck_assert_ptr_null(t.buf);
    v = J(text);
    ck_assert_int_eq((int)json_object_size(v), 5000);
    ck_assert_str_eq(json_string_value(json_object_get(v, "k4999")), "value with \"quotes\"");
    json_decref(v);
    free(text);
    jsontext_raw(&t, "x");
    jsontext_free(&t);
    ck_assert_ptr_null(t.buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jsontext");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_string_escapes);
    tcase_add_test(tc, test_control_characters_are_escaped);
    tcase_add_test(tc, test_members_and_commas);
    tcase_add_test(tc, test_grows_and_empties);
    tcase_add_test(tc, test_printf_appends_formatted_text);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
