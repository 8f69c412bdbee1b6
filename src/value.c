/*
 * value: see include/value.h. The steps, each reported to progress:
 *   1. register the run (crm.model_runs) under an advisory lock,
 *   2. COPY the model inputs of every customer out of crm.value_inputs,
 *   3. fit BG/NBD on buyers and Gamma-Gamma on repeat buyers (clv.c),
 *   4. predict per customer and COPY the predictions into a temp table,
 *   5. crm.value_finish turns them into customer_value rows, RFM, tiers.
 * Customers without a purchase get CLV 0 and no model outputs.
 */
#include "value.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clv.h"
#include "metrics.h"

#define VALUE_LOCK_KEY "7412093002"
/* A Gamma-Gamma q past this, unconverged, is the model's boundary (see
 * fit_models); on the CDNOW data q is 4.1 (Fader, Hardie and Lee 2005). */
#define GG_BOUNDARY_Q 1e5

struct customer_row {
    char *line;     /* the COPY row, tab-split in place */
    char *fields[11];
    int purchase_days;
    double x, tx, T, zbar;
};

struct inputs {
    struct customer_row *rows;
    size_t n, cap;
    size_t buyers;
};

/* The run under way in this process (one at a time: the advisory lock),
 * for GET /v1/value/runs and /metrics. */
static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool running;
    char run_id[24];
    time_t started;
    char step[256];
} progress_now;

static void progress_set(bool running, const char *run_id, const char *step)
{
    pthread_mutex_lock(&progress_lock);
    if (running && !progress_now.running)
        progress_now.started = time(NULL);
    progress_now.running = running;
    snprintf(progress_now.run_id, sizeof(progress_now.run_id), "%s", run_id ? run_id : "");
    snprintf(progress_now.step, sizeof(progress_now.step), "%s", step ? step : "");
    pthread_mutex_unlock(&progress_lock);
    metrics_value_run_running(running);
}

json_t *value_progress(void)
{
    json_t *out = NULL;
    char started[32];
    struct tm tm;
    pthread_mutex_lock(&progress_lock);
    if (progress_now.running) {
        gmtime_r(&progress_now.started, &tm);
        strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", &tm);
        out = json_pack("{s:s?, s:s, s:I, s:s}", "run_id",
                        progress_now.run_id[0] ? progress_now.run_id : NULL, "started_at",
                        started, "seconds", (json_int_t)(time(NULL) - progress_now.started),
                        "step", progress_now.step);
    }
    pthread_mutex_unlock(&progress_lock);
    return out;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void report(void (*progress)(const char *), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report(void (*progress)(const char *), const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&progress_lock);
    snprintf(progress_now.step, sizeof(progress_now.step), "%.255s", msg);
    pthread_mutex_unlock(&progress_lock);
    if (progress != NULL)
        progress(msg);
}

static bool exec_ok(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(res);
    return ok;
}

/* Single-value query; returns malloc'd text or NULL. */
static char *query_value(PGconn *pg, const char *sql, int nparams, const char *const *params,
                         char *err, size_t errlen)
{
    PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    char *out = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        out = strdup(PQgetvalue(res, 0, 0));
    else
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    PQclear(res);
    return out;
}

static bool read_inputs(PGconn *pg, const char *run_id, struct inputs *in, char *err,
                        size_t errlen)
{
    char sql[256];
    PGresult *res;
    char *buf;
    int len;
    snprintf(sql, sizeof(sql),
             "COPY (SELECT * FROM crm.value_inputs((SELECT as_of FROM crm.model_runs "
             "WHERE run_id = %s))) TO STDOUT",
             run_id); /* run_id is the integer the database just gave us */
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
        return false;
    }
    PQclear(res);
    while ((len = PQgetCopyData(pg, &buf, 0)) > 0) {
        struct customer_row *row;
        char *p;
        int f = 0;
        if (in->n == in->cap) {
            in->cap = in->cap ? in->cap * 2 : 4096;
            in->rows = realloc(in->rows, in->cap * sizeof(*in->rows));
        }
        row = &in->rows[in->n++];
        memset(row, 0, sizeof(*row));
        row->line = strdup(buf);
        PQfreemem(buf);
        if (row->line[strlen(row->line) - 1] == '\n')
            row->line[strlen(row->line) - 1] = '\0';
        for (p = row->line; f < 11; f++) {
            row->fields[f] = p;
            p = strchr(p, '\t');
            if (p == NULL)
                break;
            *p++ = '\0';
        }
        row->purchase_days = atoi(row->fields[1]);
        if (row->purchase_days > 0) {
            row->x = atof(row->fields[2]);
            row->tx = atof(row->fields[3]);
            row->T = atof(row->fields[4]);
            row->zbar = atof(row->fields[5]);
            in->buyers++;
        }
    }
    res = PQgetResult(pg);
    if (len == -2 || PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
        return false;
    }
    PQclear(res);
    return true;
}

