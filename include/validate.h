/*
 * validate: turns parsed JSON request bodies into checked C structs. Owns
 * the field rules of every request (required fields, types, enums of
 * channels and interaction types, lengths, number formats, unknown-field
 * rejection) and reports every problem found as {pointer, detail} in an
 * errors array, so a client can fix all of them at once. Pure: the
 * structs borrow strings from the JSON document, which must outlive them.
 */
#ifndef CRM_VALIDATE_H
#define CRM_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>

#include "normalize.h"
#include "textutil.h"

#define MAX_IDENTIFIERS 20
#define MAX_TAGS 32
#define MAX_BATCH_ITEMS 1000
#define SOURCE_MAX 64
#define EXTERNAL_ID_MAX 256

struct identifier_list {
    struct identifier items[MAX_IDENTIFIERS];
    int count;
};

struct resolve_request {
    struct identifier_list ids;
    json_t *traits; /* borrowed; NULL when absent */
    const char *source;
};

struct traits_request {
    json_t *traits; /* borrowed */
    const char *source;
};

/* Satisfaction scores an interaction may carry (docs/api.md): index into
 * interaction_request.scores and score_kind(). */
enum score_kind_id { SCORE_NPS, SCORE_CSAT, SCORE_CES, SCORE_KINDS };

struct score_kind {
    const char *name;
    int min, max;
};

struct interaction_request {
    bool by_customer_id;
    char customer_id[UUID_TEXT_LEN + 1];
    struct identifier_list ids;
    const char *source;
    const char *external_id;
    const char *channel;
    const char *type;
    const char *occurred_at;
    bool has_amount, has_cost;
    char amount[32]; /* decimal text with at most 4 fraction digits */
    char cost[32];
    char currency[4];
    json_t *tags;    /* owned: normalised array of strings; free with interaction_request_clear */
    json_t *payload; /* borrowed; NULL when absent */
    int scores[SCORE_KINDS]; /* -1 when not given */
    char case_id[UUID_TEXT_LEN + 1]; /* the case it follows; "" when none (docs/cases.md) */
};

/* The value settings an admin may change (PATCH /v1/settings/value): name,
 * kind and range, in one table (docs/value.md lists them). */
enum value_setting_kind { VS_INTEGER, VS_NUMBER, VS_CURRENCY };
struct value_setting {
    const char *name;
    enum value_setting_kind kind;
    double min, max; /* inclusive; unused for VS_CURRENCY */
};
extern const struct value_setting VALUE_SETTINGS[]; /* ends with a NULL name */

/* Check a PATCH body of value settings: an object of known names, each of
 * its kind and range; errors as JSON pointers under "". */
void validate_value_settings_patch(json_t *body, json_t *errors);

/* PUT /v1/settings/fx-rates body: {"rates": [{currency, valid_from, rate}]},
 * 1..FX_RATES_MAX items: currency an ISO 4217 code of three upper-case
 * letters, valid_from a real date YYYY-MM-DD (1900..2999), rate a number
 * > 0 and <= 1e9 or null (remove that rate); no (currency, valid_from)
 * twice; no other field. Errors as JSON pointers (/rates/3/rate). */
#define FX_RATES_MAX 1000
void validate_fx_rates(json_t *body, json_t *errors);

/* True when name is one of the NULL-terminated list. */
bool name_in_list(const char *const *list, const char *name);

/* Append an "unknown field" error (under prefix) for every key of obj not in
 * allowed (NULL-terminated); false when there was one. */
bool reject_unknown_fields(json_t *obj, const char *const *allowed, const char *prefix,
                           json_t *errors);

bool channel_valid(const char *name);
bool interaction_type_valid(const char *name);
const char *channel_list(void);
/* The modes of an identifier detach ("move, delete"). */
bool detach_mode_valid(const char *name);
const char *detach_mode_list(void);
const char *interaction_type_list(void);

/* The score kinds (nps 0-10, csat 1-5, ces 1-7), NULL past the last, and the
 * interaction types that may carry scores (feedback, review, support_call). */
const struct score_kind *score_kind(int i);
bool scored_type(const char *type);
const char *scored_type_list(void);
/* True when the request carries at least one score. */
bool interaction_has_scores(const struct interaction_request *req);

/* Each returns true when the body is valid; otherwise appends to errors.
 * prefix is the JSON pointer of the object being validated ("" for the body). */
/* One identifier object {kind, namespace?, value}, normalised into out;
 * errors under the JSON pointer ptr. */
bool validate_identifier(json_t *item, const char *ptr, struct identifier *out, json_t *errors);
bool validate_resolve(json_t *body, struct resolve_request *out, json_t *errors);
bool validate_traits_request(json_t *body, struct traits_request *out, json_t *errors);
bool validate_interaction(json_t *obj, const char *prefix, struct interaction_request *out,
                          json_t *errors);
void interaction_request_clear(struct interaction_request *req);

/* Batch envelope: items must be an array of 1..MAX_BATCH_ITEMS. */
bool validate_batch_envelope(json_t *body, json_t **items, json_t *errors);

/* Traits object rules (shared by resolve and PATCH). */
bool validate_traits(json_t *traits, const char *prefix, json_t *errors);

/* Decimal amount from a JSON number or string, >= 0 and < 1e12, at most 4
 * fraction digits for strings; writes canonical text. */
bool money_text(json_t *v, char *out, size_t cap, const char **why);

/* [{kind, namespace?, value}] for the database (namespace omitted when ""). */
json_t *identifiers_to_json(const struct identifier_list *ids);
/* The same as sent to the database: each item also carries "raw", the value
 * as written, when it differs from the normalised value other than by case
 * or surrounding white space (crm.resolve checks both against the block list). */
json_t *identifiers_to_db_json(const struct identifier_list *ids);
/* True when an identifier's raw value is worth sending (see above). */
bool identifier_raw_differs(const struct identifier *id);

#endif
