/*
 * Unit tests for the enumerations: each is written once in C (channels and
 * interaction types and satisfaction score ranges in validate.c, identifier
 * kinds in normalize.c, consent purposes and statuses and moment kinds in
 * customize.c, roles in auth.c, NPS categories in segment.c, event types in
 * feed.c, case statuses and priorities in cases.c, next-best-action
 * conditions in nba.c, journey stages and interaction phases in stage.c,
 * survivorship rules in survivorship.c), and the error
 * messages list them from those arrays. Here the contract (openapi.yaml's
 * enums) and the schema (the CHECK constraints in sql/) are read from the
 * source tree and compared with the C lists, in order.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cases.h"
#include "customize.h"
#include "feed.h"
#include "nba.h"
#include "lookalike.h"
#include "normalize.h"
#include "segment.h"
#include "stage.h"
#include "survivorship.h"
#include "validate.h"
#include "test_helpers.h"

#ifndef CRM_SOURCE_ROOT
#error "build with -DCRM_SOURCE_ROOT=\"<repo root>\" (meson.build does this for test_enums)"
#endif

static char *slurp(const char *rel)
{
    char path[1024];
    FILE *f;
    long n;
    char *text;
    snprintf(path, sizeof(path), "%s/%s", CRM_SOURCE_ROOT, rel);
    f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)n + 1);
    ck_assert(fread(text, 1, (size_t)n, f) == (size_t)n);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void append(char *out, size_t cap, const char *word, size_t n)
{
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%.*s", len > 0 ? ", " : "", (int)n, word);
}

/* The enum of components.schemas.<name> in openapi.yaml ("a, b, c"), inline
 * ([a, b]) or as a block list (- a). */
static const char *openapi_enum(const char *yaml, const char *name)
{
    static char out[1024];
    char header[96];
    const char *p, *end, *e;
    out[0] = '\0';
    snprintf(header, sizeof(header), "\n    %s:\n", name);
    p = strstr(yaml, header);
    ck_assert_msg(p != NULL, "openapi.yaml has no schema %s", name);
    p += strlen(header);
    /* the schema ends at the next line indented by exactly four spaces */
    for (end = p; (end = strstr(end, "\n    ")) != NULL && end[5] == ' '; end++)
        ;
    e = strstr(p, "enum:");
    ck_assert_msg(e != NULL && (end == NULL || e < end), "schema %s has no enum", name);
    e += 5;
    while (*e == ' ')
        e++;
    if (*e == '[') {
        for (e++; *e != ']';) {
            size_t n = strcspn(e, ",]");
            const char *w = e;
            while (*w == ' ')
                w++, n--;
            append(out, sizeof(out), w, n);
            e += strcspn(e, ",]");
            if (*e == ',')
                e++;
        }
    } else {
        while ((e = strchr(e, '\n')) != NULL) {
            const char *w = e + 1;
            while (*w == ' ')
                w++;
            if (strncmp(w, "- ", 2) != 0)
                break;
            w += 2;
            append(out, sizeof(out), w, strcspn(w, "\n"));
            e = w;
        }
    }
    return out;
}

/* The quoted values after "CHECK (<column> <op>" up to the closing char in
 * the definition of table crm.<table> (CREATE TABLE up to its closing ");")
 * in the migrations. */
static const char *sql_values(const char *sql, const char *table, const char *column,
                              const char *op, char close)
{
    static char out[1024];
    char needle[96], create[96];
    const char *p, *start, *end;
    out[0] = '\0';
    snprintf(create, sizeof(create), "CREATE TABLE crm.%s (", table);
    start = strstr(sql, create);
    ck_assert_msg(start != NULL, "no %s in sql/", create);
    end = strstr(start, "\n);");
    snprintf(needle, sizeof(needle), "CHECK (%s %s", column, op);
    p = strstr(start, needle);
    ck_assert_msg(p != NULL && p < end, "no %s...) in crm.%s", needle, table);
    for (p += strlen(needle); *p != close;) {
        const char *a = strchr(p, '\''), *b;
        ck_assert(a != NULL);
        b = strchr(a + 1, '\'');
        append(out, sizeof(out), a + 1, (size_t)(b - a - 1));
        p = b + 1;
        p += strspn(p, ", \n");
    }
    return out;
}

