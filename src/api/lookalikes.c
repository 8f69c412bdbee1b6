/*
 * lookalikes: GET /v1/segments/{id}/lookalikes (docs/lookalikes.md). Reads
 * every live customer's features in one statement, fits the segment's
 * model (lookalike.c: members against everyone else, on the four fifths
 * not held out, AUC on the held-out fifth) unless a fit newer than
 * FIT_MAX_AGE_S and than the segment's last change is cached, keeps a new
 * fit, then scores the non-members in one pass in C, keeping the best
 * `limit` in a heap, each with its three largest feature contributions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "log.h"
#include "lookalike.h"
#include "store_lookalike.h"
#include "store_value.h"

#define FIT_MAX_AGE_S 600 /* a fit is used for 10 minutes (or until the segment changes) */
#define LAMBDA 1.0        /* the L2 penalty on the standardised coefficients */
#define TOP_FEATURES 3
#define LIMIT_MAX 500

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void feature_name(json_t *needs, int j, char *out, size_t cap)
{
    if (j < LA_BASE_FEATURES)
        snprintf(out, cap, "%s", lookalike_feature_name(j));
    else
        snprintf(out, cap, "need:%s",
                 json_string_value(json_array_get(needs, (size_t)(j - LA_BASE_FEATURES))));
}

static json_t *model_doc(const struct lookalike_model *m, json_t *needs)
{
    json_t *features = json_array();
    char name[160];
    for (int j = 0; j < m->p; j++) {
        feature_name(needs, j, name, sizeof(name));
        json_array_append_new(features,
                              json_pack("{s:s, s:f, s:f, s:f}", "name", name, "mean", m->mean[j],
                                        "sd", m->sd[j], "coefficient", m->coef[j]));
    }
    return json_pack("{s:f, s:f, s:i, s:b, s:o}", "lambda", m->lambda, "intercept",
                     m->intercept, "iterations", m->iterations, "converged", m->converged,
                     "features", features);
}

/* A kept model back into m; false when it does not have p features. */
static bool model_read(json_t *doc, int p, struct lookalike_model *m)
{
    json_t *features = json_object_get(doc, "features"), *f;
    size_t j;
    memset(m, 0, sizeof(*m));
    if (json_array_size(features) != (size_t)p || p > LOOKALIKE_FEATURES)
        return false;
    m->p = p;
    m->intercept = json_number_value(json_object_get(doc, "intercept"));
    m->lambda = json_number_value(json_object_get(doc, "lambda"));
    json_array_foreach(features, j, f) {
        m->mean[j] = json_number_value(json_object_get(f, "mean"));
        m->sd[j] = json_number_value(json_object_get(f, "sd"));
        m->coef[j] = json_number_value(json_object_get(f, "coefficient"));
        if (!(m->sd[j] > 0))
            return false;
    }
    return true;
}

/* Fit on the rows not held out; *fit: the document to keep. false with res
 * filled when the segment cannot be learnt from. */