static void free_inputs(struct inputs *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->rows[i].line);
    free(in->rows);
}

struct fit {
    struct bgnbd_params bg;
    struct gg_params gg;
    struct fit_report bg_report, gg_report;
    bool has_bg, has_gg;
    /* why a model was not fitted (inputs it cannot describe), or NULL */
    const char *bg_skipped, *gg_skipped;
};

/* Fit BG/NBD on the buyers and Gamma-Gamma on the repeat buyers. Inputs a
 * model cannot describe are found before fitting and leave that model out
 * with the reason in bg_skipped / gg_skipped: no buyer with a repeat
 * purchase (BG/NBD: the dropout process is not identified), fewer than two
 * repeat buyers, or every repeat buyer with the same average spend
 * (Gamma-Gamma: no spread to fit; the expected spend is then that spend). */
static bool fit_models(const struct inputs *in, struct fit *fit)
{
    size_t nb = in->buyers, nr = 0, k = 0, j = 0, repeaters = 0;
    double *x = malloc(nb * sizeof(double)), *tx = malloc(nb * sizeof(double));
    double *T = malloc(nb * sizeof(double)), *rx = malloc(nb * sizeof(double));
    double *rz = malloc(nb * sizeof(double));
    bool ok = false, spread = false;
    for (size_t i = 0; i < in->n; i++) {
        const struct customer_row *row = &in->rows[i];
        if (row->purchase_days == 0)
            continue;
        x[k] = row->x;
        tx[k] = row->tx;
        T[k] = row->T;
        k++;
        if (row->x > 0)
            repeaters++;
        if (row->x > 0 && row->zbar > 0) {
            rx[j] = row->x;
            rz[j] = row->zbar;
            spread = spread || (j > 0 && rz[j] != rz[0]);
            j++;
        }
    }
    nr = j;
    if (repeaters == 0) {
        fit->bg_skipped = "no buyer has purchases on two different days: BG/NBD cannot be "
                          "fitted; historic value, RFM and tiers only";
        goto out;
    }
    bgnbd_fit(x, tx, T, NULL, nb, &fit->bg, &fit->bg_report);
    ok = isfinite(fit->bg_report.log_likelihood) && fit->bg.r > 0 && fit->bg.alpha > 0 &&
         fit->bg.a > 0 && fit->bg.b > 0;
    if (!ok)
        fit->bg_skipped = "the BG/NBD likelihood is not finite at any point tried";
    else if (nr < 2)
        fit->gg_skipped = "fewer than 2 repeat buyers with a spend: Gamma-Gamma not fitted; "
                          "the expected spend is the mean repeat spend";
    else if (!spread)
        fit->gg_skipped = "every repeat buyer has the same average spend: Gamma-Gamma cannot "
                          "be fitted; the expected spend is that spend";
    else {
        gg_fit(rx, rz, NULL, nr, &fit->gg, &fit->gg_report);
        fit->has_gg = isfinite(fit->gg_report.log_likelihood) && fit->gg.q > 1;
        if (!fit->has_gg) {
            fit->gg_skipped = "the Gamma-Gamma fit ended outside q > 1 (no finite mean spend)";
        } else if (!fit->gg_report.converged && fit->gg.q > GG_BOUNDARY_Q) {
            /* q, gamma -> infinity with gamma/q fixed: the limit of a model
             * without spread in mean spend between customers, where every
             * E[Z] is the population mean; taken as that limit, not a fit */
            fit->has_gg = false;
            fit->gg_skipped = "the Gamma-Gamma fit ran to its boundary (q -> infinity: no "
                              "spread in average spend between customers); the expected spend "
                              "is the mean repeat spend";
        }
    }
out:
    free(x);
    free(tx);
    free(T);
    free(rx);
    free(rz);
    return ok;
}

