/*
 * interactions: ingest, one interaction or a batch, idempotent on (source,
 * external_id). A batch answers item by item: invalid, forbidden and blocked
 * items fail alone while the valid ones are stored in one transaction. An
 * interaction may name a case (case_id) or open one (a complaint): the
 * database checks that the case is its customer's and answers
 * case_mismatch otherwise, which is a 422 on /case_id (docs/cases.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "metrics.h"
#include "store.h"
#include "validate.h"

/* An interaction naming a case of another customer (or no case): nothing
 * is stored (docs/cases.md). */
static const char CASE_MISMATCH[] =
    "'case_id' must name a case of the customer the interaction is stored for";

void handle_interaction(struct app *app, const struct request *req, struct response *res)
{
    struct interaction_request ir;
    json_t *errors = json_array(), *out = NULL;
    char err[API_ERR_LEN];
    enum db_status st;
    const char *status;
    bool created;

    if (!validate_interaction(req->body, "", &ir, errors)) {
        interaction_request_clear(&ir);
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    if (!partner_scope_ok(req->who, ir.by_customer_id, &ir.ids)) {
        interaction_request_clear(&ir);
        respond_problem(res, PROBLEM_FORBIDDEN, PARTNER_SCOPE, req->path);
        return;
    }
    st = store_ingest(app->pool, &ir, &out, err, sizeof(err));
    interaction_request_clear(&ir);
    if (st != DB_OK || out == NULL) {
        respond_db_failure(res, st == DB_OK ? DB_ERROR : st, err, req->path);
        json_decref(out);
        return;
    }
    if (respond_if_blocked(out, "", req->path, res)) {
        metrics_ingest(0, 0, 1);
        json_decref(out);
        return;
    }
    status = json_string_value(json_object_get(out, "status"));
    if (status != NULL && strcmp(status, "case_mismatch") == 0) {
        metrics_ingest(0, 0, 1);
        json_decref(out);
        errors = json_array();
        verr_add(errors, "", "case_id", "%s", CASE_MISMATCH);
        respond_validation(res, errors, req->path);
        return;
    }
    if (status != NULL && strcmp(status, "not_found") == 0) {
        metrics_ingest(0, 0, 1);
        json_decref(out);
        respond_problem(res, PROBLEM_NOT_FOUND, "no customer with this customer_id", req->path);
        return;
    }
    created = status != NULL && strcmp(status, "created") == 0;
    metrics_ingest(created, !created, 0);
    respond_json(res, created ? 201 : 200, out);
}

void handle_batch(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors = json_array(), *items = NULL, *item, *results, *out;
    struct interaction_request *reqs, **valid;
    json_t **stored;
    size_t i, n;
    int created = 0, duplicates = 0, failed = 0;
    char err[API_ERR_LEN];
    enum db_status st;

    if (!validate_batch_envelope(req->body, &items, errors)) {
        respond_validation(res, errors, req->path);
        return;
    }
    json_decref(errors);
    n = json_array_size(items);
    reqs = calloc(n, sizeof(*reqs));
    valid = calloc(n, sizeof(*valid));
    stored = calloc(n, sizeof(*stored));
    results = json_array();
    json_array_foreach(items, i, item) {
        char prefix[32];
        json_t *item_errors = json_array();
        snprintf(prefix, sizeof(prefix), "/items/%zu", i);
        if (validate_interaction(item, prefix, &reqs[i], item_errors) &&
            !partner_scope_ok(req->who, reqs[i].by_customer_id, &reqs[i].ids)) {
            json_decref(item_errors);
            json_array_append_new(results,
                                  json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                            "failed", "problem",
                                            problem_new(PROBLEM_FORBIDDEN, PARTNER_SCOPE,
                                                        req->path)));
        } else if (json_array_size(item_errors) == 0) {
            valid[i] = &reqs[i];
            json_array_append_new(results, json_null());
            json_decref(item_errors);
        } else {
            json_array_append_new(results,
                                  json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                            "failed", "problem",
                                            problem_validation(item_errors, req->path)));
        }
    }
    st = store_ingest_batch(app->pool, valid, (int)n, stored, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        json_decref(results);
        goto done;
    }
    for (i = 0; i < n; i++) {
        const char *status;
        if (valid[i] == NULL) {
            failed++;
            continue;
        }
        status = stored[i] ? json_string_value(json_object_get(stored[i], "status")) : NULL;
        if (status != NULL && strcmp(status, "created") == 0) {
            created++;
        } else if (status != NULL && strcmp(status, "duplicate") == 0) {
            duplicates++;
        } else if (status != NULL && strcmp(status, "blocked") == 0) {
            struct response blocked = {0};
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "/items/%zu", i);
            respond_if_blocked(stored[i], prefix, req->path, &blocked);
            failed++;
            json_array_set_new(results, i,
                               json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                         "failed", "problem", blocked.body));
            continue;
        } else if (status != NULL && strcmp(status, "case_mismatch") == 0) {
            json_t *item_errors = json_array();
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "/items/%zu", i);
            verr_add(item_errors, prefix, "case_id", "%s", CASE_MISMATCH);
            failed++;
            json_array_set_new(results, i,
                               json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                         "failed", "problem",
                                         problem_validation(item_errors, req->path)));
            continue;
        } else {
            enum problem_kind kind = status != NULL && strcmp(status, "not_found") == 0
                                         ? PROBLEM_NOT_FOUND : PROBLEM_INTERNAL;
            failed++;
            json_array_set_new(results, i,
                               json_pack("{s:I, s:s, s:o}", "index", (json_int_t)i, "status",
                                         "failed", "problem",
                                         problem_new(kind, kind == PROBLEM_NOT_FOUND
                                                               ? "no customer with this customer_id"
                                                               : "the item could not be stored",
                                                     req->path)));
            continue;
        }
        out = json_pack("{s:I}", "index", (json_int_t)i);
        json_object_update(out, stored[i]);
        json_array_set_new(results, i, out);
    }
    metrics_ingest(created, duplicates, failed);
    respond_json(res, 200,
                 json_pack("{s:i, s:i, s:i, s:o}", "created", created, "duplicates", duplicates,
                           "failed", failed, "results", results));
done:
    for (i = 0; i < n; i++) {
        interaction_request_clear(&reqs[i]);
        json_decref(stored[i]);
    }
    free(reqs);
    free(valid);
    free(stored);
}
