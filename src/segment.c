/*
 * segment: compiles a JSON rule into a parameterised SQL condition.
 *
 *   rule := {"all": [rule...]} | {"any": [rule...]} | {"not": rule}
 *         | {"field": F, "op": OP, "value": V}
 *         | {"need": N, "min_count": K?, "within_days": D?}
 *         | {"interaction": {"type"?, "channel"?, "tag"?, "within_days"?, "min_count"?}}
 *         | {"has_identifier": KIND}
 *
 * Column names and SQL text come only from the tables below; every value
 * from the rule becomes a parameter. See docs/value.md for the language
 * and docs/segments.md for live membership (dependencies, stored condition).
 */
#include "segment.h"

#include "jsontext.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normalize.h"
#include "problem.h"
#include "stage.h"
#include "textutil.h"
#include "validate.h"

/* FT_ENUM: text whose values are a fixed list (values), checked here, so a
 * misspelt value is a 422 rather than a segment that matches nobody. */
enum field_type { FT_NUMBER, FT_TEXT, FT_TIME, FT_DATE, FT_JSON, FT_ENUM };

struct field_def {
    const char *name;
    enum field_type type;
    const char *sql; /* expression over c (customers) and v (customer_value) */
};

/* The values of the FT_ENUM fields. */
static const char *const NPS_CATEGORIES[] = {"promoter", "passive", "detractor", NULL};
static const struct {
    const char *field;
    const char *const *values;
} ENUM_VALUES[] = {{"satisfaction.nps_category", NPS_CATEGORIES}, {"stage", STAGES}};

const char *nps_category_list(void)
{
    static struct name_list names = {.names = NPS_CATEGORIES};
    return name_list_text(&names);
}

static const char *const *enum_values(const char *field)
{
    for (size_t i = 0; i < sizeof(ENUM_VALUES) / sizeof(ENUM_VALUES[0]); i++)
        if (strcmp(ENUM_VALUES[i].field, field) == 0)
            return ENUM_VALUES[i].values;
    return NULL;
}

#define LATEST_SCORE(what, kind)                                                            \
    "(SELECT " what " FROM crm.interactions i WHERE i.customer_id = c.customer_id AND i." kind \
    " IS NOT NULL ORDER BY i.occurred_at DESC, i.interaction_id DESC LIMIT 1)"

static const struct field_def FIELDS[] = {
    {"value.tier", FT_TEXT, "v.tier"},
    {"value.clv", FT_NUMBER, "v.clv"},
    {"value.margin", FT_NUMBER, "v.margin"},
    {"value.revenue", FT_NUMBER, "v.revenue"},
    {"value.returns", FT_NUMBER, "v.returns"},
    {"value.cost", FT_NUMBER, "v.cost"},
    {"value.p_alive", FT_NUMBER, "v.p_alive"},
    {"value.churn_risk", FT_NUMBER, "(1 - v.p_alive)"},
    {"value.expected_purchases", FT_NUMBER, "v.expected_purchases"},
    {"value.expected_spend", FT_NUMBER, "v.expected_spend"},
    {"value.purchase_days", FT_NUMBER, "v.purchase_days"},
    {"value.rfm_r", FT_NUMBER, "v.rfm_r"},
    {"value.rfm_f", FT_NUMBER, "v.rfm_f"},
    {"value.rfm_m", FT_NUMBER, "v.rfm_m"},
    {"value.first_purchase_at", FT_TIME, "v.first_purchase_at"},
    {"value.last_purchase_at", FT_TIME, "v.last_purchase_at"},
    {"customer.created_at", FT_TIME, "c.created_at"},
    {"traits.first_name", FT_TEXT,
     "(SELECT t.value #>> '{}' FROM crm.traits t WHERE t.customer_id = c.customer_id "
     "AND t.name = 'first_name')"},
    {"traits.last_name", FT_TEXT,
     "(SELECT t.value #>> '{}' FROM crm.traits t WHERE t.customer_id = c.customer_id "
     "AND t.name = 'last_name')"},
    {"traits.gender", FT_TEXT,
     "(SELECT t.value #>> '{}' FROM crm.traits t WHERE t.customer_id = c.customer_id "
     "AND t.name = 'gender')"},
    {"traits.birthday", FT_DATE,
     "(SELECT (t.value #>> '{}')::date FROM crm.traits t WHERE t.customer_id = c.customer_id "
     "AND t.name = 'birthday')"},
    /* The latest score of each kind (by occurred_at): one probe of
     * interactions_scored_idx (sql/015_satisfaction.sql) per customer. */
    {"satisfaction.nps", FT_NUMBER, LATEST_SCORE("i.nps", "nps")},
    {"satisfaction.nps_category", FT_ENUM,
     "crm.nps_category(" LATEST_SCORE("i.nps", "nps") ")"},
    {"satisfaction.nps_at", FT_TIME, LATEST_SCORE("i.occurred_at", "nps")},
    {"satisfaction.csat", FT_NUMBER, LATEST_SCORE("i.csat", "csat")},
    {"satisfaction.ces", FT_NUMBER, LATEST_SCORE("i.ces", "ces")},
    /* The journey stage (docs/stage.md): no row is a prospect. One probe of
     * crm.customer_stage's primary key. */
    {"stage", FT_ENUM,
     "coalesce((SELECT s.stage FROM crm.customer_stage s WHERE s.customer_id = c.customer_id), "
     "'prospect')"},
};
#define FIELD_COUNT (sizeof(FIELDS) / sizeof(FIELDS[0]))
#define ATTR_PREFIX "traits.attributes."