/* One COPY line of value_stage per customer. */
static int stage_line(const struct customer_row *row, const struct fit *fit, double horizon,
                      double margin, double mean_spend, char *out, size_t cap,
                      size_t *nonfinite)
{
    const char *const *f = (const char *const *)row->fields;
    double p_alive = 0, purchases = 0, spend = 0;
    bool predicted = row->purchase_days > 0 && fit->has_bg;
    if (predicted) {
        p_alive = bgnbd_p_alive(&fit->bg, row->x, row->tx, row->T);
        purchases = bgnbd_expected_purchases(&fit->bg, horizon, row->x, row->tx, row->T);
        spend = fit->has_gg && row->x > 0 && row->zbar > 0
                    ? gg_expected_spend(&fit->gg, row->x, row->zbar)
                    : mean_spend;
        /* A fit at the edge of the parameter space can make the 2F1 series
         * give up (NaN): store no prediction rather than a NaN CLV. */
        if (!isfinite(p_alive) || !isfinite(purchases) || !isfinite(spend)) {
            predicted = false;
            (*nonfinite)++;
        }
    }
    if (!predicted) /* no prediction: CLV 0 */
        return snprintf(out, cap, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\\N\t\\N\t\\N\t0\n",
                        f[0], row->purchase_days, f[2], f[3], f[4], f[5], f[6], f[7], f[8],
                        f[9], f[10]);
    return snprintf(out, cap, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.10g\t%.10g\t%.10g\t%.4f\n",
                    f[0], row->purchase_days, f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
                    f[10], p_alive, purchases, spend, purchases * spend * margin);
}

static bool stage_predictions(PGconn *pg, const struct inputs *in, const struct fit *fit,
                              double horizon, double margin, size_t *nonfinite, char *err,
                              size_t errlen)
{
    PGresult *res;
    char line[1024];
    double mean_spend = 0;
    size_t repeat = 0;
    if (!exec_ok(pg,
                 "CREATE TEMP TABLE value_stage (customer_id uuid, purchase_days int, x int, "
                 "t_x double precision, t_cal double precision, zbar double precision, "
                 "revenue numeric, returns numeric, cost numeric, first_purchase_at timestamptz, "
                 "last_purchase_at timestamptz, p_alive double precision, "
                 "expected_purchases double precision, expected_spend double precision, "
                 "clv double precision) ON COMMIT DROP",
                 err, errlen))
        return false;
    /* Spend for buyers without repeat purchases: the population mean of the model. */
    if (fit->has_gg)
        mean_spend = gg_population_mean(&fit->gg);
    else
        for (size_t i = 0; i < in->n; i++)
            if (in->rows[i].x > 0) {
                mean_spend += in->rows[i].zbar;
                repeat++;
            }
    if (!fit->has_gg && repeat > 0)
        mean_spend /= (double)repeat;

    res = PQexec(pg, "COPY value_stage FROM STDIN");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
        return false;
    }
    PQclear(res);
    for (size_t i = 0; i < in->n; i++) {
        int n = stage_line(&in->rows[i], fit, horizon, margin, mean_spend, line, sizeof(line),
                           nonfinite);
        if (PQputCopyData(pg, line, n) != 1) {
            snprintf(err, errlen, "%s", PQerrorMessage(pg));
            return false;
        }
    }
    if (PQputCopyEnd(pg, NULL) != 1) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        return false;
    }
    res = PQgetResult(pg);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
        return false;
    }
    PQclear(res);
    return true;
}