static bool fit_rows(const struct request *req, struct response *res,
                     const struct lookalike_rows *rows, json_t *needs,
                     struct lookalike_model *m, json_t **fit)
{
    bool *train = malloc(rows->n * sizeof(bool) + 1), *test = malloc(rows->n * sizeof(bool) + 1);
    double *score = malloc(rows->n * sizeof(double) + 1), auc;
    size_t pos = 0, neg = 0, held = 0;
    struct timespec t0;
    bool ok = false;
    if (train == NULL || test == NULL || score == NULL) {
        respond_problem(res, PROBLEM_INTERNAL, "out of memory", req->path);
        goto out;
    }
    for (size_t i = 0; i < rows->n; i++) {
        test[i] = lookalike_held_out(rows->ids[i]);
        train[i] = !test[i];
        held += test[i];
        if (train[i])
            *(rows->member[i] ? &pos : &neg) += 1;
    }
    if (pos < 2 || neg < 2) {
        respond_problem(res, PROBLEM_CONFLICT,
                        "too few customers to learn from: the part of the segment the model is "
                        "fitted on (four fifths of the live customers) needs at least 2 members "
                        "and 2 other customers",
                        req->path);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!lookalike_fit(rows->x, rows->member, train, rows->n, rows->p, LAMBDA, 0, m)) {
        respond_problem(res, PROBLEM_INTERNAL, "the look-alike model could not be fitted",
                        req->path);
        goto out;
    }
    for (size_t i = 0; i < rows->n; i++)
        score[i] = test[i] ? lookalike_logit(m, rows->x + i * (size_t)rows->p) : 0.0;
    auc = lookalike_auc(score, rows->member, test, rows->n);
    *fit = json_pack("{s:I, s:I, s:I, s:o, s:i, s:O, s:o}", "n", (json_int_t)rows->n,
                     "positives", (json_int_t)rows->members, "held_out_n", (json_int_t)held,
                     "held_out_auc", isnan(auc) ? json_null() : json_real(auc), "fit_ms",
                     (int)ms_since(&t0), "needs", needs, "model", model_doc(m, needs));
    ok = *fit != NULL;
    if (!ok)
        respond_problem(res, PROBLEM_INTERNAL, "out of memory", req->path);
out:
    free(train);
    free(test);
    free(score);
    return ok;
}

struct ranked {
    double score;
    size_t row;
};

/* a ranks below b: lower score, or the same score and a later id. */
static bool below(const struct lookalike_rows *rows, const struct ranked *a,
                  const struct ranked *b)
{
    if (a->score != b->score)
        return a->score < b->score;
    return strcmp(rows->ids[a->row], rows->ids[b->row]) > 0;
}

static void sift_down(const struct lookalike_rows *rows, struct ranked *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, least = i;
        struct ranked t;
        if (l < n && below(rows, &h[l], &h[least]))
            least = l;
        if (r < n && below(rows, &h[r], &h[least]))
            least = r;
        if (least == i)
            return;
        t = h[i], h[i] = h[least], h[least] = t;
        i = least;
    }
}

static int by_rank(const void *a, const void *b, void *rows)
{
    return below(rows, a, b) ? 1 : below(rows, b, a) ? -1 : 0;
}

/* The best limit non-members, best first, into items. */
static json_t *rank(const struct lookalike_rows *rows, const struct lookalike_model *m,
                    json_t *needs, int limit)
{
    struct ranked *heap = malloc(sizeof(*heap) * (size_t)limit);
    json_t *items = json_array();
    int n = 0;
    if (heap == NULL)
        return items;
    for (size_t i = 0; i < rows->n; i++) {
        struct ranked c;
        if (rows->member[i])
            continue;
        c = (struct ranked){lookalike_score(m, rows->x + i * (size_t)rows->p), i};
        if (n < limit) {
            int k = n++;
            heap[k] = c;
            while (k > 0 && below(rows, &heap[k], &heap[(k - 1) / 2])) {
                struct ranked t = heap[k];
                heap[k] = heap[(k - 1) / 2], heap[(k - 1) / 2] = t;
                k = (k - 1) / 2;
            }
        } else if (below(rows, &heap[0], &c)) {
            heap[0] = c;
            sift_down(rows, heap, n, 0);
        }
    }
    qsort_r(heap, (size_t)n, sizeof(*heap), by_rank, (void *)rows);
    for (int t = 0; t < n; t++) {
        const double *row = rows->x + heap[t].row * (size_t)rows->p;
        int idx[TOP_FEATURES];
        double contrib[TOP_FEATURES];
        int k = lookalike_top_features(m, row, TOP_FEATURES, idx, contrib);
        json_t *top = json_array();
        char name[160];
        for (int j = 0; j < k; j++) {
            feature_name(needs, idx[j], name, sizeof(name));
            json_array_append_new(top, json_pack("{s:s, s:f}", "name", name, "contribution",
                                                 contrib[j]));
        }
        json_array_append_new(items, json_pack("{s:s, s:f, s:o}", "customer_id",
                                               rows->ids[heap[t].row], "score", heap[t].score,
                                               "top_features", top));
    }
    free(heap);
    return items;
}

/* The fit's metadata as answered: the kept document without the model's
 * standardisation, with the coefficients by name. */
