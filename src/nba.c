/*
 * nba: the next best action's vocabulary, the check of an admin's rule list
 * and the choice of the rule that fires (include/nba.h, docs/summary.md).
 * The rules are data (crm.nba_rules); what a condition means is code, here,
 * in one switch, judged on facts read from the summary document. A template
 * names facts as {placeholder}; a placeholder whose fact only a condition
 * guarantees (the need, the NPS score, the case, the warranty) may only be
 * used by a rule that has that condition, so a fired rule never shows an
 * empty fact.
 */
#include "nba.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"
#include "textutil.h"

static const char *const NBA_CONDITION_NAMES[NBA_CONDITION_COUNT + 1] = {
    [NBA_OPEN_COMPLAINT_CASE] = "open_complaint_case",
    [NBA_OPEN_CASE] = "open_case",
    [NBA_HIGH_VALUE] = "high_value",
    [NBA_AT_RISK] = "at_risk",
    [NBA_DETRACTOR] = "detractor",
    [NBA_WARRANTY_EXPIRING] = "warranty_expiring",
    [NBA_HAS_NEED] = "has_need",
    [NBA_LAPSED] = "lapsed",
    [NBA_ONBOARDING] = "onboarding",
};

#define BIT(c) (1u << (c))

/* A placeholder, and the conditions of which a rule using it must have one
 * (0: any rule may use it; the text says "none" when the fact is missing). */
struct placeholder {
    const char *name;
    unsigned int needs;
};

static const struct placeholder PLACEHOLDERS[] = {
    {"need", BIT(NBA_HAS_NEED)},
    {"tier", 0},
    {"clv", 0},
    {"churn_risk", 0},
    {"stage", 0},
    {"nps", BIT(NBA_DETRACTOR)},
    {"case_id", BIT(NBA_OPEN_CASE) | BIT(NBA_OPEN_COMPLAINT_CASE)},
    {"case_subject", BIT(NBA_OPEN_CASE) | BIT(NBA_OPEN_COMPLAINT_CASE)},
    {"warranty_date", BIT(NBA_WARRANTY_EXPIRING)},
    {"warranty_days", BIT(NBA_WARRANTY_EXPIRING)},
};
#define PLACEHOLDER_COUNT ((int)(sizeof(PLACEHOLDERS) / sizeof(PLACEHOLDERS[0])))

const char *nba_condition_name(int i)
{
    return i >= 0 && i < NBA_CONDITION_COUNT ? NBA_CONDITION_NAMES[i] : NULL;
}

bool nba_condition_parse(const char *name, enum nba_condition *out)
{
    for (int i = 0; name != NULL && i < NBA_CONDITION_COUNT; i++) {
        if (strcmp(name, NBA_CONDITION_NAMES[i]) == 0) {
            *out = (enum nba_condition)i;
            return true;
        }
    }
    return false;
}

const char *nba_condition_list(void)
{
    static struct name_list names = {.names = NBA_CONDITION_NAMES};
    return name_list_text(&names);
}

const char *nba_placeholder_list(char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < PLACEHOLDER_COUNT; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "%s{%s}", i > 0 ? ", " : "", PLACEHOLDERS[i].name);
    }
    return buf;
}

bool nba_condition_holds(enum nba_condition c, const struct nba_facts *f,
                         const struct nba_thresholds *t)
{
    switch (c) {
    case NBA_OPEN_COMPLAINT_CASE:
        return f->open_complaint_cases > 0;
    case NBA_OPEN_CASE:
        return f->open_cases > 0;
    case NBA_HIGH_VALUE:
        return (f->tier != NULL && (strcmp(f->tier, "mvc") == 0 || strcmp(f->tier, "mgc") == 0)) ||
               (f->has_clv && f->clv > t->high_value_clv);
    case NBA_AT_RISK:
        return (f->has_churn_risk && f->churn_risk > t->at_risk_churn_risk) ||
               (f->stage != NULL && strcmp(f->stage, "at_risk") == 0);
    case NBA_DETRACTOR:
        return f->has_nps && f->nps <= 6;
    case NBA_WARRANTY_EXPIRING:
        return f->warranty_date != NULL && f->warranty_days_until >= 0 &&
               f->warranty_days_until <= t->warranty_days;
    case NBA_HAS_NEED:
        return f->top_need != NULL && f->top_need[0] != '\0';
    case NBA_LAPSED:
        return f->stage != NULL && strcmp(f->stage, "lapsed") == 0;
    case NBA_ONBOARDING:
        return f->stage != NULL && strcmp(f->stage, "onboarding") == 0;
    case NBA_CONDITION_COUNT:
        break;
    }
    return false;
}

