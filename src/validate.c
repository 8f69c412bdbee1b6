/*
 * validate: request-body rules for customers:resolve, traits patches and
 * interactions (single and batch). Every error names the offending field by
 * JSON pointer; nothing is written to the database until a request (or a
 * batch item) is valid as a whole. Field rules are listed in docs/api.md.
 */
#include "validate.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "problem.h"
#include "textutil.h"

static const char *const CHANNELS[] = {"web", "app", "email", "sms", "phone", "chat",
                                       "social", "store", "partner", NULL};
static const char *const TYPES[] = {"purchase", "return", "exchange", "complaint", "feedback",
                                    "review", "support_call", "inquiry", "visit", "page_view",
                                    "cart", "outbound_message", NULL};

/* Scores are facts of the interaction that asked for them: a survey answer
 * (feedback), a review's stars, the rating after a service call. Other
 * types carry none, so that a purchase cannot count as a survey response. */
static const char *const SCORED_TYPES[] = {"feedback", "review", "support_call", NULL};
static const struct score_kind SCORES[SCORE_KINDS] = {
    [SCORE_NPS] = {"nps", 0, 10},
    [SCORE_CSAT] = {"csat", 1, 5},
    [SCORE_CES] = {"ces", 1, 7},
};

bool name_in_list(const char *const *list, const char *name)
{
    for (int i = 0; name != NULL && list[i] != NULL; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

bool channel_valid(const char *name)
{
    return name_in_list(CHANNELS, name);
}

bool interaction_type_valid(const char *name)
{
    return name_in_list(TYPES, name);
}

const char *channel_list(void)
{
    static struct name_list names = {.names = CHANNELS};
    return name_list_text(&names);
}

/* What a detach does with the identifier (docs/identity.md): the CHECK of
 * crm.identifier_detachments.mode and the DetachMode enum (test_enums). */
static const char *const DETACH_MODES[] = {"move", "delete", NULL};

bool detach_mode_valid(const char *name)
{
    return name_in_list(DETACH_MODES, name);
}

const char *detach_mode_list(void)
{
    static struct name_list names = {.names = DETACH_MODES};
    return name_list_text(&names);
}

const char *interaction_type_list(void)
{
    static struct name_list names = {.names = TYPES};
    return name_list_text(&names);
}

const struct score_kind *score_kind(int i)
{
    return i >= 0 && i < SCORE_KINDS ? &SCORES[i] : NULL;
}

bool scored_type(const char *type)
{
    return name_in_list(SCORED_TYPES, type);
}

const char *scored_type_list(void)
{
    static struct name_list names = {.names = SCORED_TYPES};
    return name_list_text(&names);
}

bool interaction_has_scores(const struct interaction_request *req)
{
    for (int k = 0; k < SCORE_KINDS; k++)
        if (req->scores[k] >= 0)
            return true;
    return false;
}

bool reject_unknown_fields(json_t *obj, const char *const *allowed, const char *prefix,
                           json_t *errors)
{
    const char *key;
    json_t *v;
    bool ok = true;
    json_object_foreach(obj, key, v) {
        if (!name_in_list(allowed, key)) {
            verr_add(errors, prefix, key, "unknown field '%s'", key);
            ok = false;
        }
    }
    return ok;
}

/* A required (or optional) string of 1..max bytes; returns NULL when absent/invalid. */
static const char *string_field(json_t *obj, const char *key, bool required, size_t max,
                                const char *prefix, json_t *errors, bool *ok)
{
    json_t *v = json_object_get(obj, key);
    size_t len;
    if (v == NULL) {
        if (required) {
            verr_add(errors, prefix, key, "'%s' is required", key);
            *ok = false;
        }
        return NULL;
    }
    if (!json_is_string(v)) {
        verr_add(errors, prefix, key, "'%s' must be a string", key);
        *ok = false;
        return NULL;
    }
    len = json_string_length(v);
    if (len == 0 || strlen(json_string_value(v)) != len || utf8_length(json_string_value(v)) > max) {
        verr_add(errors, prefix, key, "'%s' must be 1 to %zu characters without NUL", key, max);
        *ok = false;
        return NULL;
    }
    return json_string_value(v);
}

bool validate_identifier(json_t *item, const char *ptr, struct identifier *out, json_t *errors)
{
    static const char *const allowed[] = {"kind", "namespace", "value", NULL};
    json_t *kind_v, *ns_v, *value_v;
    enum id_kind kind;
    char err[160];
    bool ns_bad = false;
    bool item_ok;

    if (!json_is_object(item)) {
        verr_add(errors, ptr, NULL, "identifier must be an object {kind, value}");
        return false;
    }
    item_ok = reject_unknown_fields(item, allowed, ptr, errors);
    kind_v = json_object_get(item, "kind");
    ns_v = json_object_get(item, "namespace");
    value_v = json_object_get(item, "value");
    if (!json_is_string(kind_v) || !id_kind_parse(json_string_value(kind_v), &kind)) {
        verr_add(errors, ptr, "kind", "'kind' must be one of: %s", id_kind_list());
        item_ok = false;
    }
    if (ns_v != NULL && !json_is_string(ns_v)) {
        verr_add(errors, ptr, "namespace", "'namespace' must be a string");
        item_ok = false;
    }
    if (!json_is_string(value_v)) {
        verr_add(errors, ptr, "value", "'value' must be a string");
        item_ok = false;
    }
    if (!item_ok)
        return false;
    if (!identifier_normalize(kind, ns_v ? json_string_value(ns_v) : NULL,
                              json_string_value(value_v), out, err, sizeof(err), &ns_bad)) {
        verr_add(errors, ptr, ns_bad ? "namespace" : "value", "%s", err);
        return false;
    }
    return true;
}

static bool validate_identifiers(json_t *arr, const char *prefix, struct identifier_list *out,
                                 json_t *errors)
{
    char ptr[128];
    size_t i;
    json_t *item;
    bool ok = true;

    out->count = 0;
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > MAX_IDENTIFIERS) {
        verr_add(errors, prefix, "identifiers", "'identifiers' must be an array of 1 to %d objects",
                 MAX_IDENTIFIERS);
        return false;
    }
    json_array_foreach(arr, i, item) {
        snprintf(ptr, sizeof(ptr), "%s/identifiers/%zu", prefix, i);
        if (validate_identifier(item, ptr, &out->items[out->count], errors))
            out->count++;
        else
            ok = false;
    }
    return ok;
}

bool validate_traits(json_t *traits, const char *prefix, json_t *errors)
{
    char ptr[128];
    const char *key;
    json_t *v;
    bool ok = true;
    snprintf(ptr, sizeof(ptr), "%s/traits", prefix);
    if (!json_is_object(traits)) {
        verr_add(errors, prefix, "traits", "'traits' must be an object");
        return false;
    }
    json_object_foreach(traits, key, v) {
        if (strcmp(key, "first_name") == 0 || strcmp(key, "last_name") == 0 ||
            strcmp(key, "gender") == 0) {
            size_t max = strcmp(key, "gender") == 0 ? 50 : 200;
            if (!json_is_null(v) && (!json_is_string(v) || json_string_length(v) == 0 ||
                                     utf8_length(json_string_value(v)) > max)) {
                verr_add(errors, ptr, key, "'%s' must be a string of 1 to %zu characters or null",
                         key, max);
                ok = false;
            }
        } else if (strcmp(key, "birthday") == 0) {
            if (!json_is_null(v) &&
                (!json_is_string(v) || !date_valid(json_string_value(v), 1900, 2999))) {
                verr_add(errors, ptr, key, "'birthday' must be a real date YYYY-MM-DD or null");
                ok = false;
            }
        } else if (strcmp(key, "address") == 0) {
            if (!json_is_null(v) && !json_is_object(v)) {
                verr_add(errors, ptr, key, "'address' must be an object or null");
                ok = false;
            }
        } else if (strcmp(key, "attributes") == 0) {
            const char *akey;
            json_t *av;
            if (json_is_null(v))
                continue;
            if (!json_is_object(v)) {
                verr_add(errors, ptr, key, "'attributes' must be an object or null");
                ok = false;
                continue;
            }
            json_object_foreach(v, akey, av) {
                size_t len = utf8_length(akey);
                if (len == 0 || len > 64) {
                    char aptr[160];
                    snprintf(aptr, sizeof(aptr), "%s/attributes", ptr);
                    verr_add(errors, aptr, akey, "attribute names must be 1 to 64 characters");
                    ok = false;
                }
            }
        } else {
            verr_add(errors, ptr, key,
                     "unknown trait '%s' (known: first_name, last_name, birthday, gender, "
                     "address, attributes)", key);
            ok = false;
        }
    }
    return ok;
}

bool validate_resolve(json_t *body, struct resolve_request *out, json_t *errors)
{
    static const char *const allowed[] = {"identifiers", "traits", "source", NULL};
    bool ok = reject_unknown_fields(body, allowed, "", errors);
    json_t *traits = json_object_get(body, "traits");
    memset(out, 0, sizeof(*out));
    out->source = string_field(body, "source", true, SOURCE_MAX, "", errors, &ok);
    ok = validate_identifiers(json_object_get(body, "identifiers"), "", &out->ids, errors) && ok;
    if (traits != NULL) {
        ok = validate_traits(traits, "", errors) && ok;
        out->traits = traits;
    }
    return ok;
}

bool validate_traits_request(json_t *body, struct traits_request *out, json_t *errors)
{
    static const char *const allowed[] = {"traits", "source", NULL};
    bool ok = reject_unknown_fields(body, allowed, "", errors);
    json_t *traits = json_object_get(body, "traits");
    memset(out, 0, sizeof(*out));
    out->source = string_field(body, "source", true, SOURCE_MAX, "", errors, &ok);
    if (traits == NULL) {
        verr_add(errors, "", "traits", "'traits' is required");
        return false;
    }
    ok = validate_traits(traits, "", errors) && ok;
    out->traits = traits;
    return ok;
}

bool money_text(json_t *v, char *out, size_t cap, const char **why)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n >= 1000000000000LL) {
            *why = "must be >= 0 and < 1e12";
            return false;
        }
        snprintf(out, cap, "%lld", (long long)n);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d >= 1e12) {
            *why = "must be >= 0 and < 1e12";
            return false;
        }
        snprintf(out, cap, "%.4f", d == 0 ? 0.0 : d); /* -0.0 prints as "-0.0000" */
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        const char *dot = strchr(s, '.');
        size_t int_len = dot ? (size_t)(dot - s) : strlen(s);
        size_t frac_len = dot ? strlen(dot + 1) : 0;
        bool digits_only = true;
        for (const char *p = s; *p; p++)
            if (!isdigit((unsigned char)*p) && p != dot)
                digits_only = false;
        if (!digits_only || int_len < 1 || int_len > 12 || (dot && (frac_len < 1 || frac_len > 4))) {
            *why = "must be a decimal string like \"12.50\" (up to 12 integer and 4 fraction digits)";
            return false;
        }
        snprintf(out, cap, "%s", s);
        return true;
    }
    *why = "must be a number or a decimal string";
    return false;
}