const char *segment_field_list(void)
{
    return "value.tier, value.clv, value.margin, value.revenue, value.returns, value.cost, "
           "value.p_alive, value.churn_risk, value.expected_purchases, value.expected_spend, "
           "value.purchase_days, value.rfm_r, value.rfm_f, value.rfm_m, "
           "value.first_purchase_at, value.last_purchase_at, customer.created_at, "
           "traits.first_name, traits.last_name, traits.gender, traits.birthday, "
           "traits.attributes.<key>, satisfaction.nps, satisfaction.nps_category, "
           "satisfaction.nps_at, satisfaction.csat, satisfaction.ces, stage";
}

/* Growing SQL text plus the parameter list. */
struct compiler {
    struct jsontext sql;
    json_t *params;
    json_t *errors;
    int nodes;
    unsigned deps; /* SEG_DEP_* */
    bool ok;
};

static void emit(struct compiler *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The shortest decimal text that reads back as the same double, so 19.99
 * reaches numeric columns as "19.99", not "19.989999999999998". */
static void number_text(json_t *v, char *out, size_t cap)
{
    if (json_is_integer(v)) {
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
        return;
    }
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(out, cap, "%.*g", precision, json_real_value(v));
        if (strtod(out, NULL) == json_real_value(v))
            return;
    }
}

/* A JSON string without embedded NUL (which C strings would cut short). */
static bool clean_string(json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static void emit(struct compiler *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    jsontext_vprintf(&c->sql, fmt, ap);
    va_end(ap);
}

/* Add a parameter (string value, stolen) and return its number. */
static int param(struct compiler *c, json_t *value)
{
    json_array_append_new(c->params, value);
    return (int)json_array_size(c->params);
}

static void fail(struct compiler *c, const char *ptr, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct compiler *c, const char *ptr, const char *key, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    verr_add(c->errors, ptr, key, "%s", detail);
    c->ok = false;
}

static bool only_keys(struct compiler *c, json_t *obj, const char *ptr, const char *const *allowed)
{
    const char *key;
    json_t *v;
    bool ok = true;
    json_object_foreach(obj, key, v) {
        bool known = false;
        for (int i = 0; allowed[i]; i++)
            known = known || strcmp(allowed[i], key) == 0;
        if (!known) {
            fail(c, ptr, key, "unknown key '%s' in this rule", key);
            ok = false;
        }
    }
    return ok;
}

/* Optional positive integer field; returns -1 when absent, -2 when invalid. */
static long small_int(struct compiler *c, json_t *obj, const char *key, const char *ptr, long max)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return -1;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        fail(c, ptr, key, "'%s' must be an integer from 1 to %ld", key, max);
        return -2;
    }
    return (long)json_integer_value(v);
}

