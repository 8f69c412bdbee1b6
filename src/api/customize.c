/*
 * customize: the "customize" routes: preferences (read, JSON merge patch),
 * consents (append, read with history), the contact decision, moments
 * (birthdays, anniversaries, warranty expiries, keyset-paged; the daily
 * run that writes them as moment.due events, by hand), and the
 * data-subject rights: export and erasure. Every per-customer answer
 * follows merges to the survivor; an erased customer answers 410 Gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "customize.h"
#include "handlers.h"
#include "segment.h"
#include "store.h"
#include "store_customize.h"
#include "textutil.h"
#include "validate.h"

#define MOMENT_DAYS_DEFAULT 30
#define MOMENT_DAYS_MAX 366
#define MOMENT_LIMIT_DEFAULT 100
#define MOMENT_LIMIT_MAX 1000

/* A per-customer answer: 404 when there is none, 410 when erased. */
static void respond_customer_doc(struct response *res, enum db_status st, json_t *out,
                                 const char *err, const char *path, int status)
{
    if (st != DB_OK) {
        json_decref(out);
        respond_db_failure(res, st, err, path);
    } else if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", path);
    } else if (!respond_if_gone(res, out, path)) {
        respond_json(res, status, out);
    }
}

/* Statements taking (customer id, caller's key id, caller's role). */
static void handle_audited_read(struct app *app, const struct request *req, struct response *res,
                                enum store_stmt statement)
{
    const char *params[3] = {req->match->id, req->who->key_id, role_name(req->who->role)};
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_call(app->pool, statement, 3, params, &out, err, sizeof(err));
    respond_customer_doc(res, st, out, err, req->path, 200);
}

void handle_preferences_patch(struct app *app, const struct request *req,
                              struct response *res)
{
    json_t *errors = json_array(), *patch = NULL, *out = NULL, *db_errors;
    const char *source;
    const char *params[3];
    char err[API_ERR_LEN], *patch_text;
    enum db_status st;

