/*
 * normalize: turns identifier input into the canonical (kind, namespace,
 * value) triple used as the identity key. Rules per kind are documented in
 * docs/api.md ("Identifiers"); anything that cannot be normalised is
 * rejected with a reason rather than stored as-is.
 */
#include "normalize.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "textutil.h"

static const char *const KIND_NAMES[ID_KIND_COUNT + 1] = { /* NULL-terminated */
    [ID_EMAIL] = "email",
    [ID_PHONE] = "phone",
    [ID_EXTERNAL] = "external",
    [ID_LOYALTY_CARD] = "loyalty_card",
    [ID_DEVICE] = "device",
};

bool id_kind_parse(const char *name, enum id_kind *out)
{
    for (int k = 0; k < ID_KIND_COUNT; k++) {
        if (name != NULL && strcmp(name, KIND_NAMES[k]) == 0) {
            *out = (enum id_kind)k;
            return true;
        }
    }
    return false;
}

const char *id_kind_name(enum id_kind kind)
{
    return (kind >= 0 && kind < ID_KIND_COUNT) ? KIND_NAMES[kind] : "?";
}

const char *id_kind_list(void)
{
    static struct name_list names = {.names = KIND_NAMES};
    return name_list_text(&names);
}

/* Copy in without leading/trailing ASCII white space; false if it does not fit. */
static bool copy_trimmed(const char *in, char *out, size_t cap)
{
    const char *end;
    size_t n;
    while (*in && isspace((unsigned char)*in))
        in++;
    end = in + strlen(in);
    while (end > in && isspace((unsigned char)end[-1]))
        end--;
    n = (size_t)(end - in);
    if (n >= cap)
        return false;
    memcpy(out, in, n);
    out[n] = '\0';
    return true;
}

bool normalize_email(const char *in, char *out, char *err, size_t errlen)
{
    const char *at, *dot;
    if (!copy_trimmed(in, out, 255)) {
        snprintf(err, errlen, "email is longer than 254 characters");
        return false;
    }
    for (char *p = out; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
            snprintf(err, errlen, "email must not contain spaces or control characters");
            return false;
        }
        *p = (char)tolower((unsigned char)*p);
    }
    at = strchr(out, '@');
    if (at == NULL || at == out || strchr(at + 1, '@') != NULL) {
        snprintf(err, errlen, "email must have one '@' with a non-empty local part");
        return false;
    }
    dot = strrchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0') {
        snprintf(err, errlen, "email domain must contain a dot");
        return false;
    }
    return true;
}

bool normalize_phone(const char *in, char *out, char *err, size_t errlen)
{
    char digits[32];
    size_t n = 0;
    const char *p = in;
    bool international = false;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (*p == '+') {
        international = true;
        p++;
    }
    for (; *p; p++) {
        if (isdigit((unsigned char)*p)) {
            if (n + 1 >= sizeof(digits)) {
                snprintf(err, errlen, "phone number has too many digits");
                return false;
            }
            digits[n++] = *p;
        } else if (!(*p == ' ' || *p == '-' || *p == '.' || *p == '(' || *p == ')' || *p == '\t')) {
            snprintf(err, errlen, "phone number may contain only digits, '+', spaces, '.', '-', '(' and ')'");
            return false;
        }
    }
    digits[n] = '\0';
    if (!international) {
        if (n < 2 || digits[0] != '0' || digits[1] != '0') {
            snprintf(err, errlen, "phone number needs a country code: start with '+' or '00'");
            return false;
        }
        memmove(digits, digits + 2, n - 1); /* includes NUL */
        n -= 2;
    }
    if (n < 8 || n > 15 || digits[0] == '0') {
        snprintf(err, errlen, "phone number must be 8 to 15 digits in E.164 form, country code first");
        return false;
    }
    out[0] = '+';
    memcpy(out + 1, digits, n + 1);
    return true;
}

static bool namespace_normalize(const char *in, char *out, char *err, size_t errlen)
{
    if (!copy_trimmed(in, out, ID_NAMESPACE_MAX + 1) || out[0] == '\0') {
        snprintf(err, errlen, "namespace must be 1 to %d characters", ID_NAMESPACE_MAX);
        return false;
    }
    for (char *p = out; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-')) {
            snprintf(err, errlen, "namespace may contain only a-z, 0-9, '_', '.' and '-'");
            return false;
        }
    }
    return true;
}

static bool plain_value(const char *in, char *out, size_t max, char *err, size_t errlen)
{
    if (!copy_trimmed(in, out, max + 1) || out[0] == '\0') {
        snprintf(err, errlen, "value must be 1 to %zu characters after trimming", max);
        return false;
    }
    for (const char *p = out; *p; p++) {
        if (iscntrl((unsigned char)*p)) {
            snprintf(err, errlen, "value must not contain control characters");
            return false;
        }
    }
    return true;
}

static bool loyalty_normalize(const char *in, char *out, char *err, size_t errlen)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (isspace((unsigned char)*p) || *p == '-')
            continue;
        if (!isalnum((unsigned char)*p)) {
            snprintf(err, errlen, "loyalty card may contain only letters, digits, spaces and '-'");
            return false;
        }
        if (n >= 64) {
            snprintf(err, errlen, "loyalty card must be 1 to 64 characters");
            return false;
        }
        out[n++] = (char)toupper((unsigned char)*p);
    }
    out[n] = '\0';
    if (n == 0) {
        snprintf(err, errlen, "loyalty card must be 1 to 64 characters");
        return false;
    }
    return true;
}

bool identifier_normalize(enum id_kind kind, const char *namespace_, const char *value,
                          struct identifier *out, char *err, size_t errlen,
                          bool *field_is_namespace)
{
    bool takes_namespace = (kind == ID_EXTERNAL || kind == ID_LOYALTY_CARD);
    if (field_is_namespace)
        *field_is_namespace = false;
    out->kind = kind;
    out->namespace_[0] = '\0';
    out->raw = value;
    if (namespace_ != NULL && !takes_namespace) {
        snprintf(err, errlen, "kind '%s' does not take a namespace", id_kind_name(kind));
        if (field_is_namespace)
            *field_is_namespace = true;
        return false;
    }
    if (kind == ID_EXTERNAL && namespace_ == NULL) {
        snprintf(err, errlen, "kind 'external' requires a namespace (the partner or system name)");
        if (field_is_namespace)
            *field_is_namespace = true;
        return false;
    }
    if (namespace_ != NULL && !namespace_normalize(namespace_, out->namespace_, err, errlen)) {
        if (field_is_namespace)
            *field_is_namespace = true;
        return false;
    }
    switch (kind) {
    case ID_EMAIL:
        return normalize_email(value, out->value, err, errlen);
    case ID_PHONE:
        return normalize_phone(value, out->value, err, errlen);
    case ID_LOYALTY_CARD:
        return loyalty_normalize(value, out->value, err, errlen);
    case ID_EXTERNAL:
    case ID_DEVICE:
        return plain_value(value, out->value, ID_VALUE_MAX, err, errlen);
    default:
        snprintf(err, errlen, "unknown identifier kind");
        return false;
    }
}