static bool currency_valid(const char *s)
{
    return strlen(s) == 3 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]) &&
           isupper((unsigned char)s[2]);
}

static bool validate_tags(json_t *tags, const char *prefix, struct interaction_request *out,
                          json_t *errors)
{
    size_t i;
    json_t *t;
    bool ok = true;
    char ptr[160];
    snprintf(ptr, sizeof(ptr), "%s/tags", prefix);
    if (!json_is_array(tags) || json_array_size(tags) > MAX_TAGS) {
        verr_add(errors, prefix, "tags", "'tags' must be an array of at most %d strings", MAX_TAGS);
        return false;
    }
    json_array_foreach(tags, i, t) {
        char lower[65];
        size_t len, k;
        bool dup = false;
        json_t *seen;
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        if (!json_is_string(t) || (len = json_string_length(t)) == 0 || len > 64 ||
            strlen(json_string_value(t)) != len) { /* tags: 1..64 bytes */
            verr_add(errors, ptr, idx, "each tag must be a string of 1 to 64 characters");
            ok = false;
            continue;
        }
        for (k = 0; k <= len; k++)
            lower[k] = (char)tolower((unsigned char)json_string_value(t)[k]);
        json_array_foreach(out->tags, k, seen)
            if (strcmp(json_string_value(seen), lower) == 0)
                dup = true;
        if (!dup)
            json_array_append_new(out->tags, json_string(lower));
    }
    return ok;
}