/* ---- facts ------------------------------------------------------------------ */

static const char *str_at(const json_t *doc, const char *a, const char *b)
{
    const json_t *v = json_object_get(doc, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool num_at(const json_t *doc, const char *a, const char *b, double *out)
{
    const json_t *v = json_object_get(json_object_get(doc, a), b);
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (json_is_string(v)) { /* numeric values may come as text */
        char *end;
        *out = strtod(json_string_value(v), &end);
        return *json_string_value(v) != '\0' && *end == '\0';
    }
    return false;
}

void nba_facts_from_summary(const json_t *summary, struct nba_facts *out)
{
    const json_t *cases = json_object_get(summary, "cases"), *c, *m;
    double d;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->warranty_days_until = -1;
    out->open_cases = (int)json_integer_value(json_object_get(cases, "open_count"));
    out->open_complaint_cases =
        (int)json_integer_value(json_object_get(cases, "open_complaint_count"));
    /* the case a rule names: the most urgent complaint case, else the most urgent case */
    json_array_foreach(json_object_get(cases, "most_urgent"), i, c) {
        if (json_is_true(json_object_get(c, "complaint"))) {
            out->case_id = str_at(c, "case_id", NULL);
            out->case_subject = str_at(c, "subject", NULL);
            break;
        }
    }
    if (out->case_id == NULL) {
        c = json_array_get(json_object_get(cases, "most_urgent"), 0);
        out->case_id = str_at(c, "case_id", NULL);
        out->case_subject = str_at(c, "subject", NULL);
    }
    out->tier = str_at(summary, "value", "tier");
    out->has_clv = num_at(summary, "value", "clv", &out->clv);
    out->has_churn_risk = num_at(summary, "value", "churn_risk", &out->churn_risk);
    if (num_at(summary, "satisfaction", "nps", &d)) {
        out->has_nps = true;
        out->nps = (int)d;
    }
    json_array_foreach(json_object_get(summary, "moments"), i, m) {
        const char *kind = str_at(m, "kind", NULL);
        if (kind != NULL && strcmp(kind, "warranty") == 0 &&
            json_is_integer(json_object_get(m, "days_until"))) {
            out->warranty_date = str_at(m, "date", NULL);
            out->warranty_days_until = (int)json_integer_value(json_object_get(m, "days_until"));
            break; /* soonest first */
        }
    }
    out->top_need = json_string_value(json_array_get(json_object_get(summary, "needs"), 0));
    out->stage = str_at(summary, "stage", "stage");
}

bool nba_thresholds_parse(const json_t *th, struct nba_thresholds *out)
{
    const json_t *clv = json_object_get(th, "high_value_clv"),
                 *risk = json_object_get(th, "at_risk_churn_risk"),
                 *days = json_object_get(th, "warranty_days");
    if (!json_is_number(clv) || !json_is_number(risk) || !json_is_integer(days))
        return false;
    out->high_value_clv = json_number_value(clv);
    out->at_risk_churn_risk = json_number_value(risk);
    out->warranty_days = (int)json_integer_value(days);
    return true;
}

/* ---- templates -------------------------------------------------------------- */

static int placeholder_find(const char *name, size_t len)
{
    for (int i = 0; i < PLACEHOLDER_COUNT; i++)
        if (strlen(PLACEHOLDERS[i].name) == len && memcmp(PLACEHOLDERS[i].name, name, len) == 0)
            return i;
    return -1;
}

/* Check a template: every "{name}" a known placeholder that the rule's
 * conditions (bits) guarantee; in an action (is_action) only {need}, and the
 * rest letters, digits and '_' starting with a letter. Adds at most one
 * error at prefix/key. */
static bool template_check(const char *text, unsigned int conditions, bool is_action,
                           json_t *errors, const char *prefix, const char *key)
{
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '{') {
            const char *end = strchr(p + 1, '}');
            int k = end != NULL ? placeholder_find(p + 1, (size_t)(end - p - 1)) : -1;
            if (end == NULL) {
                verr_add(errors, prefix, key, "'{' without its '}'");
                return false;
            }
            if (k < 0 || (is_action && strcmp(PLACEHOLDERS[k].name, "need") != 0)) {
                char list[256];
                verr_add(errors, prefix, key, "unknown placeholder {%.*s} (%s: %s)",
                         (int)(end - p - 1 > 64 ? 64 : end - p - 1), p + 1,
                         is_action ? "an action may name" : "one of",
                         is_action ? "{need}" : nba_placeholder_list(list, sizeof(list)));
                return false;
            }
            if (PLACEHOLDERS[k].needs != 0 && (PLACEHOLDERS[k].needs & conditions) == 0) {
                char names[160] = "";
                for (int c = 0; c < NBA_CONDITION_COUNT; c++) {
                    if (PLACEHOLDERS[k].needs & BIT(c)) {
                        size_t len = strlen(names);
                        snprintf(names + len, sizeof(names) - len, "%s%s", len ? " or " : "",
                                 NBA_CONDITION_NAMES[c]);
                    }
                }
                verr_add(errors, prefix, key,
                         "{%s} is only known to a rule with the condition %s",
                         PLACEHOLDERS[k].name, names);
                return false;
            }
            p = end;
        } else if (*p == '}') {
            verr_add(errors, prefix, key, "'}' without its '{'");
            return false;
        } else if (is_action && !(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
                                  *p == '_')) {
            verr_add(errors, prefix, key,
                     "an action is lower-case letters, digits and '_' (and {need})");
            return false;
        }
    }
    if (is_action && !islower((unsigned char)text[0])) {
        verr_add(errors, prefix, key, "an action starts with a lower-case letter");
        return false;
    }
    return true;
}