/* "CHECK (<column> IN ('a', 'b'))" */
static const char *sql_check(const char *sql, const char *table, const char *column)
{
    return sql_values(sql, table, column, "IN (", ')');
}

/* "CHECK (<column> <@ ARRAY['a', 'b']" (an array column whose elements are
 * enumerated) */
static const char *sql_array_check(const char *sql, const char *table, const char *column)
{
    return sql_values(sql, table, column, "<@ ARRAY[", ']');
}

static int by_name(const struct dirent **x, const struct dirent **y)
{
    return strcmp((*x)->d_name, (*y)->d_name);
}

/* Every migration (sql/NNN_*.sql), in the order they are applied. */
static char *all_sql(void)
{
    struct dirent **entries;
    char dir[1024];
    size_t len = 0;
    char *all = calloc(1, 1);
    int n;
    snprintf(dir, sizeof(dir), "%s/sql", CRM_SOURCE_ROOT);
    n = scandir(dir, &entries, NULL, by_name);
    ck_assert_msg(n > 0, "cannot list %s", dir);
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        size_t nl = strlen(name);
        if (name[0] >= '0' && name[0] <= '9' && nl > 4 && strcmp(name + nl - 4, ".sql") == 0) {
            char rel[600], *t;
            snprintf(rel, sizeof(rel), "sql/%s", name);
            t = slurp(rel);
            all = realloc(all, len + strlen(t) + 1);
            strcpy(all + len, t);
            len += strlen(t);
            free(t);
        }
        free(entries[i]);
    }
    free(entries);
    return all;
}

static char *feed_types(void)
{
    static char out[512];
    out[0] = '\0';
    for (int i = 0; FEED_EVENT_TYPES[i] != NULL; i++)
        append(out, sizeof(out), FEED_EVENT_TYPES[i], strlen(FEED_EVENT_TYPES[i]));
    return out;
}

static char *lookalike_features(void)
{
    static char out[512];
    out[0] = '\0';
    for (int i = 0; i < LA_BASE_FEATURES; i++)
        append(out, sizeof(out), lookalike_feature_name(i), strlen(lookalike_feature_name(i)));
    return out;
}

/* The properties block of components.schemas.<name> in openapi.yaml, up to
 * the next schema (a line indented by exactly four spaces); owned. */
static char *openapi_schema(const char *yaml, const char *name)
{
    char header[96];
    const char *p, *end;
    snprintf(header, sizeof(header), "\n    %s:\n", name);
    p = strstr(yaml, header);
    ck_assert_msg(p != NULL, "openapi.yaml has no schema %s", name);
    p += strlen(header);
    for (end = p; (end = strstr(end, "\n    ")) != NULL && end[5] == ' '; end++)
        ;
    return end ? strndup(p, (size_t)(end - p)) : strdup(p);
}

static char *roles(void)
{
    static char out[256];
    out[0] = '\0';
    for (int r = 0; r < ROLE_COUNT; r++)
        append(out, sizeof(out), role_name((enum role)r), strlen(role_name((enum role)r)));
    return out;
}

