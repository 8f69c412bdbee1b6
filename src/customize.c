/*
 * customize: field rules of preferences and consents. A preferences patch
 * is checked field by field; nulls are accepted wherever a field may be
 * removed (RFC 7396), while quiet_hours and frequency_cap must be given
 * whole, so merging them equals replacing them and a stored value is always
 * complete. Errors carry JSON pointers into the request body.
 */
#include "customize.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "problem.h"
#include "textutil.h"
#include "validate.h"

static const char *const PURPOSES[] = {"marketing", "service", "profiling", "partner_sharing",
                                       NULL};
static const char *const STATUSES[] = {"granted", "withdrawn", NULL};
static const char *const MOMENT_KINDS[] = {"birthday", "anniversary", "warranty", NULL};
static const char *const PREF_FIELDS[] = {"preferred_channels", "language", "frequency_cap",
                                          "quiet_hours", "categories", "delivery", "custom",
                                          NULL};

bool consent_purpose_valid(const char *name)
{
    return name_in_list(PURPOSES, name);
}

bool consent_channel_valid(const char *name)
{
    return name != NULL && (strcmp(name, "any") == 0 || channel_valid(name));
}

bool consent_status_valid(const char *name)
{
    return name_in_list(STATUSES, name);
}

bool moment_kind_valid(const char *name)
{
    return name_in_list(MOMENT_KINDS, name);
}

const char *consent_purpose_list(void)
{
    static struct name_list names = {.names = PURPOSES};
    return name_list_text(&names);
}

const char *moment_kind_list(void)
{
    static struct name_list names = {.names = MOMENT_KINDS};
    return name_list_text(&names);
}

const char *consent_status_list(void)
{
    static struct name_list names = {.names = STATUSES};
    return name_list_text(&names);
}

/* ---- small parsers ---------------------------------------------------------- */

static bool all_of(const char *s, size_t n, int (*pred)(int))
{
    for (size_t i = 0; i < n; i++)
        if (!pred((unsigned char)s[i]))
            return false;
    return true;
}

/* Subtag kinds by position: 1 language seen, 2 script seen, 3 region seen, 4 variants. */
static bool subtag_copy(const char *s, size_t n, int *stage, char *out)
{
    if (*stage == 0) {
        if (n < 2 || n > 3 || !all_of(s, n, isalpha))
            return false;
        for (size_t i = 0; i < n; i++)
            out[i] = (char)tolower((unsigned char)s[i]);
        *stage = 1;
    } else if (*stage == 1 && n == 4 && all_of(s, n, isalpha)) {
        for (size_t i = 0; i < n; i++)
            out[i] = (char)(i == 0 ? toupper((unsigned char)s[i]) : tolower((unsigned char)s[i]));
        *stage = 2;
    } else if (*stage <= 2 && ((n == 2 && all_of(s, n, isalpha)) ||
                               (n == 3 && all_of(s, n, isdigit)))) {
        for (size_t i = 0; i < n; i++)
            out[i] = (char)toupper((unsigned char)s[i]);
        *stage = 3;
    } else if (((n >= 5 && n <= 8) || (n == 4 && isdigit((unsigned char)s[0]))) &&
               all_of(s, n, isalnum)) {
        for (size_t i = 0; i < n; i++)
            out[i] = (char)tolower((unsigned char)s[i]);
        *stage = 4;
    } else {
        return false;
    }
    return true;
}

bool language_tag_normalize(const char *in, char *out, size_t cap)
{
    size_t len = in != NULL ? strlen(in) : 0, pos = 0;
    int stage = 0;
    const char *s = in;
    if (len == 0 || len > LANGUAGE_TAG_MAX || cap < len + 1)
        return false;
    for (;;) {
        const char *end = strchr(s, '-');
        size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
        if (n == 0 || !subtag_copy(s, n, &stage, out + pos))
            return false;
        pos += n;
        if (end == NULL)
            break;
        out[pos++] = '-';
        s = end + 1;
    }
    out[pos] = '\0';
    return true;
}

bool time_of_day_parse(const char *text, int *minutes)
{
    int h, m;
    if (text == NULL || strlen(text) != 5 || text[2] != ':' || !isdigit((unsigned char)text[0]) ||
        !isdigit((unsigned char)text[1]) || !isdigit((unsigned char)text[3]) ||
        !isdigit((unsigned char)text[4]))
        return false;
    h = (text[0] - '0') * 10 + (text[1] - '0');
    m = (text[3] - '0') * 10 + (text[4] - '0');
    if (h > 23 || m > 59)
        return false;
    if (minutes != NULL)
        *minutes = h * 60 + m;
    return true;
}