/* scores: {nps?, csat?, ces?}, each an integer in its kind's range or null
 * (not given). Whether the type may carry them is checked by the caller. */
static bool validate_scores(json_t *scores, const char *prefix, struct interaction_request *out,
                            json_t *errors)
{
    static const char *const allowed[] = {"nps", "csat", "ces", NULL};
    char ptr[160];
    bool ok;
    if (!json_is_object(scores)) {
        verr_add(errors, prefix, "scores", "'scores' must be an object {nps?, csat?, ces?}");
        return false;
    }
    snprintf(ptr, sizeof(ptr), "%s/scores", prefix);
    ok = reject_unknown_fields(scores, allowed, ptr, errors);
    for (int k = 0; k < SCORE_KINDS; k++) {
        const struct score_kind *sk = &SCORES[k];
        json_t *v = json_object_get(scores, sk->name);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < sk->min ||
            json_integer_value(v) > sk->max) {
            verr_add(errors, ptr, sk->name, "'%s' must be an integer from %d to %d", sk->name,
                     sk->min, sk->max);
            ok = false;
            continue;
        }
        out->scores[k] = (int)json_integer_value(v);
    }
    return ok;
}

bool validate_interaction(json_t *obj, const char *prefix, struct interaction_request *out,
                          json_t *errors)
{
    static const char *const allowed[] = {
        "customer_id", "identifiers", "source", "external_id", "channel", "type", "occurred_at",
        "amount", "currency", "cost", "tags", "payload", "scores", "case_id", NULL};
    json_t *cid, *ids, *v;
    bool ok;

    memset(out, 0, sizeof(*out));
    for (int k = 0; k < SCORE_KINDS; k++)
        out->scores[k] = -1;
    out->tags = json_array();
    if (!json_is_object(obj)) {
        verr_add(errors, prefix, NULL, "interaction must be a JSON object");
        return false;
    }
    ok = reject_unknown_fields(obj, allowed, prefix, errors);

    cid = json_object_get(obj, "customer_id");
    ids = json_object_get(obj, "identifiers");
    if ((cid == NULL) == (ids == NULL)) {
        verr_add(errors, prefix, cid ? "identifiers" : "customer_id",
                 "give exactly one of 'customer_id' and 'identifiers'");
        ok = false;
    } else if (cid != NULL) {
        if (!json_is_string(cid) || !uuid_canonical(json_string_value(cid), out->customer_id)) {
            verr_add(errors, prefix, "customer_id", "'customer_id' must be a UUID");
            ok = false;
        }
        out->by_customer_id = true;
    } else {
        ok = validate_identifiers(ids, prefix, &out->ids, errors) && ok;
    }

    out->source = string_field(obj, "source", true, SOURCE_MAX, prefix, errors, &ok);
    out->external_id = string_field(obj, "external_id", true, EXTERNAL_ID_MAX, prefix, errors, &ok);

    v = json_object_get(obj, "channel");
    if (json_is_string(v) && !channel_valid(json_string_value(v))) {
        verr_add(errors, prefix, "channel", "unknown channel '%.64s' (one of: %s)",
                 json_string_value(v), channel_list());
        ok = false;
    } else {
        out->channel = string_field(obj, "channel", true, 32, prefix, errors, &ok);
    }
    v = json_object_get(obj, "type");
    if (v != NULL && json_is_string(v) && !interaction_type_valid(json_string_value(v))) {
        verr_add(errors, prefix, "type", "unknown type '%.64s' (one of: %s)", json_string_value(v),
                 interaction_type_list());
        ok = false;
    } else {
        out->type = string_field(obj, "type", true, 32, prefix, errors, &ok);
    }

    out->occurred_at = string_field(obj, "occurred_at", true, 64, prefix, errors, &ok);
    if (out->occurred_at != NULL && !rfc3339_valid(out->occurred_at)) {
        verr_add(errors, prefix, "occurred_at",
                 "'occurred_at' must be an RFC 3339 timestamp with offset, year 1900..2999");
        ok = false;
    }

    if ((v = json_object_get(obj, "amount")) != NULL && !json_is_null(v)) {
        const char *why;
        if (!money_text(v, out->amount, sizeof(out->amount), &why)) {
            verr_add(errors, prefix, "amount", "'amount' %s", why);
            ok = false;
        }
        out->has_amount = true;
    }
    if ((v = json_object_get(obj, "cost")) != NULL && !json_is_null(v)) {
        const char *why;
        if (!money_text(v, out->cost, sizeof(out->cost), &why)) {
            verr_add(errors, prefix, "cost", "'cost' %s", why);
            ok = false;
        }
        out->has_cost = true;
    }
    v = json_object_get(obj, "currency");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || !currency_valid(json_string_value(v))) {
            verr_add(errors, prefix, "currency",
                     "'currency' must be an ISO 4217 code of three upper-case letters");
            ok = false;
        } else {
            memcpy(out->currency, json_string_value(v), 4);
        }
    } else if (out->has_amount || out->has_cost) {
        verr_add(errors, prefix, "currency", "'currency' is required with 'amount' or 'cost'");
        ok = false;
    }

    if ((v = json_object_get(obj, "tags")) != NULL)
        ok = validate_tags(v, prefix, out, errors) && ok;
    if ((v = json_object_get(obj, "payload")) != NULL) {
        if (!json_is_object(v)) {
            verr_add(errors, prefix, "payload", "'payload' must be an object");
            ok = false;
        } else {
            out->payload = v;
        }
    }
    if ((v = json_object_get(obj, "case_id")) != NULL && !json_is_null(v) &&
        (!json_is_string(v) || !uuid_canonical(json_string_value(v), out->case_id))) {
        verr_add(errors, prefix, "case_id", "'case_id' must be the UUID of a case");
        out->case_id[0] = '\0';
        ok = false;
    }
    if ((v = json_object_get(obj, "scores")) != NULL && !json_is_null(v)) {
        ok = validate_scores(v, prefix, out, errors) && ok;
        if (interaction_has_scores(out) && out->type != NULL && !scored_type(out->type)) {
            verr_add(errors, prefix, "scores",
                     "scores are accepted on interactions of type %s only, not '%.64s'",
                     scored_type_list(), out->type);
            ok = false;
        }
    }
    return ok;
}