static json_t *fit_answer(json_t *fit, bool cached)
{
    json_t *out = json_deep_copy(fit), *features = json_array(), *f;
    json_t *model = json_object_get(fit, "model");
    size_t j;
    json_array_foreach(json_object_get(model, "features"), j, f)
        json_array_append_new(features, json_pack("{s:O, s:O}", "name",
                                                  json_object_get(f, "name"), "coefficient",
                                                  json_object_get(f, "coefficient")));
    json_object_del(out, "model");
    json_object_set_new(out, "intercept", json_deep_copy(json_object_get(model, "intercept")));
    json_object_set_new(out, "features", features);
    json_object_set_new(out, "cached", json_boolean(cached));
    return out;
}

void handle_segment_lookalikes(struct app *app, const struct request *req,
                               struct response *res)
{
    const char *id = req->match->id;
    json_t *segment = NULL, *fit = NULL, *needs = NULL, *saved = NULL;
    struct lookalike_rows rows = {0};
    struct lookalike_model m;
    char err[API_ERR_LEN] = "";
    struct timespec t0;
    double read_ms, score_ms, fit_ms = -1;
    enum db_status st;
    int limit;
    json_t *items;
    if (!int_param(req, res, "limit", 20, 1, LIMIT_MAX, &limit))
        return;
    st = store_segment_get(app->pool, id, &segment, err, sizeof(err));
    if (st != DB_OK || segment == NULL) {
        respond_found(res, st, segment, err, "no segment with this id", req->path);
        return;
    }
    json_decref(segment);
    st = store_lookalike_fit_get(app->pool, id, FIT_MAX_AGE_S, &fit, err, sizeof(err));
    if (st == DB_OK && fit != NULL)
        needs = json_incref(json_object_get(fit, "needs"));
    else if (st == DB_OK)
        st = store_lookalike_needs(app->pool, id, LOOKALIKE_NEEDS, &needs, err, sizeof(err));
    if (st != DB_OK || !json_is_array(needs)) {
        respond_db_failure(res, st != DB_OK ? st : DB_ERROR, err, req->path);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = store_lookalike_rows(app->pool, id, needs, &rows, err, sizeof(err));
    if (st != DB_OK) {
        respond_db_failure(res, st, err, req->path);
        goto out;
    }
    read_ms = ms_since(&t0);
    if (fit != NULL && !model_read(json_object_get(fit, "model"), rows.p, &m)) {
        json_decref(fit); /* a kept model of another shape: fit again */
        fit = NULL;
    }
    if (fit == NULL) {
        json_t *doc = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (!fit_rows(req, res, &rows, needs, &m, &doc))
            goto out;
        fit_ms = ms_since(&t0);
        st = store_lookalike_fit_save(app->pool, id, doc, &saved, err, sizeof(err));
        json_decref(doc);
        if (st != DB_OK || saved == NULL) {
            respond_found(res, st, saved, err, "no segment with this id", req->path);
            saved = NULL;
            goto out;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    items = rank(&rows, &m, needs, limit);
    score_ms = ms_since(&t0);
    if (fit_ms < 0)
        log_msg(LOG_INFO, "lookalike",
                "segment %s: %zu customers read in %.0f ms, cached fit, scored in %.0f ms", id,
                rows.n, read_ms, score_ms);
    else
        log_msg(LOG_INFO, "lookalike",
                "segment %s: %zu customers read in %.0f ms, fitted in %.0f ms, scored in %.0f ms",
                id, rows.n, read_ms, fit_ms, score_ms);
    respond_json(res, 200,
                 json_pack("{s:s, s:o, s:o, s:{s:f, s:o, s:f}}", "segment_id", id, "fit",
                           fit_answer(saved != NULL ? saved : fit, saved == NULL), "items",
                           items, "timings", "read_ms", read_ms, "fit_ms",
                           fit_ms < 0 ? json_null() : json_real(fit_ms), "score_ms",
                           score_ms));
out:
    lookalike_rows_free(&rows);
    json_decref(fit);
    json_decref(saved);
    json_decref(needs);
}
