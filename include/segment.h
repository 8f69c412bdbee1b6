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
    char *where;     /* malloc'd boolean SQL expression */
    json_t *params;  /* array of strings (or null): values for $1..$n in order */
};

/* Compile rule; on failure appends {pointer, detail} items (under prefix) to
 * errors and returns false. out must be released with segment_sql_free. */
bool segment_compile(json_t *rule, const char *prefix, struct segment_sql *out, json_t *errors);
void segment_sql_free(struct segment_sql *out);

/* Comma-separated field names, for documentation and errors. */
const char *segment_field_list(void);

#endif