void interaction_request_clear(struct interaction_request *req)
{
    json_decref(req->tags);
    req->tags = NULL;
}

bool validate_batch_envelope(json_t *body, json_t **items, json_t *errors)
{
    static const char *const allowed[] = {"items", NULL};
    bool ok = reject_unknown_fields(body, allowed, "", errors);
    json_t *arr = json_object_get(body, "items");
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > MAX_BATCH_ITEMS) {
        verr_add(errors, "", "items", "'items' must be an array of 1 to %d interactions",
                 MAX_BATCH_ITEMS);
        return false;
    }
    *items = arr;
    return ok;
}

bool identifier_raw_differs(const struct identifier *id)
{
    const char *r = id->raw, *end;
    size_t n;
    if (r == NULL)
        return false;
    while (*r && isspace((unsigned char)*r))
        r++;
    end = r + strlen(r);
    while (end > r && isspace((unsigned char)end[-1]))
        end--;
    n = (size_t)(end - r);
    if (n != strlen(id->value))
        return true;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)r[i]) != tolower((unsigned char)id->value[i]))
            return true;
    return false;
}

json_t *identifiers_to_db_json(const struct identifier_list *ids)
{
    json_t *arr = identifiers_to_json(ids);
    for (int i = 0; i < ids->count; i++)
        if (identifier_raw_differs(&ids->items[i]))
            json_object_set_new(json_array_get(arr, (size_t)i), "raw",
                                json_string(ids->items[i].raw));
    return arr;
}

