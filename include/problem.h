/*
 * problem: RFC 9457 problem documents. Owns the catalogue of error types the
 * API can answer with (slug, HTTP status, title) and builds the JSON body,
 * including the per-field "errors" list used by validation failures.
 */
#ifndef CRM_PROBLEM_H
#define CRM_PROBLEM_H

#include <jansson.h>

enum problem_kind {
    PROBLEM_MALFORMED_JSON,
    PROBLEM_INVALID_UTF8,
    PROBLEM_INVALID_UUID,
    PROBLEM_INVALID_QUERY,
    PROBLEM_INVALID_HEADER,
    PROBLEM_UNAUTHORIZED,
    PROBLEM_FORBIDDEN,
    PROBLEM_NOT_FOUND,
    PROBLEM_METHOD_NOT_ALLOWED,
    PROBLEM_CONFLICT,
    PROBLEM_CASE_TRANSITION,
    PROBLEM_GONE,
    PROBLEM_CURSOR_EXPIRED,
    PROBLEM_PAYLOAD_TOO_LARGE,
    PROBLEM_HEADERS_TOO_LARGE,
    PROBLEM_UNSUPPORTED_MEDIA_TYPE,
    PROBLEM_TOO_MANY_REQUESTS,
    PROBLEM_VALIDATION_FAILED,
    PROBLEM_MODEL_NOT_FITTED,
    PROBLEM_SERVICE_UNAVAILABLE,
    PROBLEM_INTERNAL,
    PROBLEM_KIND_COUNT
};

int problem_status(enum problem_kind kind);
const char *problem_slug(enum problem_kind kind);

/* New problem object {type, title, status, detail, instance}; instance may be NULL. */
json_t *problem_new(enum problem_kind kind, const char *detail, const char *instance);

/* A validation problem carrying errors (stolen reference, a JSON array of {pointer, detail}). */
json_t *problem_validation(json_t *errors, const char *instance);

/* Append {pointer, detail} to errors; pointer is prefix + "/" + escaped key
 * (key may be NULL for the prefix itself). detail is printf-style. */
void verr_add(json_t *errors, const char *prefix, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