static const char *const NUMERIC_OPS[] = {"eq", "ne", "lt", "lte", "gt", "gte", "in", "exists", NULL};
static const char *const TEXT_OPS[] = {"eq", "ne", "in", "contains", "exists", NULL};
static const char *const TIME_OPS[] = {"lt", "lte", "gt", "gte", "within_last_days",
                                       "not_within_last_days", "exists", NULL};
static const char *const JSON_OPS[] = {"eq", "ne", "in", "contains", "exists", NULL};
static const char *const ENUM_OPS[] = {"eq", "ne", "in", "exists", NULL};

static const char *comparison_sql(const char *op)
{
    static const char *const ops[][2] = {{"eq", "="}, {"ne", "<>"}, {"lt", "<"},
                                         {"lte", "<="}, {"gt", ">"}, {"gte", ">="}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(ops[i][0], op) == 0)
            return ops[i][1];
    return NULL;
}

static bool op_allowed(const char *const *ops, const char *op)
{
    for (int i = 0; ops[i]; i++)
        if (strcmp(ops[i], op) == 0)
            return true;
    return false;
}

static void ops_text(const char *const *ops, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; ops[i] && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", ops[i]);
}

static void compile_in(struct compiler *c, const char *expr, const char *cast, json_t *value,
                       const char *ptr, bool is_number)
{
    size_t i;
    json_t *item;
    char *text;
    if (!json_is_array(value) || json_array_size(value) == 0 ||
        json_array_size(value) > SEGMENT_MAX_IN) {
        fail(c, ptr, "value", "'in' needs an array of 1 to %d values", SEGMENT_MAX_IN);
        return;
    }
    json_array_foreach(value, i, item) {
        if (is_number ? !json_is_number(item) : !clean_string(item)) {
            fail(c, ptr, "value", "every value of 'in' must be a %s", is_number ? "number" : "string");
            return;
        }
    }
    if (is_number) { /* a JSON array of the shortest exact decimal texts */
        size_t len = 1, cap = json_array_size(value) * 26 + 3;
        text = malloc(cap);
        text[0] = '[';
        json_array_foreach(value, i, item) {
            char num[32];
            number_text(item, num, sizeof(num));
            len += (size_t)snprintf(text + len, cap - len, "%s%s", i ? "," : "", num);
        }
        snprintf(text + len, cap - len, "]");
    } else {
        text = json_dumps(value, JSON_COMPACT);
    }
    emit(c, "(%s = ANY (ARRAY(SELECT jsonb_array_elements_text($%d::jsonb))::%s[]))", expr,
         param(c, json_string(text)), cast);
    free(text);
}