bool time_zone_name_plausible(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > TIME_ZONE_MAX || name[0] == '/' || name[len - 1] == '/' ||
        strstr(name, "//") != NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '/' && c != '_' && c != '+' && c != '-')
            return false;
    }
    return true;
}

/* ---- preferences -------------------------------------------------------------- */

/* A string of 1..max characters without NUL. */
static bool text_ok(json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) > 0 &&
           strlen(json_string_value(v)) == json_string_length(v) &&
           utf8_length(json_string_value(v)) <= max;
}

static void check_channels(json_t *v, json_t *errors)
{
    static const char P[] = "/preferences/preferred_channels";
    size_t i, j;
    json_t *item;
    if (!json_is_array(v) || json_array_size(v) > 16) {
        verr_add(errors, "/preferences", "preferred_channels",
                 "'preferred_channels' must be an array of channel names, best first");
        return;
    }
    json_array_foreach(v, i, item) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        if (!json_is_string(item) || !channel_valid(json_string_value(item))) {
            verr_add(errors, P, idx, "unknown channel (one of: %s)", channel_list());
            continue;
        }
        for (j = 0; j < i; j++)
            if (json_equal(item, json_array_get(v, j)))
                verr_add(errors, P, idx, "channel '%s' is listed twice", json_string_value(item));
    }
}

static void check_language(json_t *v, json_t *copy, json_t *errors)
{
    char tag[LANGUAGE_TAG_MAX + 1];
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !language_tag_normalize(json_string_value(v), tag, sizeof(tag))) {
        verr_add(errors, "/preferences", "language",
                 "'language' must be a language tag such as 'fr' or 'fr-CA'");
        return;
    }
    json_object_set_new(copy, "language", json_string(tag));
}

static void check_int(json_t *obj, const char *key, long min, long max, const char *prefix,
                      json_t *errors)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        verr_add(errors, prefix, key, "'%s' is required: an integer from %ld to %ld", key, min,
                 max);
}

static void check_frequency_cap(json_t *v, json_t *errors)
{
    static const char *const keys[] = {"max_messages", "period_days", NULL};
    static const char P[] = "/preferences/frequency_cap";
    if (!json_is_object(v)) {
        verr_add(errors, "/preferences", "frequency_cap",
                 "'frequency_cap' must be an object {max_messages, period_days}");
        return;
    }
    reject_unknown_fields(v, keys, P, errors);
    check_int(v, "max_messages", 0, FREQUENCY_MAX_MESSAGES, P, errors);
    check_int(v, "period_days", 1, FREQUENCY_MAX_DAYS, P, errors);
}

static void check_quiet_hours(json_t *v, json_t *errors)
{
    static const char *const keys[] = {"start", "end", "time_zone", NULL};
    static const char P[] = "/preferences/quiet_hours";
    int start = -1, end = -1;
    json_t *tz;
    if (!json_is_object(v)) {
        verr_add(errors, "/preferences", "quiet_hours",
                 "'quiet_hours' must be an object {start, end, time_zone}");
        return;
    }
    reject_unknown_fields(v, keys, P, errors);
    if (!time_of_day_parse(json_string_value(json_object_get(v, "start")), &start))
        verr_add(errors, P, "start", "'start' is required: a time of day \"HH:MM\"");
    if (!time_of_day_parse(json_string_value(json_object_get(v, "end")), &end))
        verr_add(errors, P, "end", "'end' is required: a time of day \"HH:MM\"");
    if (start >= 0 && start == end)
        verr_add(errors, P, "end", "'end' must differ from 'start'");
    tz = json_object_get(v, "time_zone");
    if (!json_is_string(tz) || strlen(json_string_value(tz)) != json_string_length(tz) ||
        !time_zone_name_plausible(json_string_value(tz)))
        verr_add(errors, P, "time_zone",
                 "'time_zone' is required: an IANA time zone name such as Europe/Paris");
}

static void check_categories(json_t *v, json_t *errors)
{
    size_t i;
    json_t *item;
    if (!json_is_array(v) || json_array_size(v) > PREF_CATEGORIES_MAX) {
        verr_add(errors, "/preferences", "categories",
                 "'categories' must be an array of at most %d strings", PREF_CATEGORIES_MAX);
        return;
    }
    json_array_foreach(v, i, item) {
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        if (!text_ok(item, PREF_CATEGORY_LEN))
            verr_add(errors, "/preferences/categories", idx,
                     "a category is a string of 1 to %d characters", PREF_CATEGORY_LEN);
    }
}