static bool name_ok(const char *s)
{
    if (!islower((unsigned char)s[0]))
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

/* A string member of at most max characters; an error otherwise. */
static const char *string_member(const json_t *obj, const char *key, size_t max, json_t *errors,
                                 const char *prefix)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || json_string_length(v) == 0) {
        verr_add(errors, prefix, key, "required: a non-empty string");
        return NULL;
    }
    if (utf8_length(json_string_value(v)) > max) {
        verr_add(errors, prefix, key, "at most %zu characters", max);
        return NULL;
    }
    return json_string_value(v);
}

static void rule_check(const json_t *rule, size_t i, const json_t *rules, json_t *errors)
{
    char prefix[48];
    const char *key, *name, *action, *reason;
    const json_t *v, *conds;
    unsigned int bits = 0;
    size_t j;

    snprintf(prefix, sizeof(prefix), "/rules/%zu", i);
    if (!json_is_object(rule)) {
        verr_add(errors, prefix, NULL, "a rule is an object {priority, name, conditions, action, "
                                       "reason}");
        return;
    }
    json_object_foreach((json_t *)rule, key, v) {
        if (strcmp(key, "priority") != 0 && strcmp(key, "name") != 0 &&
            strcmp(key, "conditions") != 0 && strcmp(key, "action") != 0 &&
            strcmp(key, "reason") != 0)
            verr_add(errors, prefix, key, "unknown member (a rule has priority, name, "
                                          "conditions, action, reason)");
    }
    v = json_object_get(rule, "priority");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000) {
        verr_add(errors, prefix, "priority", "required: an integer from 1 to 1000000");
    } else {
        for (j = 0; j < i; j++)
            if (json_equal(json_object_get(json_array_get(rules, j), "priority"), v)) {
                verr_add(errors, prefix, "priority", "rule %zu has this priority already", j);
                break;
            }
    }
    name = string_member(rule, "name", NBA_NAME_MAX, errors, prefix);
    if (name != NULL && !name_ok(name)) {
        verr_add(errors, prefix, "name", "a name is lower-case letters, digits and '_', "
                                         "starting with a letter");
    } else if (name != NULL) {
        for (j = 0; j < i; j++)
            if (json_equal(json_object_get(json_array_get(rules, j), "name"),
                           json_object_get(rule, "name"))) {
                verr_add(errors, prefix, "name", "rule %zu has this name already", j);
                break;
            }
    }
    conds = json_object_get(rule, "conditions");
    if (!json_is_array(conds)) {
        verr_add(errors, prefix, "conditions",
                 "required: an array of condition names (all must hold; [] always holds)");
    } else {
        json_array_foreach(conds, j, v) {
            enum nba_condition c;
            char at[64];
            snprintf(at, sizeof(at), "%s/conditions", prefix);
            if (!json_is_string(v) || !nba_condition_parse(json_string_value(v), &c)) {
                char k[24];
                snprintf(k, sizeof(k), "%zu", j);
                verr_add(errors, at, k, "unknown condition (one of: %s)", nba_condition_list());
            } else if (bits & BIT(c)) {
                char k[24];
                snprintf(k, sizeof(k), "%zu", j);
                verr_add(errors, at, k, "condition %s is listed twice", json_string_value(v));
            } else {
                bits |= BIT(c);
            }
        }
    }
    action = string_member(rule, "action", NBA_ACTION_MAX, errors, prefix);
    if (action != NULL)
        template_check(action, bits, true, errors, prefix, "action");
    reason = string_member(rule, "reason", NBA_REASON_MAX, errors, prefix);
    if (reason != NULL)
        template_check(reason, bits, false, errors, prefix, "reason");
}

