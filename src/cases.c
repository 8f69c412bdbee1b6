/*
 * cases: statuses, priorities and transitions of cases, the part an
 * interaction plays in one, and the case request bodies. The transition
 * table is the one place that says which status may follow which; the
 * database is sent, for the status asked, the statuses it may come from and
 * checks the case against them under its row lock (so two agents moving
 * the same case cannot both win from a stale read).
 */
#include "cases.h"

#include <stdio.h>
#include <string.h>

#include "problem.h"
#include "validate.h"

static const char *const STATUSES[] = {"open", "in_progress", "resolved", "closed", NULL};
static const char *const PRIORITIES[] = {"low", "normal", "high", "urgent", NULL};

/* The interaction types that open a case (without a case_id) or reopen the
 * case they name, and those that are the company's answer to one. */
static const char *const OPENING_TYPES[] = {"complaint", NULL};
static const char *const RESPONSE_TYPES[] = {"outbound_message", "support_call", NULL};

/* TRANSITIONS[from][to]: open -> in_progress -> resolved | closed; open may
 * be resolved or closed at once (answered on the first call, a duplicate);
 * resolved may be closed; resolved and closed are reopened (back to open,
 * counted). in_progress does not go back to open: an agent working a case
 * keeps it until it is resolved or closed. The diagonal (no change) is
 * allowed. */
enum { S_OPEN, S_IN_PROGRESS, S_RESOLVED, S_CLOSED, S_COUNT };
static const bool TRANSITIONS[S_COUNT][S_COUNT] = {
    [S_OPEN] = {[S_OPEN] = true, [S_IN_PROGRESS] = true, [S_RESOLVED] = true, [S_CLOSED] = true},
    [S_IN_PROGRESS] = {[S_IN_PROGRESS] = true, [S_RESOLVED] = true, [S_CLOSED] = true},
    [S_RESOLVED] = {[S_OPEN] = true, [S_RESOLVED] = true, [S_CLOSED] = true},
    [S_CLOSED] = {[S_OPEN] = true, [S_CLOSED] = true},
};

static int status_index(const char *name)
{
    for (int i = 0; name != NULL && STATUSES[i] != NULL; i++)
        if (strcmp(STATUSES[i], name) == 0)
            return i;
    return -1;
}

const char *case_status_name(int i)
{
    return i >= 0 && i < S_COUNT ? STATUSES[i] : NULL;
}

bool case_status_valid(const char *name)
{
    return status_index(name) >= 0;
}

bool case_priority_valid(const char *name)
{
    return name_in_list(PRIORITIES, name);
}

const char *case_status_list(void)
{
    static struct name_list names = {.names = STATUSES};
    return name_list_text(&names);
}

const char *case_priority_list(void)
{
    static struct name_list names = {.names = PRIORITIES};
    return name_list_text(&names);
}

const char *case_opening_type_list(void)
{
    static struct name_list names = {.names = OPENING_TYPES};
    return name_list_text(&names);
}

const char *case_response_type_list(void)
{
    static struct name_list names = {.names = RESPONSE_TYPES};
    return name_list_text(&names);
}

bool case_transition_allowed(const char *from, const char *to)
{
    int f = status_index(from), t = status_index(to);
    return f >= 0 && t >= 0 && TRANSITIONS[f][t];
}

bool case_allowed_from(const char *to, char *out, size_t cap)
{
    int t = status_index(to);
    size_t len = 0;
    if (t < 0 || cap < 3)
        return false;
    out[len++] = '{';
    for (int f = 0; f < S_COUNT; f++) {
        size_t n;
        if (!TRANSITIONS[f][t])
            continue;
        n = strlen(STATUSES[f]);
        if (len + n + 3 > cap)
            return false;
        if (len > 1)
            out[len++] = ',';
        memcpy(out + len, STATUSES[f], n);
        len += n;
    }
    out[len++] = '}';
    out[len] = '\0';
    return true;
}

enum case_role case_role_of(const char *type, bool has_case)
{
    bool opening = name_in_list(OPENING_TYPES, type);
    if (!has_case)
        return opening ? CASE_ROLE_OPEN : CASE_ROLE_NONE;
    if (opening)
        return CASE_ROLE_COMPLAINT;
    return name_in_list(RESPONSE_TYPES, type) ? CASE_ROLE_RESPONSE : CASE_ROLE_FOLLOW;
}

const char *case_role_name(enum case_role role)
{
    switch (role) {
    case CASE_ROLE_OPEN:
        return "open";
    case CASE_ROLE_COMPLAINT:
        return "complaint";
    case CASE_ROLE_RESPONSE:
        return "response";
    case CASE_ROLE_FOLLOW:
        return "follow";
    case CASE_ROLE_NONE:
        break;
    }
    return NULL;
}