/* delivery and custom: objects with keys of 1..PREF_KEY_LEN characters. */
static void check_object(json_t *v, const char *name, json_t *errors)
{
    char prefix[64];
    const char *key;
    json_t *item;
    if (!json_is_object(v)) {
        verr_add(errors, "/preferences", name, "'%s' must be an object", name);
        return;
    }
    snprintf(prefix, sizeof(prefix), "/preferences/%s", name);
    json_object_foreach(v, key, item) {
        if (key[0] == '\0' || utf8_length(key) > PREF_KEY_LEN)
            verr_add(errors, prefix, key, "keys must be 1 to %d characters", PREF_KEY_LEN);
    }
}

static void check_preference(const char *key, json_t *v, json_t *copy, json_t *errors)
{
    if (json_is_null(v))
        return; /* removes the field */
    if (strcmp(key, "preferred_channels") == 0)
        check_channels(v, errors);
    else if (strcmp(key, "language") == 0)
        check_language(v, copy, errors);
    else if (strcmp(key, "frequency_cap") == 0)
        check_frequency_cap(v, errors);
    else if (strcmp(key, "quiet_hours") == 0)
        check_quiet_hours(v, errors);
    else if (strcmp(key, "categories") == 0)
        check_categories(v, errors);
    else
        check_object(v, key, errors); /* delivery, custom */
}

bool validate_preferences_request(json_t *body, json_t **patch, const char **source,
                                  json_t *errors)
{
    static const char *const allowed[] = {"source", "preferences", NULL};
    json_t *prefs = json_object_get(body, "preferences"), *copy, *v;
    json_t *src = json_object_get(body, "source");
    size_t before = json_array_size(errors);
    const char *key;

    *patch = NULL;
    *source = NULL;
    reject_unknown_fields(body, allowed, "", errors);
    if (!text_ok(src, SOURCE_MAX))
        verr_add(errors, "", "source", "'source' is required: a string of 1 to %d characters",
                 SOURCE_MAX);
    if (!json_is_object(prefs)) {
        verr_add(errors, "", "preferences",
                 "'preferences' is required: an object (a JSON merge patch)");
        return false;
    }
    copy = json_deep_copy(prefs);
    json_object_foreach(prefs, key, v) {
        if (!name_in_list(PREF_FIELDS, key))
            verr_add(errors, "/preferences", key, "unknown field '%s'", key);
        else
            check_preference(key, v, copy, errors);
    }
    if (json_array_size(errors) > before) {
        json_decref(copy);
        return false;
    }
    *patch = copy;
    *source = json_string_value(src);
    return true;
}

/* ---- consents ------------------------------------------------------------------ */

static const char *enum_field(json_t *body, const char *key, bool (*valid)(const char *),
                              const char *choices, json_t *errors)
{
    const char *v = json_string_value(json_object_get(body, key));
    if (v == NULL || !valid(v)) {
        verr_add(errors, "", key, "'%s' is required, one of: %s", key, choices);
        return NULL;
    }
    return v;
}

bool validate_consent_request(json_t *body, struct consent_request *out, json_t *errors)
{
    static const char *const allowed[] = {"purpose", "channel", "status", "source",
                                          "occurred_at", NULL};
    char channels[160];
    json_t *src = json_object_get(body, "source"), *at = json_object_get(body, "occurred_at");
    size_t before = json_array_size(errors);

    memset(out, 0, sizeof(*out));
    snprintf(channels, sizeof(channels), "%s, any", channel_list());
    reject_unknown_fields(body, allowed, "", errors);
    out->purpose = enum_field(body, "purpose", consent_purpose_valid, consent_purpose_list(),
                              errors);
    out->channel = enum_field(body, "channel", consent_channel_valid, channels, errors);
    out->status = enum_field(body, "status", consent_status_valid, "granted, withdrawn", errors);
    if (!text_ok(src, SOURCE_MAX))
        verr_add(errors, "", "source", "'source' is required: a string of 1 to %d characters",
                 SOURCE_MAX);
    else
        out->source = json_string_value(src);
    if (at != NULL) {
        if (!json_is_string(at) || !rfc3339_valid(json_string_value(at)))
            verr_add(errors, "", "occurred_at",
                     "'occurred_at' must be an RFC 3339 timestamp with offset");
        else
            out->occurred_at = json_string_value(at);
    }
    return json_array_size(errors) == before;
}