bool nba_settings_check(const json_t *doc, json_t *errors)
{
    size_t before = json_array_size(errors), i;
    const json_t *rules, *th, *v;
    const char *key;

    if (!json_is_object(doc)) {
        verr_add(errors, "", NULL, "the body is an object {rules, thresholds}");
        return false;
    }
    json_object_foreach((json_t *)doc, key, v) {
        if (strcmp(key, "rules") != 0 && strcmp(key, "thresholds") != 0 &&
            strcmp(key, "updated_at") != 0)
            verr_add(errors, "", key, "unknown member (the body has rules and thresholds)");
    }
    rules = json_object_get(doc, "rules");
    if (!json_is_array(rules) || json_array_size(rules) == 0 ||
        json_array_size(rules) > NBA_RULES_MAX) {
        verr_add(errors, "", "rules", "required: an array of 1 to %d rules", NBA_RULES_MAX);
    } else {
        json_array_foreach(rules, i, v)
            rule_check(v, i, rules, errors);
    }
    th = json_object_get(doc, "thresholds");
    if (!json_is_object(th)) {
        verr_add(errors, "", "thresholds",
                 "required: an object {high_value_clv, at_risk_churn_risk, warranty_days}");
    } else {
        json_object_foreach((json_t *)th, key, v) {
            if (strcmp(key, "high_value_clv") != 0 && strcmp(key, "at_risk_churn_risk") != 0 &&
                strcmp(key, "warranty_days") != 0)
                verr_add(errors, "/thresholds", key, "unknown threshold (high_value_clv, "
                                                     "at_risk_churn_risk, warranty_days)");
        }
        v = json_object_get(th, "high_value_clv");
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e12)
            verr_add(errors, "/thresholds", "high_value_clv",
                     "required: a number from 0 to 1e12 (CLV in the base currency)");
        v = json_object_get(th, "at_risk_churn_risk");
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
            verr_add(errors, "/thresholds", "at_risk_churn_risk",
                     "required: a number from 0 to 1");
        v = json_object_get(th, "warranty_days");
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 366)
            verr_add(errors, "/thresholds", "warranty_days",
                     "required: an integer from 0 to 366");
    }
    return json_array_size(errors) == before;
}

