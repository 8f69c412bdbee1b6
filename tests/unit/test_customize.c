/*
 * Unit tests for customize: language tags (accepted forms, canonical case,
 * rejected shapes), "HH:MM" times of day, time zone name shapes, the
 * consent and moment enums, and the validation of preferences merge
 * patches and consent requests with their JSON pointers.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "customize.h"
#include "test_helpers.h"

/* errors contains an entry at pointer. */
static bool has_pointer(json_t *errors, const char *pointer)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "pointer")), pointer) == 0)
            return true;
    }
    return false;
}

START_TEST(test_language_valid)
{
    static const char *const cases[][2] = {
        {"fr", "fr"},           {"FR", "fr"},
        {"fr-ca", "fr-CA"},     {"fr-CA", "fr-CA"},
        {"zh-hant-tw", "zh-Hant-TW"}, {"ZH-HANT", "zh-Hant"},
        {"es-419", "es-419"},   {"gsw", "gsw"},
        {"de-CH-1996", "de-CH-1996"}, {"sl-rozaj", "sl-rozaj"},
        {"en-GB-oxendict", "en-GB-oxendict"},
    };
    char out[LANGUAGE_TAG_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(language_tag_normalize(cases[i][0], out, sizeof(out)), "%s", cases[i][0]);
        ck_assert_str_eq(out, cases[i][1]);
    }
}
END_TEST

START_TEST(test_language_invalid)
{
    static const char *const cases[] = {
        "", "f", "fran", "fr-", "-fr", "fr--CA", "fr_CA", "fr-C", "fr-CAN1", "fr-CA-CA",
        "fr-Latn-Latn", "12", "fr-12", "en-GB-abc", "fr CA", "fr-ÇA",
        "en-aaaaaaaaa", "en-US-aaaaa-bbbbb-ccccc-ddddd-eeeee-fffff",
    };
    char out[LANGUAGE_TAG_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(!language_tag_normalize(cases[i], out, sizeof(out)), "%s", cases[i]);
    ck_assert(!language_tag_normalize(NULL, out, sizeof(out)));
    ck_assert(!language_tag_normalize("fr-CA", out, 5)); /* no room */
}
END_TEST

START_TEST(test_time_of_day)
{
    int m = -1;
    ck_assert(time_of_day_parse("00:00", &m));
    ck_assert_int_eq(m, 0);
    ck_assert(time_of_day_parse("23:59", &m));
    ck_assert_int_eq(m, 23 * 60 + 59);
    ck_assert(time_of_day_parse("08:30", &m));
    ck_assert_int_eq(m, 510);
    ck_assert(time_of_day_parse("22:00", NULL));
    static const char *const bad[] = {"24:00", "23:60", "8:30", "08:3", "08-30", "0830",
                                      "08:30:00", " 8:30", "aa:bb", "", "+8:30"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!time_of_day_parse(bad[i], &m), "%s", bad[i]);
    ck_assert(!time_of_day_parse(NULL, &m));
}
END_TEST

START_TEST(test_time_zone_shape)
{
    static const char *const good[] = {"Europe/Paris", "America/Port-au-Prince", "Etc/GMT+5",
                                       "UTC", "America/Argentina/Buenos_Aires"};
    static const char *const bad[] = {"", "/Europe", "Europe/", "Europe//Paris", "Europe/Paris ",
                                      "../etc/passwd", "Europe/Pa'ris",
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(time_zone_name_plausible(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!time_zone_name_plausible(bad[i]), "%s", bad[i]);
    ck_assert(!time_zone_name_plausible(NULL));
}
END_TEST

START_TEST(test_enums)
{
    ck_assert(consent_purpose_valid("marketing"));
    ck_assert(consent_purpose_valid("partner_sharing"));
    ck_assert(!consent_purpose_valid("Marketing"));
    ck_assert(!consent_purpose_valid(NULL));
    ck_assert(consent_channel_valid("any"));
    ck_assert(consent_channel_valid("email"));
    ck_assert(!consent_channel_valid("fax"));
    ck_assert(consent_status_valid("granted"));
    ck_assert(consent_status_valid("withdrawn"));
    ck_assert(!consent_status_valid("revoked"));
    ck_assert(moment_kind_valid("birthday"));
    ck_assert(moment_kind_valid("anniversary"));
    ck_assert(moment_kind_valid("warranty"));
    ck_assert(!moment_kind_valid("christmas"));
}
END_TEST

START_TEST(test_preferences_valid)
{
    json_t *body = J("{\"source\": \"ui\", \"preferences\": {"
                     "\"preferred_channels\": [\"sms\", \"email\"], \"language\": \"fr-ca\","
                     "\"frequency_cap\": {\"max_messages\": 3, \"period_days\": 7},"
                     "\"quiet_hours\": {\"start\": \"22:00\", \"end\": \"08:00\","
                     "                  \"time_zone\": \"Europe/Paris\"},"
                     "\"categories\": [\"shoes\"], \"delivery\": {\"slot\": \"evening\"},"
                     "\"custom\": {\"pet\": \"cat\", \"old\": null}}}");
    json_t *errors = json_array(), *patch = NULL;
    const char *source = NULL;
    ck_assert(validate_preferences_request(body, &patch, &source, errors));
    ck_assert_uint_eq(json_array_size(errors), 0);
    ck_assert_str_eq(source, "ui");
    ck_assert_str_eq(json_string_value(json_object_get(patch, "language")), "fr-CA");
    ck_assert(json_is_null(json_object_get(json_object_get(patch, "custom"), "old")));
    /* the body itself is untouched */
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(body, "preferences"),
                                                       "language")), "fr-ca");
    json_decref(patch);
    json_decref(errors);
    json_decref(body);
}
END_TEST