static void compile_field(struct compiler *c, json_t *node, const char *ptr)
{
    static const char *const allowed[] = {"field", "op", "value", NULL};
    json_t *fv = json_object_get(node, "field"), *ov = json_object_get(node, "op");
    json_t *value = json_object_get(node, "value");
    const struct field_def *f = NULL;
    const char *name, *op, *cmp;
    char attr_expr[160];
    struct field_def attr;
    const char *const *ops;
    char list[200];

    if (!only_keys(c, node, ptr, allowed))
        return;
    if (!clean_string(fv)) {
        fail(c, ptr, "field", "'field' must be a string: one of %s", segment_field_list());
        return;
    }
    name = json_string_value(fv);
    for (size_t i = 0; i < FIELD_COUNT && f == NULL; i++)
        if (strcmp(FIELDS[i].name, name) == 0)
            f = &FIELDS[i];
    if (f == NULL && strncmp(name, ATTR_PREFIX, strlen(ATTR_PREFIX)) == 0) {
        const char *key = name + strlen(ATTR_PREFIX);
        size_t klen = utf8_length(key);
        if (klen < 1 || klen > 64) {
            fail(c, ptr, "field", "attribute name must be 1 to 64 characters");
            return;
        }
        /* The attribute name is a parameter too. */
        snprintf(attr_expr, sizeof(attr_expr),
                 "(SELECT t.value FROM crm.traits t WHERE t.customer_id = c.customer_id "
                 "AND t.name = $%d)",
                 param(c, json_pack("s+", "attributes.", key)));
        attr.name = name;
        attr.type = FT_JSON;
        attr.sql = attr_expr;
        f = &attr;
    }
    if (f == NULL) {
        fail(c, ptr, "field", "unknown field '%.80s' (one of: %s)", name, segment_field_list());
        return;
    }
    ops = f->type == FT_NUMBER ? NUMERIC_OPS
        : f->type == FT_TEXT   ? TEXT_OPS
        : f->type == FT_JSON   ? JSON_OPS
        : f->type == FT_ENUM   ? ENUM_OPS
                               : TIME_OPS;
    ops_text(ops, list, sizeof(list));
    if (!json_is_string(ov) || !op_allowed(ops, json_string_value(ov))) {
        fail(c, ptr, "op", "'op' for %s must be one of: %s", f->name, list);
        return;
    }
    op = json_string_value(ov);
    c->deps |= strncmp(f->name, "value.", 6) == 0    ? SEG_DEP_VALUE
             : strncmp(f->name, "customer.", 9) == 0 ? SEG_DEP_CUSTOMER
             : strcmp(f->name, "stage") == 0         ? SEG_DEP_STAGE
                                                      : SEG_DEP_TRAITS;
    if (strcmp(op, "within_last_days") == 0 || strcmp(op, "not_within_last_days") == 0)
        c->deps |= SEG_DEP_TIME;
    if (strcmp(op, "exists") == 0) {
        if (value != NULL && !json_is_boolean(value)) {
            fail(c, ptr, "value", "'exists' takes true, false or no value");
            return;
        }
        emit(c, "(%s IS %sNULL)", f->sql, value == NULL || json_is_true(value) ? "NOT " : "");
        return;
    }
    if (value == NULL) {
        fail(c, ptr, "value", "'value' is required for op '%s'", op);
        return;
    }
    cmp = comparison_sql(op);
    switch (f->type) {
    case FT_NUMBER:
        if (strcmp(op, "in") == 0) {
            compile_in(c, f->sql, "numeric", value, ptr, true);
        } else if (!json_is_number(value)) {
            fail(c, ptr, "value", "'value' for %s must be a number", f->name);
        } else {
            char num[64];
            number_text(value, num, sizeof(num));
            emit(c, "(%s %s $%d::numeric)", f->sql, cmp, param(c, json_string(num)));
        }
        break;
    case FT_TEXT:
        if (strcmp(op, "in") == 0) {
            compile_in(c, f->sql, "text", value, ptr, false);
        } else if (!clean_string(value)) {
            fail(c, ptr, "value", "'value' for %s must be a string without NUL", f->name);
        } else if (strcmp(op, "contains") == 0) {
            emit(c, "(strpos(lower(%s), lower($%d::text)) > 0)", f->sql,
                 param(c, json_copy(value)));
        } else {
            emit(c, "(%s %s $%d::text)", f->sql, cmp, param(c, json_copy(value)));
        }
        break;
    case FT_ENUM: {
        const char *const *values = enum_values(f->name);
        json_t *item;
        size_t i;
        char known[160];
        bool listed = true;
        ops_text(values, known, sizeof(known));
        if (strcmp(op, "in") == 0) {
            if (json_is_array(value))
                json_array_foreach(value, i, item)
                    listed = listed && clean_string(item) &&
                             name_in_list(values, json_string_value(item));
        } else {
            listed = clean_string(value) && name_in_list(values, json_string_value(value));
        }
        if (!listed) {
            fail(c, ptr, "value", "'value' for %s must be %s: %s", f->name,
                 strcmp(op, "in") == 0 ? "an array of" : "one of", known);
        } else if (strcmp(op, "in") == 0) {
            compile_in(c, f->sql, "text", value, ptr, false);
        } else {
            emit(c, "(%s %s $%d::text)", f->sql, cmp, param(c, json_copy(value)));
        }
        break;
    }
    case FT_JSON: {
        char *text;
        if (strcmp(op, "in") == 0) {
            if (!json_is_array(value) || json_array_size(value) == 0 ||
                json_array_size(value) > SEGMENT_MAX_IN) {
                fail(c, ptr, "value", "'in' needs an array of 1 to %d values", SEGMENT_MAX_IN);
                break;
            }
            text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            emit(c, "(%s IN (SELECT jsonb_array_elements($%d::jsonb)))", f->sql,
                 param(c, json_string(text)));
        } else {
            text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            if (strcmp(op, "contains") == 0) /* array attribute holds the value */
                emit(c, "(%s @> jsonb_build_array($%d::jsonb))", f->sql,
                     param(c, json_string(text)));
            else
                emit(c, "(%s %s $%d::jsonb)", f->sql, cmp, param(c, json_string(text)));
        }
        free(text);
        break;
    }
    case FT_TIME:
    case FT_DATE:
        if (strcmp(op, "within_last_days") == 0 || strcmp(op, "not_within_last_days") == 0) {
            char days[32];
            if (!json_is_integer(value) || json_integer_value(value) < 1 ||
                json_integer_value(value) > 36500) {
                fail(c, ptr, "value", "'%s' takes a whole number of days from 1 to 36500", op);
                break;
            }
            snprintf(days, sizeof(days), "%lld", (long long)json_integer_value(value));
            if (op[0] == 'n') /* a missing time is "not within" too */
                emit(c, "(%s < now() - make_interval(days => $%d::int) OR %s IS NULL)", f->sql,
                     param(c, json_string(days)), f->sql);
            else
                emit(c, "(%s >= now() - make_interval(days => $%d::int))", f->sql,
                     param(c, json_string(days)));
        } else if (!json_is_string(value) ||
                   (f->type == FT_TIME ? !rfc3339_valid(json_string_value(value))
                                       : !date_valid(json_string_value(value), 1900, 2999))) {
            fail(c, ptr, "value", "'value' for %s must be %s", f->name,
                 f->type == FT_TIME ? "an RFC 3339 timestamp with offset" : "a date YYYY-MM-DD");
        } else {
            emit(c, "(%s %s $%d::%s)", f->sql, cmp, param(c, json_copy(value)),
                 f->type == FT_TIME ? "timestamptz" : "date");
        }
        break;
    }
}