/* ---- the choice ------------------------------------------------------------- */

/* The need as part of an action name: lower-case letters and digits, any
 * other run of characters one '_' ("Running shoes" -> "running_shoes"). */
static void slug_append(char *out, size_t cap, const char *text)
{
    size_t len = strlen(out);
    bool gap = false;
    for (const char *p = text; *p != '\0' && len + 1 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isalnum(ch) && ch < 128) {
            if (gap && len > 0 && out[len - 1] != '_' && len + 2 < cap)
                out[len++] = '_';
            out[len++] = (char)tolower(ch);
            gap = false;
        } else {
            gap = true;
        }
    }
    out[len] = '\0';
}

static void fact_text(int k, const struct nba_facts *f, char *buf, size_t cap)
{
    const char *name = PLACEHOLDERS[k].name;
    const char *s = NULL;
    buf[0] = '\0';
    if (strcmp(name, "need") == 0)
        s = f->top_need;
    else if (strcmp(name, "tier") == 0)
        s = f->tier;
    else if (strcmp(name, "case_id") == 0)
        s = f->case_id;
    else if (strcmp(name, "case_subject") == 0)
        s = f->case_subject != NULL ? f->case_subject : "no subject";
    else if (strcmp(name, "warranty_date") == 0)
        s = f->warranty_date;
    else if (strcmp(name, "stage") == 0)
        s = f->stage;
    else if (strcmp(name, "clv") == 0 && f->has_clv)
        snprintf(buf, cap, "%.2f", f->clv);
    else if (strcmp(name, "churn_risk") == 0 && f->has_churn_risk)
        snprintf(buf, cap, "%.2f", f->churn_risk);
    else if (strcmp(name, "nps") == 0 && f->has_nps)
        snprintf(buf, cap, "%d", f->nps);
    else if (strcmp(name, "warranty_days") == 0 && f->warranty_days_until >= 0)
        snprintf(buf, cap, "%d", f->warranty_days_until);
    if (s != NULL)
        snprintf(buf, cap, "%s", s);
    if (buf[0] == '\0')
        snprintf(buf, cap, "none");
}

/* The template with its placeholders filled in (as slugs in an action). */
static void expand(const char *tpl, const struct nba_facts *f, bool slug, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (const char *p = tpl; *p != '\0' && len + 1 < cap; p++) {
        const char *end = *p == '{' ? strchr(p + 1, '}') : NULL;
        int k = end != NULL ? placeholder_find(p + 1, (size_t)(end - p - 1)) : -1;
        if (k >= 0) {
            char value[512];
            fact_text(k, f, value, sizeof(value));
            if (slug)
                slug_append(out, cap, value);
            else
                snprintf(out + len, cap - len, "%s", value);
            len = strlen(out);
            p = end;
        } else {
            out[len++] = *p;
            out[len] = '\0';
        }
    }
    utf8_truncate(out);
}

json_t *nba_recommend(const json_t *rules, const struct nba_facts *f,
                      const struct nba_thresholds *t)
{
    const json_t *rule, *cond;
    size_t i, j;
    json_array_foreach(rules, i, rule) {
        bool all = true;
        json_array_foreach(json_object_get(rule, "conditions"), j, cond) {
            enum nba_condition c;
            all = all && nba_condition_parse(json_string_value(cond), &c) &&
                  nba_condition_holds(c, f, t);
        }
        if (all) {
            char action[NBA_ACTION_MAX * 4 + 600], reason[NBA_REASON_MAX * 4 + 2048];
            expand(json_string_value(json_object_get(rule, "action")), f, true, action,
                   sizeof(action));
            expand(json_string_value(json_object_get(rule, "reason")), f, false, reason,
                   sizeof(reason));
            return json_pack("{s:O, s:O, s:s, s:s}", "rule", json_object_get(rule, "name"),
                             "priority", json_object_get(rule, "priority"), "action", action,
                             "reason", reason);
        }
    }
    return json_pack("{s:n, s:n, s:s, s:s}", "rule", "priority", "action", "no_action", "reason",
                     "no rule applies");
}