static json_t *params_json(const struct fit *fit)
{
    json_t *p;
    if (!fit->has_bg)
        return json_object();
    p = json_pack("{s:{s:f, s:f, s:f, s:f, s:f, s:i, s:b}}", "bgnbd", "r", fit->bg.r,
                          "alpha", fit->bg.alpha, "a", fit->bg.a, "b", fit->bg.b,
                          "log_likelihood", fit->bg_report.log_likelihood, "iterations",
                          fit->bg_report.iterations, "converged", fit->bg_report.converged);
    if (fit->has_gg)
        json_object_set_new(p, "gamma_gamma",
                            json_pack("{s:f, s:f, s:f, s:f, s:i, s:b}", "p", fit->gg.p, "q",
                                      fit->gg.q, "gamma", fit->gg.gamma, "log_likelihood",
                                      fit->gg_report.log_likelihood, "iterations",
                                      fit->gg_report.iterations, "converged",
                                      fit->gg_report.converged));
    return p;
}

/* A run whose fit did not converge: what is recorded once its transaction
 * is rolled back (nothing of it is applied). */
struct failure {
    bool failed;
    char error[512];
    char *as_of, *started_at, *live, *settings, *params, *diagnostics;
    char customers[24], buyers[24];
};

static void failure_free(struct failure *f)
{
    free(f->as_of);
    free(f->started_at);
    free(f->live);
    free(f->settings);
    free(f->params);
    free(f->diagnostics);
}

/* The reasons the run left a model out, for the answer and the run row. */
static json_t *diagnostics_json(const struct fit *fit, const struct inputs *in)
{
    size_t repeaters = 0;
    for (size_t i = 0; i < in->n; i++)
        repeaters += in->rows[i].purchase_days > 1;
    json_t *d = json_pack("{s:I, s:I, s:I}", "customers", (json_int_t)in->n, "buyers",
                          (json_int_t)in->buyers, "repeat_buyers", (json_int_t)repeaters);
    if (fit->bg_skipped != NULL)
        json_object_set_new(d, "bgnbd_not_fitted", json_string(fit->bg_skipped));
    if (fit->gg_skipped != NULL)
        json_object_set_new(d, "gamma_gamma_not_fitted", json_string(fit->gg_skipped));
    return d;
}

/* Everything inside the transaction; false leaves err set, or fails
 * (the fit did not converge) with what to record in *failure. */