static void compile_need(struct compiler *c, json_t *node, const char *ptr)
{
    static const char *const allowed[] = {"need", "min_count", "within_days", NULL};
    json_t *nv = json_object_get(node, "need");
    long min_count, within;
    char buf[32];
    if (!only_keys(c, node, ptr, allowed))
        return;
    if (!clean_string(nv) || json_string_length(nv) == 0 || json_string_length(nv) > 64) {
        fail(c, ptr, "need", "'need' must be a string of 1 to 64 characters");
        return;
    }
    min_count = small_int(c, node, "min_count", ptr, 1000000);
    within = small_int(c, node, "within_days", ptr, 36500);
    if (min_count == -2 || within == -2)
        return;
    char *lower = strdup(json_string_value(nv));
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    int np = param(c, json_string(lower));
    free(lower);
    /* derived needs change with interactions, declared ones with traits:
     * the feed marks both as needs changes (membership.sql) */
    c->deps |= SEG_DEP_NEEDS | (within > 0 ? SEG_DEP_TIME : 0);
    emit(c, "(EXISTS (SELECT 1 FROM crm.customer_needs n WHERE n.customer_id = c.customer_id "
            "AND n.need = $%d",
         np);
    if (min_count > 0) {
        snprintf(buf, sizeof(buf), "%ld", min_count);
        emit(c, " AND n.n >= $%d::bigint", param(c, json_string(buf)));
    }
    if (within > 0) {
        snprintf(buf, sizeof(buf), "%ld", within);
        emit(c, " AND n.last_at >= now() - make_interval(days => $%d::int)",
             param(c, json_string(buf)));
    }
    emit(c, ")");
    if (min_count <= 0 && within <= 0) /* declared interests count when no count/window asked */
        emit(c, " OR EXISTS (SELECT 1 FROM crm.traits t WHERE t.customer_id = c.customer_id "
                "AND t.name = 'attributes.interests' AND jsonb_typeof(t.value) = 'array' "
                "AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(t.value) e "
                "WHERE lower(e) = $%d))",
             np);
    emit(c, ")");
}

