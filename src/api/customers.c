/*
 * customers: the customer routes of the front office and the call centre:
 * resolve (find or create, merging as needed; the answer follows the
 * caller's role), the profile by id or by identifier, the traits patch and
 * the keyset-paged timeline. Reads of personal data are audited.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "store.h"
#include "textutil.h"
#include "validate.h"

/* The resolve answer as the caller's role may see it. A role that may not
 * read profiles (front office, partner) gets the identity outcome only:
 * customer_id, created, merged_ids, ignored, conflicts; every other member
 * (the profile with traits, phone, consents, needs, value) is dropped. A role
 * that may read profiles gets the whole answer, audited like a GET of the
 * profile (customer.resolve). False when res was filled (the audit failed);
 * out is then released. */
static bool resolve_answer_for(struct app *app, const struct request *req, struct response *res,
                               json_t *out)
{
    static const char *const identity_only[] = {"customer_id", "created", "merged_ids",
                                                "ignored", "conflicts"};
    const char *key;
    json_t *value;
    void *tmp;
    if (req->who == NULL || role_allows(req->who->role, ROUTE_CUSTOMER_GET)) {
        if (audit_read_or_fail(app, req, res, "customer.resolve",
                               json_string_value(json_object_get(out, "customer_id"))))
            return true;
        json_decref(out);
        return false;
    }
    json_object_foreach_safe(out, tmp, key, value) {
        bool keep = false;
        for (size_t i = 0; i < sizeof(identity_only) / sizeof(identity_only[0]); i++)
            keep = keep || strcmp(key, identity_only[i]) == 0;
        if (!keep)
            json_object_del(out, key);
    }
    return true;
}

void handle_resolve(struct app *app, const struct request *req, struct response *res)
{
    struct resolve_request rr;
    json_t *errors = json_array(), *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    if (!validate_resolve(req->body, &rr, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!partner_scope_ok(req->who, false, &rr.ids) ||
        (req->who != NULL && req->who->role == ROLE_PARTNER && rr.traits != NULL)) {
        respond_problem(res, PROBLEM_FORBIDDEN, PARTNER_SCOPE, req->path);
        return;
    }
    if (!moment_traits_ok(app, req, res, rr.traits))
        return;
    st = store_resolve(app->pool, &rr, &out, err, sizeof(err));
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (respond_if_blocked(out, "", req->path, res)) {
        json_decref(out);
        return;
    }
    if (!resolve_answer_for(app, req, res, out))
        return;
    respond_json(res, json_is_true(json_object_get(out, "created")) ? 201 : 200, out);
}

static void set_profile_response(struct response *res, json_t *profile)
{
    json_t *survivor = json_object_get(profile, "merged_into");
    if (json_is_string(survivor))
        snprintf(res->content_location, sizeof(res->content_location), "/v1/customers/%s",
                 json_string_value(survivor));
    respond_json(res, 200, profile);
}

/* A profile read's answer: 404, 410, or the audited document as is. */
static void respond_profile_text(struct app *app, const struct request *req, struct response *res,
                                 struct profile_text *p, const char *action,
                                 const char *not_found)
{
    if (p->doc == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, not_found, req->path);
    } else if (p->gone) {
        json_t *doc = json_loads(p->doc, 0, NULL);
        if (doc == NULL || !respond_if_gone(res, doc, req->path)) {
            json_decref(doc);
            respond_problem(res, PROBLEM_INTERNAL, "the request could not be completed",
                            req->path);
        }
    } else if (audit_read_or_fail(app, req, res, action, p->customer_id)) {
        if (p->merged_into != NULL)
            snprintf(res->content_location, sizeof(res->content_location), "/v1/customers/%s",
                     p->merged_into);
        respond_raw_json(res, 200, p->doc);
        p->doc = NULL;
    }
    profile_text_clear(p);
}

void handle_customer_get(struct app *app, const struct request *req, struct response *res)
{
    struct profile_text p;
    char err[API_ERR_LEN];
    enum db_status st = store_profile(req->reads, req->match->id, &p, err, sizeof(err));
    if (st != DB_OK) {
        profile_text_clear(&p);
        respond_db_failure(res, st, err, req->path);
        return;
    }
    respond_profile_text(app, req, res, &p, "customer.read", "no customer with this id");
}

void handle_traits(struct app *app, const struct request *req, struct response *res)
{
    struct traits_request tr;
    json_t *errors = json_array(), *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    if (!validate_traits_request(req->body, &tr, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!moment_traits_ok(app, req, res, tr.traits))
        return;
    st = store_patch_traits(app->pool, req->match->id, &tr, &out, err, sizeof(err));
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else if (out == NULL)
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
    else
        set_profile_response(res, out);
}

void handle_lookup(struct app *app, const struct request *req, struct response *res)
{
    static const char *const shortcuts[] = {"email", "phone", "device", "loyalty_card"};
    const char *kind_name = NULL, *value = NULL, *ns = NULL, *v;
    enum id_kind kind;
    struct identifier id;
    char why[160], detail[256];
    struct profile_text p;
    enum db_status st;
    int given = 0;

    for (size_t i = 0; i < sizeof(shortcuts) / sizeof(shortcuts[0]); i++) {
        if (!query_param(req, res, shortcuts[i], &v))
            return;
        if (v != NULL) {
            kind_name = shortcuts[i];
            value = v;
            given++;
        }
    }
    if (!query_param(req, res, "kind", &v))
        return;
    if (v != NULL) {
        kind_name = v;
        given++;
        if (!query_param(req, res, "value", &value))
            return;
    }
    if (!query_param(req, res, "namespace", &ns))
        return;
    if (given != 1 || value == NULL) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "give exactly one identifier: kind=&value=[&namespace=], or one of "
                        "email=, phone=, device=, loyalty_card=",
                        req->path);
        return;
    }
    if (!id_kind_parse(kind_name, &kind)) {
        snprintf(detail, sizeof(detail), "unknown identifier kind '%.64s' (one of: %s)", kind_name,
                 id_kind_list());
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return;
    }
    if (!identifier_normalize(kind, ns, value, &id, why, sizeof(why), NULL)) {
        /* A URL query decodes '+' as a space: "?phone=+4930..." arrives as " 4930...". */
        snprintf(detail, sizeof(detail), "invalid %s: %s%s", kind_name, why,
                 kind == ID_PHONE && value[0] == ' '
                     ? " (a '+' in a query string means a space: write it as %2B, "
                       "e.g. ?phone=%2B4930123456)"
                     : "");
        respond_problem(res, PROBLEM_INVALID_QUERY, detail, req->path);
        return;
    }
    st = store_lookup(req->reads, &id, &p, why, sizeof(why));
    if (st != DB_OK) {
        profile_text_clear(&p);
        respond_db_failure(res, st, why, req->path);
        return;
    }
    respond_profile_text(app, req, res, &p, "customer.lookup", "no customer has this identifier");
}

