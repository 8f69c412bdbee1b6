/*
 * problem: builds RFC 9457 "application/problem+json" documents. The type
 * URI of every problem is "urn:crm:problem:<slug>", stable for clients to
 * switch on; title is fixed per type, detail says what happened this time.
 */
#include "problem.h"

#include "textutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct problem_def {
    int status;
    const char *slug;
    const char *title;
};

static const struct problem_def DEFS[PROBLEM_KIND_COUNT] = {
    [PROBLEM_MALFORMED_JSON] = {400, "malformed-json", "Request body is not a valid JSON object"},
    [PROBLEM_INVALID_UTF8] = {400, "invalid-utf8", "Request is not valid UTF-8"},
    [PROBLEM_INVALID_UUID] = {400, "invalid-uuid", "Path contains an invalid UUID"},
    [PROBLEM_INVALID_QUERY] = {400, "invalid-query", "Invalid query parameter"},
    [PROBLEM_INVALID_HEADER] = {400, "invalid-header", "Invalid request header"},
    [PROBLEM_UNAUTHORIZED] = {401, "unauthorized", "Missing or invalid API key"},
    [PROBLEM_FORBIDDEN] = {403, "forbidden", "Not allowed for this API key"},
    [PROBLEM_NOT_FOUND] = {404, "not-found", "Not found"},
    [PROBLEM_METHOD_NOT_ALLOWED] = {405, "method-not-allowed", "Method not allowed"},
    [PROBLEM_CONFLICT] = {409, "conflict", "Conflict with the current state"},
    [PROBLEM_CASE_TRANSITION] = {409, "case-transition",
                                 "The case cannot move from its status to the one asked"},
    [PROBLEM_GONE] = {410, "gone", "The customer has been erased"},
    [PROBLEM_CURSOR_EXPIRED] = {410, "cursor-expired",
                                "The cursor is older than the change feed's retention"},
    [PROBLEM_PAYLOAD_TOO_LARGE] = {413, "payload-too-large", "Request body too large"},
    [PROBLEM_HEADERS_TOO_LARGE] = {431, "request-head-too-large", "Request head too large"},
    [PROBLEM_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported-media-type", "Unsupported media type"},
    [PROBLEM_TOO_MANY_REQUESTS] = {429, "too-many-requests", "Too many requests"},
    [PROBLEM_VALIDATION_FAILED] = {422, "validation-failed", "Request validation failed"},
    [PROBLEM_MODEL_NOT_FITTED] = {422, "model-not-fitted",
                                  "The value model could not be fitted; the live values are unchanged"},
    [PROBLEM_SERVICE_UNAVAILABLE] = {503, "service-unavailable", "Service temporarily unavailable"},
    [PROBLEM_INTERNAL] = {500, "internal-error", "Internal server error"},
};

int problem_status(enum problem_kind kind)
{
    return DEFS[kind].status;
}

const char *problem_slug(enum problem_kind kind)
{
    return DEFS[kind].slug;
}

json_t *problem_new(enum problem_kind kind, const char *detail, const char *instance)
{
    char type[64];
    json_t *p;
    snprintf(type, sizeof(type), "urn:crm:problem:%s", DEFS[kind].slug);
    p = json_pack("{s:s, s:s, s:i}", "type", type, "title", DEFS[kind].title,
                  "status", DEFS[kind].status);
    if (detail != NULL)
        json_object_set_new(p, "detail", json_string(detail));
    if (instance != NULL)
        json_object_set_new(p, "instance", json_string(instance));
    return p;
}

json_t *problem_validation(json_t *errors, const char *instance)
{
    char detail[64];
    size_t n = json_array_size(errors);
    json_t *p;
    snprintf(detail, sizeof(detail), n == 1 ? "%zu field is invalid" : "%zu fields are invalid", n);
    p = problem_new(PROBLEM_VALIDATION_FAILED, detail, instance);
    json_object_set_new(p, "errors", errors);
    return p;
}

void verr_add(json_t *errors, const char *prefix, const char *key, const char *fmt, ...)
{
    char pointer[512];
    char detail[512];
    size_t n = 0;
    va_list ap;

    n = (size_t)snprintf(pointer, sizeof(pointer), "%s", prefix ? prefix : "");
    if (key != NULL && n + 1 < sizeof(pointer)) {
        pointer[n++] = '/';
        for (const char *k = key; *k && n + 3 < sizeof(pointer); k++) {
            if (*k == '~' || *k == '/') { /* RFC 6901 escaping */
                pointer[n++] = '~';
                pointer[n++] = *k == '~' ? '0' : '1';
            } else {
                pointer[n++] = *k;
            }
        }
        pointer[n] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    /* Truncation may have cut a multi-byte character in half. */
    utf8_truncate(pointer);
    utf8_truncate(detail);
    json_array_append_new(errors, json_pack("{s:s, s:s}", "pointer", pointer, "detail", detail));
}