START_TEST(test_preferences_nulls_remove)
{
    json_t *body = J("{\"source\": \"ui\", \"preferences\": {\"preferred_channels\": null,"
                     "\"language\": null, \"frequency_cap\": null, \"quiet_hours\": null,"
                     "\"categories\": null, \"delivery\": null, \"custom\": null}}");
    json_t *errors = json_array(), *patch = NULL;
    const char *source;
    ck_assert(validate_preferences_request(body, &patch, &source, errors));
    ck_assert_uint_eq(json_object_size(patch), 7);
    json_decref(patch);
    json_decref(errors);
    json_decref(body);
}
END_TEST

START_TEST(test_preferences_errors)
{
    json_t *body = J("{\"extra\": 1, \"preferences\": {"
                     "\"preferred_channels\": [\"sms\", \"fax\", \"sms\"], \"language\": \"x\","
                     "\"frequency_cap\": {\"max_messages\": -1},"
                     "\"quiet_hours\": {\"start\": \"22:00\", \"end\": \"22:00\", \"tz\": 1},"
                     "\"categories\": [\"\"], \"delivery\": [], \"custom\": {\"\": 1},"
                     "\"colour\": \"red\"}}");
    json_t *errors = json_array(), *patch = (json_t *)1;
    const char *source;
    static const char *const pointers[] = {
        "/extra", "/source", "/preferences/preferred_channels/1",
        "/preferences/preferred_channels/2", "/preferences/language",
        "/preferences/frequency_cap/max_messages", "/preferences/frequency_cap/period_days",
        "/preferences/quiet_hours/end", "/preferences/quiet_hours/tz",
        "/preferences/quiet_hours/time_zone", "/preferences/categories/0",
        "/preferences/delivery", "/preferences/custom/", "/preferences/colour"};
    ck_assert(!validate_preferences_request(body, &patch, &source, errors));
    ck_assert_ptr_null(patch);
    for (size_t i = 0; i < sizeof(pointers) / sizeof(pointers[0]); i++)
        ck_assert_msg(has_pointer(errors, pointers[i]), "missing %s", pointers[i]);
    ck_assert_uint_eq(json_array_size(errors), sizeof(pointers) / sizeof(pointers[0]));
    json_decref(errors);
    json_decref(body);
}
END_TEST

START_TEST(test_preferences_partial_objects)
{
    /* quiet_hours and frequency_cap must be given whole */
    json_t *body = J("{\"source\": \"ui\", \"preferences\": {"
                     "\"quiet_hours\": {\"start\": \"23:00\"},"
                     "\"frequency_cap\": {\"period_days\": 7}}}");
    json_t *errors = json_array(), *patch;
    const char *source;
    ck_assert(!validate_preferences_request(body, &patch, &source, errors));
    ck_assert(has_pointer(errors, "/preferences/quiet_hours/end"));
    ck_assert(has_pointer(errors, "/preferences/quiet_hours/time_zone"));
    ck_assert(has_pointer(errors, "/preferences/frequency_cap/max_messages"));
    json_decref(errors);
    json_decref(body);

    body = J("{\"source\": \"ui\"}");
    errors = json_array();
    ck_assert(!validate_preferences_request(body, &patch, &source, errors));
    ck_assert(has_pointer(errors, "/preferences"));
    json_decref(errors);
    json_decref(body);
}
END_TEST