/* Cursor = base64url("<occurred_at>|<interaction_id>"). */
static bool cursor_decode(const char *text, char *at, size_t atcap, char *id)
{
    unsigned char buf[128];
    long n = base64url_decode(text, buf, sizeof(buf));
    char *bar;
    if (n <= 0)
        return false;
    bar = strchr((char *)buf, '|');
    if (bar == NULL || (size_t)(bar - (char *)buf) >= atcap)
        return false;
    *bar = '\0';
    memcpy(at, buf, (size_t)(bar - (char *)buf) + 1);
    return rfc3339_valid(at) && uuid_canonical(bar + 1, id);
}

static char *cursor_encode(const char *at, const char *id)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s|%s", at, id);
    return base64url_encode((const unsigned char *)buf, (size_t)n);
}

void handle_timeline(struct app *app, const struct request *req, struct response *res)
{
    struct timeline_query q = {.limit = 50};
    const char *limit, *cursor;
    char cursor_at[64], cursor_id[UUID_TEXT_LEN + 1], err[API_ERR_LEN];
    json_t *out = NULL, *next_at, *next_id;
    enum db_status st;

    if (!query_param(req, res, "limit", &limit) || !query_param(req, res, "cursor", &cursor) ||
        !query_param(req, res, "channel", &q.channel) ||
        !query_param(req, res, "type", &q.type) || !query_param(req, res, "since", &q.since) ||
        !query_param(req, res, "until", &q.until))
        return;
    if (limit != NULL) {
        char *end;
        long n = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || n < 1 || n > 500) {
            respond_problem(res, PROBLEM_INVALID_QUERY, "limit must be an integer from 1 to 500",
                            req->path);
            return;
        }
        q.limit = (int)n;
    }
    if (cursor != NULL) {
        if (!cursor_decode(cursor, cursor_at, sizeof(cursor_at), cursor_id)) {
            respond_problem(res, PROBLEM_INVALID_QUERY, "cursor is not one this server issued",
                            req->path);
            return;
        }
        q.cursor_at = cursor_at;
        q.cursor_id = cursor_id;
    }
    if (q.channel != NULL && !channel_valid(q.channel)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "unknown channel", req->path);
        return;
    }
    if (q.type != NULL && !interaction_type_valid(q.type)) {
        respond_problem(res, PROBLEM_INVALID_QUERY, "unknown interaction type", req->path);
        return;
    }
    if ((q.since != NULL && !rfc3339_valid(q.since)) || (q.until != NULL && !rfc3339_valid(q.until))) {
        respond_problem(res, PROBLEM_INVALID_QUERY,
                        "since and until must be RFC 3339 timestamps with offset", req->path);
        return;
    }
    st = store_timeline(req->reads, req->match->id, &q, &out, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        return;
    }
    if (out == NULL) {
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this id", req->path);
        return;
    }
    if (respond_if_gone(res, out, req->path))
        return;
    if (!audit_read_or_fail(app, req, res, "customer.timeline",
                            json_string_value(json_object_get(out, "customer_id")))) {
        json_decref(out);
        return;
    }
    next_at = json_object_get(out, "next_cursor_at");
    next_id = json_object_get(out, "next_cursor_id");
    if (json_is_string(next_at) && json_is_string(next_id)) {
        char *c = cursor_encode(json_string_value(next_at), json_string_value(next_id));
        json_object_set_new(out, "next_cursor", json_string(c));
        free(c);
    } else {
        json_object_set_new(out, "next_cursor", json_null());
    }
    json_object_del(out, "next_cursor_at");
    json_object_del(out, "next_cursor_id");
    respond_json(res, 200, out);
}

/* A partner key reads the profile fields an admin shared with it, only for
 * customers who have an external id in its namespace and gave
 * partner_sharing consent (crm.partner_customer); anything else is a 404,
 * as for a customer that does not exist. The read is audited in the same
 * statement. */
void handle_partner_customer(struct app *app, const struct request *req, struct response *res)
{
    const char *params[2] = {req->match->id, req->who != NULL ? req->who->key_id : NULL};
    json_t *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st = store_call(app->pool, STMT_PARTNER_CUSTOMER, 2, params, &out, err,
                                   sizeof(err));
    respond_found(res, st, out, err, "no customer with this id", req->path);
}
