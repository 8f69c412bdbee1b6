/*
 * segment: the segment rule language and its compiler to SQL. Owns the
 * grammar (all/any/not, field comparisons, needs, interactions in a time
 * window), the whitelist of fields a rule may use and their SQL
 * expressions, validation with JSON-pointer errors, and compilation to a
 * boolean SQL expression whose every user-supplied value is a $n parameter.
 * The expression refers to crm.customers as "c" and crm.customer_value as
 * "v" (LEFT JOINed). Pure: no I/O.
 */
#ifndef CRM_SEGMENT_H
#define CRM_SEGMENT_H

#include <jansson.h>
#include <stdbool.h>

#define SEGMENT_MAX_DEPTH 12
#define SEGMENT_MAX_NODES 200
#define SEGMENT_MAX_IN 1000

struct segment_sql {
    char *where;       /* malloc'd boolean SQL expression */
    json_t *params;    /* array of strings (or null): values for $1..$n in order */
    unsigned depends;  /* SEG_DEP_* bits: the inputs the rule reads */
};

/*
 * What a rule's truth depends on, derived from its fields when it is
 * compiled: live membership (docs/segments.md) re-evaluates a segment for a
 * customer only when a change of one of these kinds reaches the feed for
 * that customer. SEG_DEP_TIME: the rule compares with now() (within_last_days,
 * not_within_last_days, within_days), so time alone changes it.
 * SEG_DEP_CONSENTS and SEG_DEP_PREFERENCES name feed changes no rule field
 * reads yet; they are in the vocabulary so that a field added later only
 * has to set its bit.
 */
enum segment_dep {
    SEG_DEP_INTERACTIONS = 1u << 0,
    SEG_DEP_TRAITS = 1u << 1,
    SEG_DEP_NEEDS = 1u << 2,
    SEG_DEP_VALUE = 1u << 3,
    SEG_DEP_IDENTIFIERS = 1u << 4,
    SEG_DEP_CUSTOMER = 1u << 5,
    SEG_DEP_CONSENTS = 1u << 6,
    SEG_DEP_PREFERENCES = 1u << 7,
    SEG_DEP_TIME = 1u << 8,
    SEG_DEP_STAGE = 1u << 9, /* the journey stage (customer.stage_changed) */
};
#define SEG_DEP_COUNT 10

/* The name of bit i (0 .. SEG_DEP_COUNT-1): "interactions", "traits", ... */
const char *segment_dep_name(int i);
/* The names of the bits of mask as a new JSON array of strings, in bit order. */
json_t *segment_depends_json(unsigned mask);

/* Bumped whenever the compiler's output for a rule may change: a server
 * recompiles the stored condition of every segment compiled by an older
 * version (segment_refresh.c). */
#define SEGMENT_COMPILER_VERSION 1

/* The condition as stored for live membership: every parameter $n becomes
 * ($1[n]), an element of one text[] parameter, so the stored text can run
 * with EXECUTE ... USING params (sql/functions/membership.sql). Values are
 * still never part of the text. malloc'd. */
char *segment_stored_condition(const char *where);

/* Compile rule; on failure appends {pointer, detail} items (under prefix) to
 * errors and returns false. out must be released with segment_sql_free. */
bool segment_compile(json_t *rule, const char *prefix, struct segment_sql *out, json_t *errors);
void segment_sql_free(struct segment_sql *out);

/* Comma-separated field names, for documentation and errors. */
const char *segment_field_list(void);

/*
 * Audience fields: what a segment's members page or export may give out per
 * member (fields=). Contact fields (identifiers and names/birthday) are
 * personal data: the marketing role only gets them with a purpose and a
 * channel that the contact decision allows. sql is an expression over "c"
 * and "v" like the rule fields; it holds no user text.
 */
struct audience_field {
    const char *name; /* as in fields= and as the item's key */
    bool contact;
    const char *sql;
};
#define AUDIENCE_FIELDS_MAX 32

/* The fixed list, in the order items carry them. */
const struct audience_field *audience_field_at(int i);
int audience_field_count(void);
/* "email, phone, device, first_name, ..." for errors and docs. */
const char *audience_field_list(void);

/* The NPS categories the field satisfaction.nps_category takes ("promoter,
 * passive, detractor"; crm.nps_category in SQL, NpsCategory in openapi). */
const char *nps_category_list(void);

/* Parse fields= (comma-separated names, each at most once, none empty) into
 * a bit set of audience_field_at indexes; false with a message in err. */
bool audience_fields_parse(const char *text, unsigned int *mask, char *err, size_t errlen);
/* Whether mask holds a contact field. */
bool audience_fields_have_contact(unsigned int mask);

/* The identifier kind that carries the address for an interaction channel
 * (email -> email, sms and phone -> phone, app -> device), NULL when the
 * channel has none (web, store, ...). */
const char *channel_address_kind(const char *channel);

#endif