/* A string of 1..max characters without NUL; NULL (and an error) when
 * present but not one. */
static const char *text_member(json_t *obj, const char *key, size_t max, bool required,
                               json_t *errors)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            verr_add(errors, "", key, "'%s' is required: a string of 1 to %zu characters", key,
                     max);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v) ||
        utf8_length(json_string_value(v)) > max) {
        verr_add(errors, "", key, "'%s' must be a string of 1 to %zu characters without NUL",
                 key, max);
        return NULL;
    }
    return json_string_value(v);
}

/* An enumerated string member; NULL when absent or invalid (error added). */
static const char *enum_member(json_t *obj, const char *key, bool (*valid)(const char *),
                               const char *list, json_t *errors)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v) || !valid(json_string_value(v))) {
        verr_add(errors, "", key, "'%s' must be one of: %s", key, list);
        return NULL;
    }
    return json_string_value(v);
}

static bool uuid_member(json_t *obj, const char *key, char out[UUID_TEXT_LEN + 1],
                        json_t *errors)
{
    json_t *v = json_object_get(obj, key);
    out[0] = '\0';
    if (v == NULL)
        return true;
    if (!json_is_string(v) || !uuid_canonical(json_string_value(v), out)) {
        verr_add(errors, "", key, "'%s' must be the UUID of an interaction", key);
        out[0] = '\0';
        return false;
    }
    return true;
}

bool validate_case_create(json_t *body, struct case_create *out, json_t *errors)
{
    static const char *const allowed[] = {"source", "channel", "subject", "priority",
                                          "assignee", "purchase_id", "opened_at", NULL};
    size_t before = json_array_size(errors);
    json_t *v;

    memset(out, 0, sizeof(*out));
    reject_unknown_fields(body, allowed, "", errors);
    out->source = text_member(body, "source", SOURCE_MAX, true, errors);
    v = json_object_get(body, "channel");
    if (v == NULL)
        verr_add(errors, "", "channel", "'channel' is required, one of: %s", channel_list());
    else
        out->channel = enum_member(body, "channel", channel_valid, channel_list(), errors);
    out->subject = text_member(body, "subject", CASE_SUBJECT_MAX, false, errors);
    out->assignee = text_member(body, "assignee", CASE_ASSIGNEE_MAX, false, errors);
    out->priority = enum_member(body, "priority", case_priority_valid, case_priority_list(),
                                errors);
    uuid_member(body, "purchase_id", out->purchase_id, errors);
    if ((v = json_object_get(body, "opened_at")) != NULL) {
        if (!json_is_string(v) || !rfc3339_valid(json_string_value(v)))
            verr_add(errors, "", "opened_at",
                     "'opened_at' must be an RFC 3339 timestamp with offset");
        else
            out->opened_at = json_string_value(v);
    }
    return json_array_size(errors) == before;
}

bool validate_case_patch(json_t *body, json_t **patch, const char **status, json_t *errors)
{
    static const char *const allowed[] = {"status", "priority", "subject", "assignee",
                                          "purchase_id", NULL};
    static const struct {
        const char *key;
        size_t max;
    } texts[] = {{"subject", CASE_SUBJECT_MAX}, {"assignee", CASE_ASSIGNEE_MAX}};
    size_t before = json_array_size(errors);
    const char *s, *p;
    json_t *out = json_object(), *v;
    char purchase[UUID_TEXT_LEN + 1];

    *patch = NULL;
    *status = NULL;
    reject_unknown_fields(body, allowed, "", errors);
    if ((s = enum_member(body, "status", case_status_valid, case_status_list(), errors)) != NULL)
        json_object_set_new(out, "status", json_string(s));
    if ((p = enum_member(body, "priority", case_priority_valid, case_priority_list(), errors)))
        json_object_set_new(out, "priority", json_string(p));
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        v = json_object_get(body, texts[i].key);
        if (v == NULL)
            continue;
        if (json_is_null(v)) {
            json_object_set_new(out, texts[i].key, json_null());
            continue;
        }
        if ((s = text_member(body, texts[i].key, texts[i].max, false, errors)) != NULL)
            json_object_set_new(out, texts[i].key, json_string(s));
    }
    v = json_object_get(body, "purchase_id");
    if (json_is_null(v))
        json_object_set_new(out, "purchase_id", json_null());
    else if (v != NULL && uuid_member(body, "purchase_id", purchase, errors))
        json_object_set_new(out, "purchase_id", json_string(purchase));
    if (json_array_size(errors) == before && json_object_size(out) == 0)
        verr_add(errors, "", NULL,
                 "give at least one of status, priority, subject, assignee, purchase_id");
    if (json_array_size(errors) != before) {
        json_decref(out);
        return false;
    }
    *status = json_string_value(json_object_get(out, "status"));
    *patch = out;
    return true;
}