static void compile_interaction(struct compiler *c, json_t *node, const char *ptr)
{
    static const char *const outer[] = {"interaction", NULL};
    static const char *const allowed[] = {"type", "channel", "tag", "within_days", "min_count", NULL};
    json_t *spec = json_object_get(node, "interaction"), *v;
    char iptr[200], buf[32];
    long min_count, within;
    if (!only_keys(c, node, ptr, outer))
        return;
    snprintf(iptr, sizeof(iptr), "%s/interaction", ptr);
    if (!json_is_object(spec)) {
        fail(c, ptr, "interaction", "'interaction' must be an object");
        return;
    }
    if (!only_keys(c, spec, iptr, allowed))
        return;
    v = json_object_get(spec, "type");
    if (v != NULL && (!json_is_string(v) || !interaction_type_valid(json_string_value(v)))) {
        fail(c, iptr, "type", "'type' must be one of: %s", interaction_type_list());
        return;
    }
    v = json_object_get(spec, "channel");
    if (v != NULL && (!json_is_string(v) || !channel_valid(json_string_value(v)))) {
        fail(c, iptr, "channel", "'channel' must be one of: %s", channel_list());
        return;
    }
    v = json_object_get(spec, "tag");
    if (v != NULL && (!clean_string(v) || json_string_length(v) == 0 ||
                      json_string_length(v) > 64)) {
        fail(c, iptr, "tag", "'tag' must be a string of 1 to 64 characters");
        return;
    }
    min_count = small_int(c, spec, "min_count", iptr, 1000000);
    within = small_int(c, spec, "within_days", iptr, 36500);
    if (min_count == -2 || within == -2)
        return;
    c->deps |= SEG_DEP_INTERACTIONS | (within > 0 ? SEG_DEP_TIME : 0);
    /* min_count 1 is an EXISTS, which the planner can run as a semi-join;
     * more needs a bounded count per customer. */
    if (min_count > 1)
        emit(c, "((SELECT count(*) FROM (SELECT 1 FROM crm.interactions i "
                "WHERE i.customer_id = c.customer_id");
    else
        emit(c, "(EXISTS (SELECT 1 FROM crm.interactions i WHERE i.customer_id = c.customer_id");
    if ((v = json_object_get(spec, "type")) != NULL)
        emit(c, " AND i.type = $%d", param(c, json_copy(v)));
    if ((v = json_object_get(spec, "channel")) != NULL)
        emit(c, " AND i.channel = $%d", param(c, json_copy(v)));
    if ((v = json_object_get(spec, "tag")) != NULL) { /* tags are stored lower-cased */
        char *lower = strdup(json_string_value(v));
        for (char *p = lower; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        emit(c, " AND $%d = ANY (i.tags)", param(c, json_string(lower)));
        free(lower);
    }
    if (within > 0) {
        snprintf(buf, sizeof(buf), "%ld", within);
        emit(c, " AND i.occurred_at >= now() - make_interval(days => $%d::int)",
             param(c, json_string(buf)));
    }
    if (min_count > 1) {
        snprintf(buf, sizeof(buf), "%ld", min_count);
        int np = param(c, json_string(buf));
        emit(c, " LIMIT $%d::bigint) AS hits) >= $%d::bigint)", np, np);
    } else {
        emit(c, "))");
    }
}

static void compile_node(struct compiler *c, json_t *node, const char *ptr, int depth)
{
    static const char *const forms[] = {"all", "any", "not", "field", "need", "interaction",
                                        "has_identifier", NULL};
    char child[256];
    if (++c->nodes > SEGMENT_MAX_NODES) {
        if (c->nodes == SEGMENT_MAX_NODES + 1)
            fail(c, ptr, NULL, "rule has more than %d nodes", SEGMENT_MAX_NODES);
        return;
    }
    if (depth > SEGMENT_MAX_DEPTH) {
        fail(c, ptr, NULL, "rule is nested deeper than %d levels", SEGMENT_MAX_DEPTH);
        return;
    }
    if (!json_is_object(node)) {
        fail(c, ptr, NULL, "a rule must be an object with one of: all, any, not, field, need, "
                           "interaction, has_identifier");
        return;
    }
    if (json_object_get(node, "all") || json_object_get(node, "any")) {
        bool all = json_object_get(node, "all") != NULL;
        const char *key = all ? "all" : "any";
        json_t *list = json_object_get(node, key), *item;
        static const char *const only_all[] = {"all", NULL}, *const only_any[] = {"any", NULL};
        size_t i;
        if (!only_keys(c, node, ptr, all ? only_all : only_any))
            return;
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 100) {
            fail(c, ptr, key, "'%s' must be an array of 1 to 100 rules", key);
            return;
        }
        emit(c, "(");
        json_array_foreach(list, i, item) {
            if (i > 0)
                emit(c, all ? " AND " : " OR ");
            snprintf(child, sizeof(child), "%s/%s/%zu", ptr, key, i);
            compile_node(c, item, child, depth + 1);
        }
        emit(c, ")");
    } else if (json_object_get(node, "not")) {
        static const char *const only_not[] = {"not", NULL};
        if (!only_keys(c, node, ptr, only_not))
            return;
        snprintf(child, sizeof(child), "%s/not", ptr);
        emit(c, "(NOT coalesce(");
        compile_node(c, json_object_get(node, "not"), child, depth + 1);
        emit(c, ", false))");
    } else if (json_object_get(node, "field")) {
        compile_field(c, node, ptr);
    } else if (json_object_get(node, "need")) {
        compile_need(c, node, ptr);
    } else if (json_object_get(node, "interaction")) {
        compile_interaction(c, node, ptr);
    } else if (json_object_get(node, "has_identifier")) {
        static const char *const only_id[] = {"has_identifier", NULL};
        json_t *k = json_object_get(node, "has_identifier");
        enum id_kind kind;
        if (!only_keys(c, node, ptr, only_id))
            return;
        if (!json_is_string(k) || !id_kind_parse(json_string_value(k), &kind)) {
            fail(c, ptr, "has_identifier", "'has_identifier' must be one of: %s", id_kind_list());
            return;
        }
        c->deps |= SEG_DEP_IDENTIFIERS;
        emit(c, "(EXISTS (SELECT 1 FROM crm.identifiers d WHERE d.customer_id = c.customer_id "
                "AND d.kind = $%d))",
             param(c, json_copy(k)));
    } else {
        char known[160];
        ops_text(forms, known, sizeof(known));
        fail(c, ptr, NULL, "a rule must have one of: %s", known);
    }
}