START_TEST(test_openapi_enums_match_c)
{
    char *yaml = slurp("openapi.yaml");
    char any[256];
    ck_assert_str_eq(openapi_enum(yaml, "Channel"), channel_list());
    ck_assert_str_eq(openapi_enum(yaml, "InteractionType"), interaction_type_list());
    ck_assert_str_eq(openapi_enum(yaml, "IdentifierKind"), id_kind_list());
    ck_assert_str_eq(openapi_enum(yaml, "ConsentPurpose"), consent_purpose_list());
    ck_assert_str_eq(openapi_enum(yaml, "ConsentStatus"), consent_status_list());
    snprintf(any, sizeof(any), "%s, any", channel_list());
    ck_assert_str_eq(openapi_enum(yaml, "ConsentChannel"), any);
    ck_assert_str_eq(openapi_enum(yaml, "Role"), roles());
    /* the fields a partner key may be given are the audience fields */
    ck_assert_str_eq(openapi_enum(yaml, "SharedFields"), audience_field_list());
    /* the change feed's event types (feed.c) */
    ck_assert_str_eq(openapi_enum(yaml, "EventType"), feed_types());
    ck_assert_str_eq(openapi_enum(yaml, "NpsCategory"), nps_category_list());
    /* cases (cases.c) */
    ck_assert_str_eq(openapi_enum(yaml, "CaseStatus"), case_status_list());
    ck_assert_str_eq(openapi_enum(yaml, "CasePriority"), case_priority_list());
    /* identity rules (validate.c) */
    ck_assert_str_eq(openapi_enum(yaml, "DetachMode"), detach_mode_list());
    ck_assert_str_eq(openapi_enum(yaml, "NbaCondition"), nba_condition_list());
    /* the journey stage (stage.c) */
    ck_assert_str_eq(openapi_enum(yaml, "CustomerStage"), stage_list());
    ck_assert_str_eq(openapi_enum(yaml, "InteractionPhase"), phase_list());
    ck_assert_str_eq(openapi_enum(yaml, "SurvivorshipRuleName"), survivorship_rule_list());
    /* the look-alike model's fixed features (lookalike.c) */
    ck_assert_str_eq(openapi_enum(yaml, "LookalikeFixedFeature"), lookalike_features());
    free(yaml);
}
END_TEST

/* Each score kind's range is the same in C (validate.c), in the contract
 * (Scores: minimum and maximum of the property) and in the schema (the
 * CHECK of its column in sql/015_satisfaction.sql). */
START_TEST(test_score_ranges_match_c)
{
    char *yaml = slurp("openapi.yaml"), *sql = all_sql();
    char *scores = openapi_schema(yaml, "Scores");
    for (int k = 0; k < SCORE_KINDS; k++) {
        const struct score_kind *sk = score_kind(k);
        char prop[64], min[64], max[64], check[128];
        const char *p, *next;
        snprintf(prop, sizeof(prop), "\n        %s:\n", sk->name);
        p = strstr(scores, prop);
        ck_assert_msg(p != NULL, "Scores has no property %s", sk->name);
        p += strlen(prop);
        for (next = p; (next = strstr(next, "\n        ")) != NULL && next[9] == ' '; next++)
            ;
        snprintf(min, sizeof(min), "minimum: %d\n", sk->min);
        snprintf(max, sizeof(max), "maximum: %d", sk->max);
        ck_assert_msg(strstr(p, min) != NULL && (next == NULL || strstr(p, min) < next),
                      "Scores.%s: want %s", sk->name, min);
        ck_assert_msg(strstr(p, max) != NULL && (next == NULL || strstr(p, max) < next),
                      "Scores.%s: want %s", sk->name, max);
        snprintf(check, sizeof(check), "CHECK (%s BETWEEN %d AND %d)", sk->name, sk->min,
                 sk->max);
        ck_assert_msg(strstr(sql, check) != NULL, "no %s in sql/", check);
    }
    free(scores);
    free(sql);
    free(yaml);
}
END_TEST