static bool recompute_in_tx(PGconn *pg, const char *as_of, bool live,
                            void (*progress)(const char *),
                            json_t **summary, struct failure *failure, char *err,
                            size_t errlen)
{
    struct inputs in = {0};
    struct fit fit = {0};
    struct timespec t0, tfit;
    char *run_id = NULL, *settings = NULL, *finish = NULL, *params_text, *diag_text;
    double horizon = 52, margin = 1, fit_seconds;
    size_t nonfinite = 0;
    const char *params[4];
    json_t *params_doc, *settings_doc, *diag_doc;
    bool ok = false;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!exec_ok(pg, "SET LOCAL statement_timeout = 0; SELECT pg_advisory_xact_lock(" VALUE_LOCK_KEY ")",
                 err, errlen))
        return false;
    /* A live run replaces the live values; another only writes its snapshot
     * (ROC and customer equity at a past date). */
    params[0] = as_of;
    params[1] = live ? "true" : "false";
    run_id = query_value(pg,
                         "INSERT INTO crm.model_runs (model, as_of, started_at, live, dated, "
                         "settings) VALUES ('bgnbd+gamma-gamma', coalesce($1::timestamptz, now()), "
                         "clock_timestamp(), $2::boolean, $1 IS NOT NULL, crm.value_settings()) "
                         "RETURNING run_id",
                         2, params, err, errlen);
    if (run_id == NULL)
        goto out;
    progress_set(true, run_id, "reading the inputs");
    params[0] = run_id;
    settings = query_value(pg, "SELECT settings FROM crm.model_runs WHERE run_id = $1::bigint",
                           1, params, err, errlen);
    if (settings == NULL)
        goto out;
    settings_doc = json_loads(settings, 0, NULL);
    horizon = json_number_value(json_object_get(settings_doc, "clv_horizon_weeks"));
    margin = json_number_value(json_object_get(settings_doc, "clv_margin"));
    json_decref(settings_doc);

    if (!read_inputs(pg, run_id, &in, err, errlen))
        goto out;
    report(progress, "run %s: read %zu customers (%zu buyers) in %.2f s", run_id, in.n, in.buyers,
           seconds_since(&t0));
    clock_gettime(CLOCK_MONOTONIC, &tfit);
    /* Too few buyers to fit: historic value, RFM and tiers still count. */
    if (in.buyers < 2)
        fit.bg_skipped = "fewer than 2 buyers: no model fitted; historic value, RFM and tiers only";
    fit.has_bg = in.buyers >= 2 && fit_models(&in, &fit);
    fit_seconds = seconds_since(&tfit);
    params_doc = params_json(&fit);
    params_text = json_dumps(params_doc, JSON_COMPACT);
    json_decref(params_doc);
    diag_doc = diagnostics_json(&fit, &in);
    diag_text = json_dumps(diag_doc, JSON_COMPACT);
    json_decref(diag_doc);
    if (fit.has_bg && (!fit.bg_report.converged || (fit.has_gg && !fit.gg_report.converged))) {
        bool bg = !fit.bg_report.converged;
        const struct fit_report *r = bg ? &fit.bg_report : &fit.gg_report;
        snprintf(failure->error, sizeof(failure->error),
                 "the %s fit did not converge after %d iterations; the live values keep the "
                 "last converged model",
                 bg ? "BG/NBD" : "Gamma-Gamma", r->iterations);
        report(progress, "run %s: %s", run_id, failure->error);
        failure->failed = true;
        failure->as_of = query_value(pg, "SELECT as_of::text FROM crm.model_runs "
                                         "WHERE run_id = $1::bigint", 1, params, err, errlen);
        failure->started_at = query_value(pg, "SELECT started_at::text FROM crm.model_runs "
                                              "WHERE run_id = $1::bigint", 1, params, err, errlen);
        failure->live = strdup(live ? "true" : "false");
        failure->settings = settings;
        settings = NULL;
        failure->params = params_text;
        failure->diagnostics = diag_text;
        snprintf(failure->customers, sizeof(failure->customers), "%zu", in.n);
        snprintf(failure->buyers, sizeof(failure->buyers), "%zu", in.buyers);
        snprintf(err, errlen, "%s", failure->error);
        goto out;
    }
    if (fit.has_bg)
        report(progress,
               "run %s: BG/NBD r=%.4f alpha=%.4f a=%.4f b=%.4f (LL %.2f); Gamma-Gamma %s; "
               "fit %.2f s",
               run_id, fit.bg.r, fit.bg.alpha, fit.bg.a, fit.bg.b, fit.bg_report.log_likelihood,
               fit.has_gg ? "fitted" : fit.gg_skipped, fit_seconds);
    else
        report(progress, "run %s: no model fitted: %s", run_id,
               fit.bg_skipped ? fit.bg_skipped : "no buyers");
    if (!stage_predictions(pg, &in, &fit, horizon, margin, &nonfinite, err, errlen)) {
        free(params_text);
        free(diag_text);
        goto out;
    }
    report(progress, "run %s: staged %zu predictions at %.2f s", run_id, in.n, seconds_since(&t0));
    if (nonfinite > 0)
        report(progress, "run %s: %zu customers got no prediction (model not finite for them)",
               run_id, nonfinite);
    {
        char ll[32], secs[32];
        const char *upd[5] = {run_id, params_text, ll, secs, diag_text};
        PGresult *res;
        snprintf(ll, sizeof(ll), "%.6f", fit.bg_report.log_likelihood);
        if (!fit.has_bg)
            upd[2] = NULL;
        snprintf(secs, sizeof(secs), "%.6f", fit_seconds);
        res = PQexecParams(pg,
                           "UPDATE crm.model_runs SET params = $2::jsonb, log_likelihood = $3, "
                           "fit_seconds = $4, diagnostics = $5::jsonb WHERE run_id = $1::bigint",
                           5, NULL, upd, NULL, NULL, 0);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
    }
    free(params_text);
    free(diag_text);
    if (!ok)
        goto out;
    finish = query_value(pg,
                         "SELECT crm.value_finish($1::bigint) || jsonb_build_object("
                         "'status', 'succeeded', "
                         "'as_of', (SELECT crm.ts(as_of) FROM crm.model_runs WHERE run_id = $1::bigint), "
                         "'params', (SELECT params FROM crm.model_runs WHERE run_id = $1::bigint), "
                         "'diagnostics', (SELECT diagnostics FROM crm.model_runs WHERE run_id = $1::bigint), "
                         "'fit_seconds', (SELECT fit_seconds FROM crm.model_runs WHERE run_id = $1::bigint))",
                         1, params, err, errlen);
    /* Fresh statistics, or segment queries plan against the old tiers. */
    ok = finish != NULL && exec_ok(pg, "ANALYZE crm.customer_value", err, errlen);
    if (ok) {
        *summary = json_loads(finish, 0, NULL);
        json_object_set_new(*summary, "unpredicted_buyers", json_integer((json_int_t)nonfinite));
        report(progress, "run %s: finished in %.2f s", run_id, seconds_since(&t0));
    }