bool segment_compile(json_t *rule, const char *prefix, struct segment_sql *out, json_t *errors)
{
    struct compiler c = {.params = json_array(), .errors = errors, .ok = true};
    jsontext_init(&c.sql);
    compile_node(&c, rule, prefix, 1);
    if (!c.ok) {
        jsontext_free(&c.sql);
        json_decref(c.params);
        out->where = NULL;
        out->params = NULL;
        out->depends = 0;
        return false;
    }
    out->where = jsontext_take(&c.sql);
    out->params = c.params;
    out->depends = c.deps;
    return true;
}

static const char *const DEP_NAMES[SEG_DEP_COUNT] = {
    "interactions", "traits", "needs", "value", "identifiers", "customer", "consents",
    "preferences", "time", "stage"};

const char *segment_dep_name(int i)
{
    return i >= 0 && i < SEG_DEP_COUNT ? DEP_NAMES[i] : NULL;
}

json_t *segment_depends_json(unsigned mask)
{
    json_t *out = json_array();
    for (int i = 0; i < SEG_DEP_COUNT; i++)
        if (mask & (1u << i))
            json_array_append_new(out, json_string(DEP_NAMES[i]));
    return out;
}

char *segment_stored_condition(const char *where)
{
    struct jsontext out;
    const char *p = where;
    jsontext_init(&out);
    while (*p != '\0') {
        size_t n = strcspn(p, "$");
        if (n > 0)
            jsontext_printf(&out, "%.*s", (int)n, p);
        p += n;
        if (*p == '$') {
            size_t digits = strspn(p + 1, "0123456789");
            if (digits == 0) { /* not a parameter: the fragments have none, kept as is */
                jsontext_raw(&out, "$");
                p++;
            } else {
                jsontext_printf(&out, "($1[%.*s])", (int)digits, p + 1);
                p += 1 + digits;
            }
        }
    }
    return jsontext_take(&out);
}

void segment_sql_free(struct segment_sql *out)
{
    free(out->where);
    json_decref(out->params);
    out->where = NULL;
    out->params = NULL;
    out->depends = 0;
}

/* ---- audience fields --------------------------------------------------- */

