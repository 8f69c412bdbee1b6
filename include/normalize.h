/*
 * normalize: the identity keys of a customer. Owns the list of identifier
 * kinds, which of them take a namespace, and how each value is normalised
 * (email lower-cased and trimmed, phone to E.164, loyalty cards upper-cased
 * without separators). Two inputs that mean the same identifier normalise
 * to the same (kind, namespace, value) triple, which is the unique key in
 * the identifiers table. Pure; no allocation.
 */
#ifndef CRM_NORMALIZE_H
#define CRM_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>

enum id_kind { ID_EMAIL, ID_PHONE, ID_EXTERNAL, ID_LOYALTY_CARD, ID_DEVICE, ID_KIND_COUNT };

#define ID_VALUE_MAX 256
#define ID_NAMESPACE_MAX 64

struct identifier {
    enum id_kind kind;
    char namespace_[ID_NAMESPACE_MAX + 1]; /* "" when the kind has none */
    char value[ID_VALUE_MAX + 1];
    /* The value as the client wrote it (borrowed from the caller's string;
     * set by identifier_normalize): blocked placeholders are checked on it
     * too, since normalising can turn "-1" into "1". */
    const char *raw;
};

/* Kind from its API name ("email", ...); false if unknown. */
bool id_kind_parse(const char *name, enum id_kind *out);
const char *id_kind_name(enum id_kind kind);

/* Comma-separated list of kind names, for error messages. */
const char *id_kind_list(void);

/*
 * Normalise one identifier. namespace_ may be NULL. On failure returns false
 * and writes a human-readable reason to err (and sets *field_is_namespace
 * when the namespace, not the value, is at fault, if the pointer is given).
 */
bool identifier_normalize(enum id_kind kind, const char *namespace_, const char *value,
                          struct identifier *out, char *err, size_t errlen,
                          bool *field_is_namespace);

/* Individual normalisers; out has room for ID_VALUE_MAX + 1 bytes. */
bool normalize_email(const char *in, char *out, char *err, size_t errlen);
bool normalize_phone(const char *in, char *out, char *err, size_t errlen);

#endif