json_t *identifiers_to_json(const struct identifier_list *ids)
{
    json_t *arr = json_array();
    for (int i = 0; i < ids->count; i++) {
        const struct identifier *id = &ids->items[i];
        json_t *o = json_pack("{s:s, s:s}", "kind", id_kind_name(id->kind), "value", id->value);
        if (id->namespace_[0] != '\0')
            json_object_set_new(o, "namespace", json_string(id->namespace_));
        json_array_append_new(arr, o);
    }
    return arr;
}

const struct value_setting VALUE_SETTINGS[] = {
    {"base_currency", VS_CURRENCY, 0, 0},
    {"clv_horizon_weeks", VS_INTEGER, 1, 520},
    {"clv_margin", VS_NUMBER, 0, 1},
    {"tier_mvc_fraction", VS_NUMBER, 0, 1},
    {"tier_mgc_fraction", VS_NUMBER, 0, 1},
    {"tier_mgc_min_p_alive", VS_NUMBER, 0, 1},
    {"tier_bz_return_ratio", VS_NUMBER, 0, 100},
    {"value_snapshot_retention_days", VS_INTEGER, 1, 36500},
    /* the journey stage (docs/stage.md); stage_at_risk_days < stage_lapsed_days
     * is checked against the stored values too (crm.patch_value_settings) */
    {"stage_onboarding_days", VS_INTEGER, 1, 3650},
    {"stage_at_risk_days", VS_INTEGER, 1, 3650},
    {"stage_at_risk_churn", VS_NUMBER, 0, 1},
    {"stage_lapsed_days", VS_INTEGER, 2, 3651},
    {"stage_won_back_days", VS_INTEGER, 1, 3650},
    {"stage_during_hours", VS_INTEGER, 1, 720},
    {NULL, VS_NUMBER, 0, 0},
};