#define TRAIT_TEXT(name)                                                                  \
    "(SELECT t.value #>> '{}' FROM crm.traits t WHERE t.customer_id = c.customer_id "     \
    "AND t.name = '" name "')"

static const struct audience_field AUDIENCE_FIELDS[] = {
    {"email", true, "crm.customer_address(c.customer_id, 'email')"},
    {"phone", true, "crm.customer_address(c.customer_id, 'phone')"},
    {"device", true, "crm.customer_address(c.customer_id, 'device')"},
    {"first_name", true, TRAIT_TEXT("first_name")},
    {"last_name", true, TRAIT_TEXT("last_name")},
    {"birthday", true, TRAIT_TEXT("birthday")},
    {"value.clv", false, "trim_scale(v.clv)"},
    {"value.tier", false, "v.tier"},
    {"value.churn_risk", false, "(1 - v.p_alive)"},
    {"value.p_alive", false, "v.p_alive"},
    {"value.margin", false, "trim_scale(v.margin)"},
    {"value.rfm", false,
     "CASE WHEN v.rfm_r IS NULL THEN NULL ELSE v.rfm_r::text || v.rfm_f::text || v.rfm_m::text END"},
};
/* The same names, for name_list_text (a test checks they match). */
static const char *const AUDIENCE_NAMES[] = {
    "email", "phone", "device", "first_name", "last_name", "birthday", "value.clv",
    "value.tier", "value.churn_risk", "value.p_alive", "value.margin", "value.rfm", NULL};
static struct name_list AUDIENCE_FIELD_NAMES = {.names = AUDIENCE_NAMES};
#define AUDIENCE_FIELD_COUNT ((int)(sizeof(AUDIENCE_FIELDS) / sizeof(AUDIENCE_FIELDS[0])))
_Static_assert(sizeof(AUDIENCE_NAMES) / sizeof(AUDIENCE_NAMES[0]) ==
                   sizeof(AUDIENCE_FIELDS) / sizeof(AUDIENCE_FIELDS[0]) + 1,
               "one name per audience field");
_Static_assert(sizeof(AUDIENCE_FIELDS) / sizeof(AUDIENCE_FIELDS[0]) <= AUDIENCE_FIELDS_MAX,
               "audience fields must fit the bit set");

const struct audience_field *audience_field_at(int i)
{
    return i >= 0 && i < AUDIENCE_FIELD_COUNT ? &AUDIENCE_FIELDS[i] : NULL;
}

int audience_field_count(void)
{
    return AUDIENCE_FIELD_COUNT;
}

const char *audience_field_list(void)
{
    return name_list_text(&AUDIENCE_FIELD_NAMES);
}

bool audience_fields_parse(const char *text, unsigned int *mask, char *err, size_t errlen)
{
    const char *p = text;
    *mask = 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < AUDIENCE_FIELD_COUNT; i++)
            if (strlen(AUDIENCE_FIELDS[i].name) == n &&
                memcmp(AUDIENCE_FIELDS[i].name, p, n) == 0)
                found = i;
        if (found < 0) {
            if (n == 0)
                snprintf(err, errlen, "fields has an empty name; give comma-separated names "
                                      "of: %s", audience_field_list());
            else
                snprintf(err, errlen, "unknown field '%.*s' in fields; known: %s",
                         (int)(n > 64 ? 64 : n), p, audience_field_list());
            return false;
        }
        if (*mask & (1u << found)) {
            snprintf(err, errlen, "field '%s' is given twice in fields", AUDIENCE_FIELDS[found].name);
            return false;
        }
        *mask |= 1u << found;
        if (p[n] == '\0')
            return true;
        p += n + 1;
    }
}

bool audience_fields_have_contact(unsigned int mask)
{
    for (int i = 0; i < AUDIENCE_FIELD_COUNT; i++)
        if ((mask & (1u << i)) && AUDIENCE_FIELDS[i].contact)
            return true;
    return false;
}

const char *channel_address_kind(const char *channel)
{
    static const char *const map[][2] = {
        {"email", "email"}, {"sms", "phone"}, {"phone", "phone"}, {"app", "device"}};
    for (size_t i = 0; channel != NULL && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], channel) == 0)
            return map[i][1];
    return NULL;
}