/* ---- moment settings -------------------------------------------------------- */

/* A declared kind's name: a lower-case letter, then up to 63 of a-z 0-9 _. */
bool moment_kind_name_plausible(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > MOMENT_KIND_MAX || !islower((unsigned char)name[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!islower((unsigned char)name[i]) && !isdigit((unsigned char)name[i]) &&
            name[i] != '_')
            return false;
    return true;
}

/* "attributes.<key>", key 1..64 of A-Z a-z 0-9 _ - (the CHECK of
 * crm.moment_kinds.trait, sql/023_moments_fx.sql). */
static bool moment_trait_plausible(const char *trait)
{
    static const char prefix[] = "attributes.";
    size_t n;
    if (trait == NULL || strncmp(trait, prefix, sizeof(prefix) - 1) != 0)
        return false;
    trait += sizeof(prefix) - 1;
    n = strlen(trait);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)trait[i]) && trait[i] != '_' && trait[i] != '-')
            return false;
    return true;
}

bool validate_moment_settings(json_t *body, json_t *errors)
{
    static const char *const allowed[] = {"kinds", NULL};
    static const char *const item_allowed[] = {"kind", "trait", "purpose", "lead_days", NULL};
    json_t *kinds = json_object_get(body, "kinds"), *item;
    size_t before = json_array_size(errors), i;
    char ptr[64];

    reject_unknown_fields(body, allowed, "", errors);
    if (!json_is_array(kinds) || json_array_size(kinds) > MOMENT_KINDS_DECLARED_MAX) {
        verr_add(errors, "", "kinds", "'kinds' is required: an array of at most %d kinds",
                 MOMENT_KINDS_DECLARED_MAX);
        return false;
    }
    json_array_foreach(kinds, i, item) {
        json_t *kind = json_object_get(item, "kind"), *trait = json_object_get(item, "trait");
        json_t *purpose = json_object_get(item, "purpose"), *lead = json_object_get(item, "lead_days");
        const char *k = json_string_value(kind);
        bool builtin = k != NULL && moment_kind_valid(k);
        snprintf(ptr, sizeof(ptr), "/kinds/%zu", i);
        if (!json_is_object(item)) {
            verr_add(errors, ptr, NULL, "each kind must be an object");
            continue;
        }
        reject_unknown_fields(item, item_allowed, ptr, errors);
        if (!builtin && !moment_kind_name_plausible(k))
            verr_add(errors, ptr, "kind", "'kind' must be a name of 1 to %d characters: a "
                     "lower-case letter, then a-z, 0-9 or _", MOMENT_KIND_MAX);
        for (size_t j = 0; k != NULL && j < i; j++)
            if (json_equal(kind, json_object_get(json_array_get(kinds, j), "kind")))
                verr_add(errors, ptr, "kind", "kind '%s' is listed twice", k);
        /* a built-in kind's trait is fixed: none, or the one GET shows (birthday) */
        if (builtin && trait != NULL &&
            !(strcmp(k, "birthday") == 0 && json_is_string(trait) &&
              strcmp(json_string_value(trait), "birthday") == 0))
            verr_add(errors, ptr, "trait", "the built-in kind '%s' reads a fixed source: no "
                     "'trait'%s", k, strcmp(k, "birthday") == 0 ? " but 'birthday'" : "");
        if (!builtin && !moment_trait_plausible(json_string_value(trait)))
            verr_add(errors, ptr, "trait", "'trait' is required: 'attributes.<key>', the key "
                     "1 to 64 of A-Z a-z 0-9 _ -");
        for (size_t j = 0; trait != NULL && j < i; j++)
            if (json_equal(trait, json_object_get(json_array_get(kinds, j), "trait")))
                verr_add(errors, ptr, "trait", "trait '%s' feeds another kind already",
                         json_string_value(trait));
        if (!json_is_string(purpose) || !consent_purpose_valid(json_string_value(purpose)))
            verr_add(errors, ptr, "purpose", "'purpose' is required, one of: %s",
                     consent_purpose_list());
        if (!json_is_integer(lead) || json_integer_value(lead) < 0 ||
            json_integer_value(lead) > 366)
            verr_add(errors, ptr, "lead_days", "'lead_days' is required: an integer 0 to 366");
    }
    return json_array_size(errors) == before;
}