START_TEST(test_sql_checks_match_c)
{
    char *sql = all_sql();
    ck_assert_str_eq(sql_check(sql, "consent_events", "purpose"), consent_purpose_list());
    ck_assert_str_eq(sql_check(sql, "consent_events", "status"), consent_status_list());
    ck_assert_str_eq(sql_check(sql, "api_keys", "role"), roles());
    /* the moments run's kinds and their purposes (sql/013_moment_events.sql) */
    ck_assert_str_eq(sql_check(sql, "moment_kinds", "kind"), moment_kind_list());
    ck_assert_str_eq(sql_check(sql, "moment_kinds", "purpose"), consent_purpose_list());
    /* cases (sql/017_cases.sql) */
    ck_assert_str_eq(sql_check(sql, "cases", "status"), case_status_list());
    ck_assert_str_eq(sql_check(sql, "cases", "priority"), case_priority_list());
    /* identity rules (sql/022_identity_rules.sql) */
    ck_assert_str_eq(sql_check(sql, "identifier_detachments", "mode"), detach_mode_list());
    ck_assert_str_eq(sql_array_check(sql, "nba_rules", "conditions"), nba_condition_list());
    /* the journey stage (sql/019_stage.sql) */
    ck_assert_str_eq(sql_check(sql, "customer_stage", "stage"), stage_list());
    ck_assert_str_eq(sql_check(sql, "stage_history", "from_stage"), stage_list());
    ck_assert_str_eq(sql_check(sql, "stage_history", "to_stage"), stage_list());
    /* survivorship (sql/021_survivorship.sql) */
    ck_assert_str_eq(sql_check(sql, "survivorship_rules", "rule"), survivorship_rule_list());
    free(sql);
}
END_TEST

/* The stage KPIs list every stage, in the order of stage.c, and the rule
 * (crm.stage_of) decides each of them: the SQL is read from the source. */
START_TEST(test_stage_sql_matches_c)
{
    char *sql = slurp("sql/functions/stage.sql");
    char list[256] = "ARRAY[";
    const char *p;
    for (int i = 0; STAGES[i] != NULL; i++) {
        char quoted[64], then[64];
        snprintf(quoted, sizeof(quoted), "%s'%s'", i > 0 ? ", " : "", STAGES[i]);
        strncat(list, quoted, sizeof(list) - strlen(list) - 1);
        snprintf(then, sizeof(then), "'%s'", STAGES[i]);
        p = strstr(sql, "FUNCTION crm.stage_of(");
        ck_assert_ptr_nonnull(p);
        ck_assert_msg(strstr(p, then) != NULL, "crm.stage_of never decides %s", STAGES[i]);
    }
    strncat(list, "]", sizeof(list) - strlen(list) - 1);
    /* the KPI's list may wrap: a line break and its indent read as one space */
    {
        char *flat = malloc(strlen(sql) + 1), *o = flat;
        for (const char *c = sql; *c; c++) {
            if (*c == '\n') {
                while (c[1] == ' ')
                    c++;
                *o++ = ' ';
                continue;
            }
            *o++ = *c;
        }
        *o = '\0';
        ck_assert_msg(strstr(flat, list) != NULL, "no %s in stage.sql", list);
        free(flat);
    }
    free(sql);
}
END_TEST

START_TEST(test_lists_are_built_from_the_arrays)
{
    ck_assert_str_eq(channel_list(), "web, app, email, sms, phone, chat, social, store, partner");
    ck_assert_str_eq(id_kind_list(), "email, phone, external, loyalty_card, device");
    ck_assert(channel_valid("partner") && !channel_valid("fax"));
    ck_assert(interaction_type_valid("outbound_message"));
    ck_assert_ptr_eq(channel_list(), channel_list()); /* built once */
    ck_assert_str_eq(stage_list(), "prospect, onboarding, active, at_risk, lapsed, won_back");
    ck_assert_str_eq(phase_list(), "before, during, after");
    ck_assert(stage_valid("won_back") && !stage_valid("churned") && !stage_valid(NULL));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("enums");
    TCase *tc = tcase_create("written once");
    tcase_add_test(tc, test_openapi_enums_match_c);
    tcase_add_test(tc, test_sql_checks_match_c);
    tcase_add_test(tc, test_score_ranges_match_c);
    tcase_add_test(tc, test_lists_are_built_from_the_arrays);
    tcase_add_test(tc, test_stage_sql_matches_c);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
