/*
 * survivorship: the rule names and the validation of the survivorship
 * settings (PUT /v1/settings/survivorship). The database applies the rules
 * (sql/functions/survivorship.sql); here is only what a request may say:
 * which rules exist, which trait names may carry one, and the shape of a
 * source priority list. The rule names are written once, in RULES.
 */
#include "survivorship.h"

#include <stdio.h>
#include <string.h>

#include "problem.h"
#include "textutil.h"
#include "validate.h"

static const char *const RULES[] = {"most_recent", "source_priority", "most_frequent",
                                    "first_seen", NULL};

static const char *const TRAITS[] = {"first_name", "last_name", "birthday", "gender", "address",
                                     NULL};

bool survivorship_rule_valid(const char *name)
{
    return name_in_list(RULES, name);
}

const char *survivorship_rule_list(void)
{
    static struct name_list names = {.names = RULES};
    return name_list_text(&names);
}

bool survivorship_trait_valid(const char *name)
{
    size_t key_len;
    if (name_in_list(TRAITS, name))
        return true;
    if (strncmp(name, "attributes.", 11) != 0)
        return false;
    key_len = utf8_length(name + 11);
    return key_len >= 1 && key_len <= 64;
}

/* One rule object at prefix/key. */
static bool validate_rule(json_t *rule, const char *prefix, const char *key, json_t *errors)
{
    static const char *const allowed[] = {"rule", "sources", NULL};
    char ptr[256];
    json_t *name, *sources, *s;
    size_t i, j;
    bool ok;
    if (!json_is_object(rule)) {
        verr_add(errors, prefix, key, "a rule must be an object {\"rule\": ..., \"sources\": [...]}");
        return false;
    }
    snprintf(ptr, sizeof(ptr), "%s/%s", prefix, key);
    ok = reject_unknown_fields(rule, allowed, ptr, errors);
    name = json_object_get(rule, "rule");
    sources = json_object_get(rule, "sources");
    if (!json_is_string(name) || !survivorship_rule_valid(json_string_value(name))) {
        verr_add(errors, ptr, "rule", "'rule' must be one of: %s", survivorship_rule_list());
        return false;
    }
    if (strcmp(json_string_value(name), "source_priority") != 0) {
        if (sources != NULL) {
            verr_add(errors, ptr, "sources", "'sources' belongs to the source_priority rule only");
            ok = false;
        }
        return ok;
    }
    if (!json_is_array(sources) || json_array_size(sources) == 0 ||
        json_array_size(sources) > SURVIVORSHIP_SOURCES_MAX) {
        verr_add(errors, ptr, "sources",
                 "source_priority needs 'sources': an array of 1 to %d source names, the first "
                 "preferred", SURVIVORSHIP_SOURCES_MAX);
        return false;
    }
    json_array_foreach(sources, i, s) {
        char sptr[280], idx[24];
        snprintf(sptr, sizeof(sptr), "%s/sources", ptr);
        snprintf(idx, sizeof(idx), "%zu", i);
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            utf8_length(json_string_value(s)) > SOURCE_MAX) {
            verr_add(errors, sptr, idx, "a source must be a string of 1 to %d characters",
                     SOURCE_MAX);
            ok = false;
            continue;
        }
        for (j = 0; j < i; j++)
            if (json_equal(json_array_get(sources, j), s)) {
                verr_add(errors, sptr, idx, "source '%s' is listed twice", json_string_value(s));
                ok = false;
                break;
            }
    }
    return ok;
}

bool validate_survivorship(json_t *body, json_t *errors)
{
    static const char *const allowed[] = {"default", "traits", NULL};
    json_t *def, *traits, *rule;
    const char *name;
    bool ok;
    if (!json_is_object(body)) {
        verr_add(errors, "", NULL, "the body must be an object {\"default\": ..., \"traits\": ...}");
        return false;
    }
    ok = reject_unknown_fields(body, allowed, "", errors);
    def = json_object_get(body, "default");
    if (def != NULL)
        ok = validate_rule(def, "", "default", errors) && ok;
    traits = json_object_get(body, "traits");
    if (traits == NULL)
        return ok;
    if (!json_is_object(traits)) {
        verr_add(errors, "", "traits", "'traits' must be an object of trait name to rule");
        return false;
    }
    if (json_object_size(traits) > SURVIVORSHIP_TRAITS_MAX) {
        verr_add(errors, "", "traits", "at most %d traits may have a rule of their own",
                 SURVIVORSHIP_TRAITS_MAX);
        return false;
    }
    json_object_foreach(traits, name, rule) {
        if (!survivorship_trait_valid(name)) {
            verr_add(errors, "/traits", name,
                     "unknown trait '%.80s' (first_name, last_name, birthday, gender, address, "
                     "or attributes.<key>)", name);
            ok = false;
            continue;
        }
        ok = validate_rule(rule, "/traits", name, errors) && ok;
    }
    return ok;
}