out:
    free(run_id);
    free(settings);
    free(finish);
    free_inputs(&in);
    return ok;
}

/* Record a failed run (its own transaction, after the run's was rolled
 * back); the run as GET /v1/value/runs shows it, or NULL. */
static json_t *record_failure(PGconn *pg, const struct failure *f)
{
    const char *params[9] = {f->as_of,  f->started_at, f->live,      f->settings, f->params,
                             f->error,  f->diagnostics, f->customers, f->buyers};
    char err[256];
    char *doc = query_value(pg,
                            "INSERT INTO crm.model_runs AS m (model, as_of, started_at, "
                            "finished_at, status, live, settings, params, error, diagnostics, "
                            "customers, buyers) VALUES ('bgnbd+gamma-gamma', $1::timestamptz, "
                            "$2::timestamptz, clock_timestamp(), 'failed', $3::boolean, $4::jsonb, "
                            "$5::jsonb, $6, $7::jsonb, $8::bigint, $9::bigint) "
                            "RETURNING crm.value_run_doc(m)",
                            9, params, err, sizeof(err));
    json_t *out = doc != NULL ? json_loads(doc, 0, NULL) : NULL;
    free(doc);
    return out;
}

enum db_status value_recompute(struct db_pool *pool, const char *as_of, bool live,
                               void (*progress)(const char *message), json_t **summary,
                               char *err, size_t errlen)
{
    struct db_conn *conn = db_acquire(pool, 5000);
    struct failure failure = {0};
    PGconn *pg;
    bool ok, broken, cancelled;
    *summary = NULL;
    if (conn == NULL) {
        snprintf(err, errlen, "database unavailable");
        return DB_UNAVAILABLE;
    }
    pg = db_pg(conn);
    progress_set(true, NULL, "waiting for the run lock");
    ok = exec_ok(pg, "BEGIN", err, errlen) &&
         recompute_in_tx(pg, as_of, live, progress, summary, &failure, err, errlen);
    if (ok)
        ok = exec_ok(pg, "COMMIT", err, errlen);
    else
        exec_ok(pg, "ROLLBACK", err + strlen(err), errlen - strlen(err));
    if (!ok) {
        json_decref(*summary);
        *summary = NULL;
    }
    if (failure.failed && PQstatus(pg) == CONNECTION_OK) {
        json_t *run = record_failure(pg, &failure);
        if (run != NULL) {
            *summary = json_pack("{s:s, s:s, s:o}", "status", "failed", "error", failure.error,
                                 "run", run);
            ok = true;
        }
    }
    progress_set(false, NULL, NULL);
    metrics_value_run_done(failure.failed ? "failed" : ok ? "succeeded" : "error");
    failure_free(&failure);
    broken = PQstatus(pg) != CONNECTION_OK;
    cancelled = !ok && db_cancel_was_sent(pool, conn);
    db_release(pool, conn, broken);
    if (ok)
        return DB_OK;
    if (cancelled)
        return DB_CANCELLED;
    return broken ? DB_UNAVAILABLE : DB_ERROR;
}