void validate_value_settings_patch(json_t *body, json_t *errors)
{
    const char *key;
    json_t *v;
    if (json_object_size(body) == 0) {
        verr_add(errors, "", "", "the body must name at least one setting");
        return;
    }
    json_object_foreach(body, key, v) {
        const struct value_setting *vs = NULL;
        for (int i = 0; VALUE_SETTINGS[i].name != NULL && vs == NULL; i++)
            if (strcmp(VALUE_SETTINGS[i].name, key) == 0)
                vs = &VALUE_SETTINGS[i];
        if (vs == NULL) {
            verr_add(errors, "", key, "'%s' is not a value setting", key);
        } else if (vs->kind == VS_CURRENCY) {
            const char *c = json_string_value(v);
            if (c == NULL || strlen(c) != 3 || !isupper((unsigned char)c[0]) ||
                !isupper((unsigned char)c[1]) || !isupper((unsigned char)c[2]))
                verr_add(errors, "", key, "'%s' must be an ISO 4217 code (3 capital letters)",
                         key);
        } else if ((vs->kind == VS_INTEGER && !json_is_integer(v)) || !json_is_number(v) ||
                   json_number_value(v) < vs->min || json_number_value(v) > vs->max) {
            verr_add(errors, "", key, "'%s' must be %s from %g to %g", key,
                     vs->kind == VS_INTEGER ? "an integer" : "a number", vs->min, vs->max);
        }
    }
}

void validate_fx_rates(json_t *body, json_t *errors)
{
    static const char *const allowed[] = {"rates", NULL};
    static const char *const item_allowed[] = {"currency", "valid_from", "rate", NULL};
    json_t *rates = json_object_get(body, "rates"), *item;
    char ptr[32];
    size_t i;

    reject_unknown_fields(body, allowed, "", errors);
    if (!json_is_array(rates) || json_array_size(rates) == 0 ||
        json_array_size(rates) > FX_RATES_MAX) {
        verr_add(errors, "", "rates", "'rates' is required: an array of 1 to %d rates",
                 FX_RATES_MAX);
        return;
    }
    json_array_foreach(rates, i, item) {
        json_t *cur = json_object_get(item, "currency"), *from = json_object_get(item, "valid_from");
        json_t *rate = json_object_get(item, "rate");
        snprintf(ptr, sizeof(ptr), "/rates/%zu", i);
        if (!json_is_object(item)) {
            verr_add(errors, ptr, NULL, "each rate must be an object");
            continue;
        }
        reject_unknown_fields(item, item_allowed, ptr, errors);
        if (!json_is_string(cur) || !currency_valid(json_string_value(cur)))
            verr_add(errors, ptr, "currency",
                     "'currency' is required: an ISO 4217 code of three upper-case letters");
        if (!json_is_string(from) || !date_valid(json_string_value(from), 1900, 2999))
            verr_add(errors, ptr, "valid_from", "'valid_from' is required: a date YYYY-MM-DD");
        if (rate == NULL || !(json_is_null(rate) || (json_is_number(rate) &&
                                                   json_number_value(rate) > 0 &&
                                                   json_number_value(rate) <= 1e9)))
            verr_add(errors, ptr, "rate", "'rate' is required: a number > 0 and <= 1e9 (the "
                     "base currency's value of one unit), or null to remove the rate");
        for (size_t j = 0; json_is_string(cur) && json_is_string(from) && j < i; j++) {
            json_t *o = json_array_get(rates, j);
            if (json_equal(cur, json_object_get(o, "currency")) &&
                json_equal(from, json_object_get(o, "valid_from"))) {
                verr_add(errors, ptr, NULL, "%s from %s is listed twice",
                         json_string_value(cur), json_string_value(from));
                break;
            }
        }
    }
}