    if (!validate_preferences_request(req->body, &patch, &source, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    patch_text = json_dumps(patch, JSON_COMPACT);
    params[0] = req->match->id;
    params[1] = patch_text;
    params[2] = source;
    st = store_call(app->pool, STMT_PREFERENCES_PATCH, 3, params, &out, err, sizeof(err));
    free(patch_text);
    json_decref(patch);
    db_errors = st == DB_OK ? json_object_get(out, "errors") : NULL;
    if (json_is_array(db_errors)) { /* e.g. an unknown time zone: nothing was written */
        json_incref(db_errors);
        json_decref(out);
        respond_validation(res, db_errors, req->path);
        return;
    }
    respond_customer_doc(res, st, out, err, req->path, 200);
}

void handle_consent_create(struct app *app, const struct request *req,
                           struct response *res)
{
    struct consent_request cr;
    json_t *errors = json_array(), *out = NULL;
    const char *params[6];
    char err[API_ERR_LEN];
    enum db_status st;

    if (!validate_consent_request(req->body, &cr, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    params[0] = req->match->id;
    params[1] = cr.purpose;
    params[2] = cr.channel;
    params[3] = cr.status;
    params[4] = cr.source;
    params[5] = cr.occurred_at;
    st = store_call(app->pool, STMT_CONSENT_RECORD, 6, params, &out, err, sizeof(err));
    respond_customer_doc(res, st, out, err, req->path, 201);
}

static bool bad_query(struct response *res, const char *detail, const char *path)
{
    respond_problem(res, PROBLEM_INVALID_QUERY, detail, path);
    return false;
}

/* purpose and channel (channel may be "any" only when allow_any). */
static bool check_purpose_channel(struct response *res, const char *purpose, const char *channel,
                                  bool allow_any, const char *path)
{
    char detail[200];
    if (purpose == NULL || !consent_purpose_valid(purpose)) {
        snprintf(detail, sizeof(detail), "purpose is required, one of: %s",
                 consent_purpose_list());
        return bad_query(res, detail, path);
    }
    if (channel == NULL || !(allow_any ? consent_channel_valid(channel) : channel_valid(channel))) {
        snprintf(detail, sizeof(detail), "channel is required, one of: %s%s", channel_list(),
                 allow_any ? ", any" : "");
        return bad_query(res, detail, path);
    }
    return true;
}

void handle_contact_decision(struct app *app, const struct request *req,
                             struct response *res)
{
    const char *channel, *purpose, *at;
    const char *params[4];
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;

    if (!query_param(req, res, "channel", &channel) || !query_param(req, res, "purpose", &purpose) ||
        !query_param(req, res, "at", &at) ||
        !check_purpose_channel(res, purpose, channel, false, req->path))
        return;
    if (at != NULL && !rfc3339_valid(at)) {
        bad_query(res, "at must be an RFC 3339 timestamp with offset", req->path);
        return;
    }
    params[0] = req->match->id;
    params[1] = purpose;
    params[2] = channel;
    params[3] = at;
    st = store_call(app->pool, STMT_CONTACT_DECISION, 4, params, &out, err, sizeof(err));
    respond_customer_doc(res, st, out, err, req->path, 200);
}

/* Cursor = base64url("<YYYY-MM-DD>|<customer_id>|<subject>"), the subject
 * being the purchase of a warranty, else the customer. A cursor of the
 * earlier form, without the subject, goes on after all of that customer's
 * moments of that day. */
static bool moment_cursor_decode(const char *text, char date[11], char id[UUID_TEXT_LEN + 1],
                                 char subject[UUID_TEXT_LEN + 1])
{
    unsigned char buf[128];
    long n = base64url_decode(text, buf, sizeof(buf));
    if (n < 10 + 1 + UUID_TEXT_LEN || n >= (long)sizeof(buf) || buf[10] != '|')
        return false;
    buf[n] = '\0';
    memcpy(date, buf, 10);
    date[10] = '\0';
    if (n == 10 + 1 + UUID_TEXT_LEN) {
        snprintf(subject, UUID_TEXT_LEN + 1, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    } else if (n != 10 + 1 + UUID_TEXT_LEN + 1 + UUID_TEXT_LEN || buf[11 + UUID_TEXT_LEN] != '|' ||
               !uuid_canonical((char *)buf + 12 + UUID_TEXT_LEN, subject)) {
        return false;
    }
    buf[11 + UUID_TEXT_LEN] = '\0';
    return date_valid(date, 1900, 2999) && uuid_canonical((char *)buf + 11, id);
}

/* next_cursor_date/next_cursor_id of the database answer become next_cursor. */
static void moment_cursor_encode(json_t *page)
{
    json_t *d = json_object_get(page, "next_cursor_date"), *id = json_object_get(page, "next_cursor_id");
    json_t *subject = json_object_get(page, "next_cursor_subject");
    if (json_is_string(d) && json_is_string(id) && json_is_string(subject)) {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "%s|%s|%s", json_string_value(d), json_string_value(id),
                         json_string_value(subject));
        char *c = base64url_encode((const unsigned char *)buf, (size_t)n);
        json_object_set_new(page, "next_cursor", json_string(c));
        free(c);
    } else {
        json_object_set_new(page, "next_cursor", json_null());
    }
    json_object_del(page, "next_cursor_date");
    json_object_del(page, "next_cursor_id");
    json_object_del(page, "next_cursor_subject");
}

/* The query of GET /v1/moments, checked; false when res was filled. */
static bool moments_query_parse(const struct request *req, struct response *res,
                                struct moments_query *q, char cursor_date[11],
                                char cursor_id[UUID_TEXT_LEN + 1],
                                char cursor_subject[UUID_TEXT_LEN + 1], const char **segment_id)
{
    const char *cursor;
    memset(q, 0, sizeof(*q));
    if (!query_param(req, res, "kind", &q->kind) || !query_param(req, res, "at", &q->at) ||
        !query_param(req, res, "cursor", &cursor) ||
        !query_param(req, res, "segment_id", segment_id) ||
        !query_param(req, res, "purpose", &q->purpose) ||
        !query_param(req, res, "channel", &q->channel) ||
        !int_param(req, res, "days", MOMENT_DAYS_DEFAULT, 1, MOMENT_DAYS_MAX, &q->days) ||
        !int_param(req, res, "limit", MOMENT_LIMIT_DEFAULT, 1, MOMENT_LIMIT_MAX, &q->limit))
        return false;
    if (q->kind == NULL || !moment_kind_name_plausible(q->kind))
        return bad_query(res, "kind is required: birthday, anniversary, warranty or a kind "
                         "declared in /v1/settings/moments", req->path);
    if (q->at != NULL && !rfc3339_valid(q->at))
        return bad_query(res, "at must be an RFC 3339 timestamp with offset", req->path);
    if (q->channel != NULL && q->purpose == NULL)
        return bad_query(res, "channel filters by consent and needs purpose", req->path);
    if (q->purpose != NULL) {
        if (q->channel == NULL)
            q->channel = "any";
        if (!check_purpose_channel(res, q->purpose, q->channel, true, req->path))
            return false;
    }
    if (cursor != NULL) {
        if (!moment_cursor_decode(cursor, cursor_date, cursor_id, cursor_subject))
            return bad_query(res, "cursor is not one this server issued", req->path);
        q->cursor_date = cursor_date;
        q->cursor_id = cursor_id;
        q->cursor_subject = cursor_subject;
    }
    return true;
}

void handle_moments(struct app *app, const struct request *req, struct response *res)
{
    struct moments_query q;
    struct segment_sql seg = {0};
    char cursor_date[11], cursor_id[UUID_TEXT_LEN + 1], cursor_subject[UUID_TEXT_LEN + 1];
    char err[API_ERR_LEN];
    const char *segment_id = NULL;
    json_t *out = NULL, *known;
    enum db_status st;

    if (!moments_query_parse(req, res, &q, cursor_date, cursor_id, cursor_subject, &segment_id))
        return;
    if (segment_id != NULL && !load_segment_by_text(app, req, res, segment_id, &seg)) {
        segment_sql_free(&seg);
        return;
    }
    st = store_moments(app->pool, &q, segment_id != NULL ? &seg : NULL, &out, err, sizeof(err));
    segment_sql_free(&seg);
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    known = json_object_get(out, "unknown_kind");
    if (known != NULL) {
        char *list = json_dumps(known, JSON_COMPACT);
        char detail[1024];
        snprintf(detail, sizeof(detail), "kind '%s' is not a moment kind; the kinds are %s",
                 q.kind, list != NULL ? list : "?");
        free(list);
        json_decref(out);
        bad_query(res, detail, req->path);
        return;
    }
    moment_cursor_encode(out);
    respond_json(res, 200, out);
}

/* GET /v1/settings/moments: the moment kinds, built in and declared. */
void handle_moment_settings_get(struct app *app, const struct request *req,
                                struct response *res)
{
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_call(app->pool, STMT_MOMENT_SETTINGS_GET, 0, NULL, &out, err,
                                   sizeof(err));
    if (st != DB_OK || out == NULL) {
        json_decref(out);
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        return;
    }
    respond_json(res, 200, out);
}

/* PUT /v1/settings/moments {"kinds": [...]}: the declared kinds replaced,
 * the built-in kinds listed changed (crm.put_moment_settings), audited. */
void handle_moment_settings_put(struct app *app, const struct request *req,
                                struct response *res)
{
    json_t *errors = json_array(), *out = NULL;
    const char *params[3];
    char *kinds;
    char err[API_ERR_LEN];
    enum db_status st;

    if (!validate_moment_settings(req->body, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    kinds = json_dumps(json_object_get(req->body, "kinds"), JSON_COMPACT);
    params[0] = kinds;
    params[1] = req->who ? req->who->key_id : NULL;
    params[2] = req->who ? role_name(req->who->role) : NULL;
    st = store_call(app->pool, STMT_MOMENT_SETTINGS_PUT, 3, params, &out, err, sizeof(err));
    free(kinds);
    respond_settings(res, st, out, err, "kinds", req->path);
}

/* POST /v1/moments:run {"date": "YYYY-MM-DD"}: the daily moments run for
 * that day (crm.moments_run); {date, events}. */
void handle_moments_run(struct app *app, const struct request *req, struct response *res)
{
    static const char *const allowed[] = {"date", NULL};
    json_t *date = json_object_get(req->body, "date"), *errors = json_array(), *out = NULL;
    json_t *db_errors;
    const char *params[1];
    char err[API_ERR_LEN];
    enum db_status st;

    reject_unknown_fields(req->body, allowed, "", errors);
    if (!json_is_string(date) || !date_valid(json_string_value(date), 1900, 2999))
        verr_add(errors, "", "date", "'date' is required: a date YYYY-MM-DD");
    if (json_array_size(errors) > 0) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    params[0] = json_string_value(date);
    st = store_call(app->pool, STMT_MOMENTS_RUN, 1, params, &out, err, sizeof(err));
    db_errors = st == DB_OK ? json_object_get(out, "errors") : NULL;
    if (json_is_array(db_errors)) { /* too far from today */
        json_incref(db_errors);
        json_decref(out);
        respond_validation(res, db_errors, req->path);
    } else if (st != DB_OK || out == NULL) {
        json_decref(out);
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
    } else {
        respond_json(res, 200, out);
    }
}

void handle_preferences_get(struct app *app, const struct request *req, struct response *res)
{
    handle_audited_read(app, req, res, STMT_PREFERENCES_GET);
}

void handle_consents_list(struct app *app, const struct request *req, struct response *res)
{
    handle_audited_read(app, req, res, STMT_CONSENTS_GET);
}

void handle_customer_export(struct app *app, const struct request *req, struct response *res)
{
    /* The export lists the audit trail: write this server's pending rows first. */
    audit_flush(app->audit);
    handle_audited_read(app, req, res, STMT_CUSTOMER_EXPORT);
}

void handle_customer_erase(struct app *app, const struct request *req, struct response *res)
{
    handle_audited_read(app, req, res, STMT_CUSTOMER_ERASE);
}