START_TEST(test_consent_request)
{
    json_t *body = J("{\"purpose\": \"marketing\", \"channel\": \"any\", \"status\": \"granted\","
                     "\"source\": \"web-form\", \"occurred_at\": \"2026-01-01T10:00:00Z\"}");
    json_t *errors = json_array();
    struct consent_request cr;
    ck_assert(validate_consent_request(body, &cr, errors));
    ck_assert_str_eq(cr.purpose, "marketing");
    ck_assert_str_eq(cr.channel, "any");
    ck_assert_str_eq(cr.status, "granted");
    ck_assert_str_eq(cr.source, "web-form");
    ck_assert_str_eq(cr.occurred_at, "2026-01-01T10:00:00Z");
    json_decref(body);

    body = J("{\"purpose\": \"spam\", \"channel\": \"fax\", \"status\": \"maybe\","
             "\"occurred_at\": \"yesterday\", \"note\": 1}");
    ck_assert(!validate_consent_request(body, &cr, errors));
    ck_assert(has_pointer(errors, "/purpose"));
    ck_assert(has_pointer(errors, "/channel"));
    ck_assert(has_pointer(errors, "/status"));
    ck_assert(has_pointer(errors, "/source"));
    ck_assert(has_pointer(errors, "/occurred_at"));
    ck_assert(has_pointer(errors, "/note"));
    ck_assert_uint_eq(json_array_size(errors), 6);
    json_decref(errors);
    json_decref(body);
}
END_TEST

START_TEST(test_moment_settings)
{
    json_t *ok = J("{\"kinds\": [{\"kind\": \"wedding_anniversary\", "
                   "\"trait\": \"attributes.wedding_date\", \"purpose\": \"marketing\", "
                   "\"lead_days\": 0}, {\"kind\": \"birthday\", \"trait\": \"birthday\", "
                   "\"purpose\": \"marketing\", \"lead_days\": 366}, {\"kind\": \"warranty\", "
                   "\"purpose\": \"service\", \"lead_days\": 30}]}");
    json_t *bad = J("{\"x\": 1, \"kinds\": [{\"kind\": \"Wedding\", \"trait\": \"wedding\", "
                    "\"purpose\": \"ads\", \"lead_days\": 367}, "
                    "{\"kind\": \"a\", \"trait\": \"attributes.a\", \"purpose\": \"service\", "
                    "\"lead_days\": 1, \"y\": 2}, "
                    "{\"kind\": \"a\", \"trait\": \"attributes.a\", \"purpose\": \"service\", "
                    "\"lead_days\": 1}, "
                    "{\"kind\": \"warranty\", \"trait\": \"attributes.w\", "
                    "\"purpose\": \"service\", \"lead_days\": \"1\"}, 7, "
                    "{\"kind\": \"b\", \"trait\": \"attributes.\", \"purpose\": \"service\", "
                    "\"lead_days\": 0}]}");
    static const char *const pointers[] = {
        "/x", "/kinds/0/kind", "/kinds/0/trait", "/kinds/0/purpose", "/kinds/0/lead_days",
        "/kinds/1/y", "/kinds/2/kind", "/kinds/2/trait", "/kinds/3/trait",
        "/kinds/3/lead_days", "/kinds/4", "/kinds/5/trait"};
    json_t *errors = json_array();
    ck_assert(validate_moment_settings(ok, errors));
    ck_assert_uint_eq(json_array_size(errors), 0);
    ck_assert(!validate_moment_settings(bad, errors));
    for (size_t i = 0; i < sizeof(pointers) / sizeof(pointers[0]); i++)
        ck_assert_msg(has_pointer(errors, pointers[i]), "missing %s", pointers[i]);
    ck_assert_uint_eq(json_array_size(errors), sizeof(pointers) / sizeof(pointers[0]));
    ck_assert(moment_kind_name_plausible("wedding_anniversary"));
    ck_assert(moment_kind_name_plausible("birthday"));
    ck_assert(!moment_kind_name_plausible("_x"));
    ck_assert(!moment_kind_name_plausible("x-y"));
    ck_assert(!moment_kind_name_plausible(""));
    json_decref(errors);
    json_decref(ok);
    json_decref(bad);
}
END_TEST

static Suite *customize_suite(void)
{
    Suite *s = suite_create("customize");
    TCase *tc = tcase_create("parsers");
    tcase_add_test(tc, test_language_valid);
    tcase_add_test(tc, test_language_invalid);
    tcase_add_test(tc, test_time_of_day);
    tcase_add_test(tc, test_time_zone_shape);
    tcase_add_test(tc, test_enums);
    suite_add_tcase(s, tc);
    tc = tcase_create("requests");
    tcase_add_test(tc, test_preferences_valid);
    tcase_add_test(tc, test_preferences_nulls_remove);
    tcase_add_test(tc, test_preferences_errors);
    tcase_add_test(tc, test_preferences_partial_objects);
    tcase_add_test(tc, test_consent_request);
    tcase_add_test(tc, test_moment_settings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(customize_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
