/*
 * store_lookalike: see include/store_lookalike.h. The feature rows travel
 * by COPY (text), parsed line by line into flat arrays: at a million
 * customers that is one statement and about 190 bytes a row in memory
 * (17 doubles, the label and the id), with no result set held by libpq.
 * COPY takes no parameters, so the segment id (a canonical UUID) and the
 * needs (as a JSON literal) are quoted by PQescapeLiteral. The read runs in
 * a read-only transaction of its own with READ_TIMEOUT instead of the
 * pool's 30 s statement_timeout: it reads every live customer (like the
 * moments run, which has 300 s).
 */
#include "store_lookalike.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define READ_TIMEOUT "300s"

void lookalike_rows_free(struct lookalike_rows *rows)
{
    free(rows->x);
    free(rows->member);
    free(rows->ids);
    memset(rows, 0, sizeof(*rows));
}

static bool grow(struct lookalike_rows *rows)
{
    size_t cap = rows->cap ? rows->cap * 2 : 4096;
    double *x = realloc(rows->x, cap * (size_t)rows->p * sizeof(double));
    unsigned char *member;
    char(*ids)[UUID_TEXT_LEN + 1];
    if (x == NULL)
        return false;
    rows->x = x;
    member = realloc(rows->member, cap);
    if (member == NULL)
        return false;
    rows->member = member;
    ids = realloc(rows->ids, cap * sizeof(*ids));
    if (ids == NULL)
        return false;
    rows->ids = ids;
    rows->cap = cap;
    return true;
}

/* "id\tt|f\t{v,...}\tmask\n" into the next row; false on a malformed line. */
static bool parse_line(struct lookalike_rows *rows, int needs, const char *line)
{
    const char *p = line, *tab = strchr(p, '\t');
    double *x = rows->x + rows->n * (size_t)rows->p;
    char *end;
    long mask;
    if (tab == NULL || tab - p != UUID_TEXT_LEN)
        return false;
    memcpy(rows->ids[rows->n], p, UUID_TEXT_LEN);
    rows->ids[rows->n][UUID_TEXT_LEN] = '\0';
    p = tab + 1;
    if ((*p != 't' && *p != 'f') || p[1] != '\t' || p[2] != '{')
        return false;
    rows->member[rows->n] = *p == 't';
    p += 3;
    for (int j = 0; j < LA_BASE_FEATURES; j++) {
        x[j] = strtod(p, &end);
        if (end == p || *end != (j + 1 < LA_BASE_FEATURES ? ',' : '}'))
            return false;
        p = end + 1;
    }
    if (*p++ != '\t')
        return false;
    mask = strtol(p, &end, 10);
    if (end == p)
        return false;
    for (int k = 0; k < needs; k++)
        x[LA_BASE_FEATURES + k] = (mask >> k) & 1 ? 1.0 : 0.0;
    rows->members += rows->member[rows->n];
    rows->n++;
    return true;
}

enum db_status store_lookalike_rows(struct db_pool *pool, const char *segment_id,
                                    json_t *needs, struct lookalike_rows *rows, char *err,
                                    size_t errlen)
{
    struct db_conn *conn;
    PGconn *pg;
    PGresult *res;
    char *needs_text, *seg_lit = NULL, *needs_lit = NULL, *sql = NULL, *buf;
    int len = 0, k = (int)json_array_size(needs);
    bool ok = false, bad_line = false;
    enum db_status st;
    memset(rows, 0, sizeof(*rows));
    if (k > LOOKALIKE_NEEDS) {
        snprintf(err, errlen, "more than %d needs", LOOKALIKE_NEEDS);
        return DB_ERROR;
    }
    rows->p = LA_BASE_FEATURES + k;
    conn = db_acquire(pool, 5000);
    if (conn == NULL) {
        snprintf(err, errlen, "database unavailable");
        return DB_UNAVAILABLE;
    }
    pg = db_pg(conn);
    needs_text = json_dumps(needs, JSON_COMPACT);
    if (needs_text != NULL) {
        seg_lit = PQescapeLiteral(pg, segment_id, strlen(segment_id));
        needs_lit = PQescapeLiteral(pg, needs_text, strlen(needs_text));
    }
    if (seg_lit != NULL && needs_lit != NULL &&
        asprintf(&sql,
                 "COPY (SELECT * FROM crm.lookalike_features(%s::uuid, "
                 "ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))) TO STDOUT",
                 seg_lit, needs_lit) < 0)
        sql = NULL;
    free(needs_text);
    PQfreemem(seg_lit);
    PQfreemem(needs_lit);
    if (sql == NULL) {
        snprintf(err, errlen, "out of memory");
        db_release(pool, conn, false);
        return DB_ERROR;
    }
    res = PQexec(pg, "BEGIN READ ONLY; SET LOCAL statement_timeout = '" READ_TIMEOUT "'");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
        PQclear(res);
        free(sql);
        PQclear(PQexec(pg, "ROLLBACK"));
        st = PQstatus(pg) != CONNECTION_OK ? DB_UNAVAILABLE : DB_ERROR;
        db_release(pool, conn, PQstatus(pg) != CONNECTION_OK);
        return st;
    }
    PQclear(res);
    res = PQexec(pg, sql);
    free(sql);
    if (PQresultStatus(res) == PGRES_COPY_OUT) {
        PQclear(res);
        while ((len = PQgetCopyData(pg, &buf, 0)) > 0) {
            if (!bad_line && (rows->n < rows->cap || grow(rows)))
                bad_line = !parse_line(rows, k, buf);
            else
                bad_line = true;
            PQfreemem(buf);
        }
        res = PQgetResult(pg);
        ok = len == -1 && PQresultStatus(res) == PGRES_COMMAND_OK && !bad_line;
        if (!ok)
            snprintf(err, errlen, "%s", bad_line ? "a feature row could not be read"
                                                 : PQerrorMessage(pg));
    } else {
        snprintf(err, errlen, "%s", PQerrorMessage(pg));
    }
    PQclear(res);
    while ((res = PQgetResult(pg)) != NULL)
        PQclear(res);
    res = PQexec(pg, ok ? "COMMIT" : "ROLLBACK");
    ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (ok) {
        st = DB_OK;
    } else if (db_cancel_was_sent(pool, conn)) {
        st = DB_CANCELLED;
    } else {
        st = PQstatus(pg) != CONNECTION_OK ? DB_UNAVAILABLE : DB_ERROR;
    }
    db_release(pool, conn, PQstatus(pg) != CONNECTION_OK);
    if (!ok)
        lookalike_rows_free(rows);
    return st;
}

enum db_status store_lookalike_needs(struct db_pool *pool, const char *segment_id, int k,
                                     json_t **out, char *err, size_t errlen)
{
    char kt[16];
    const char *params[] = {segment_id, kt};
    snprintf(kt, sizeof(kt), "%d", k);
    return store_call(pool, STMT_LOOKALIKE_NEEDS, 2, params, out, err, errlen);
}

enum db_status store_lookalike_fit_get(struct db_pool *pool, const char *segment_id,
                                       int max_age_s, json_t **out, char *err, size_t errlen)
{
    char age[16];
    const char *params[] = {segment_id, age};
    snprintf(age, sizeof(age), "%d", max_age_s);
    return store_call(pool, STMT_LOOKALIKE_FIT_GET, 2, params, out, err, errlen);
}

enum db_status store_lookalike_fit_save(struct db_pool *pool, const char *segment_id,
                                        json_t *fit, json_t **out, char *err, size_t errlen)
{
    char *text = json_dumps(fit, JSON_COMPACT);
    const char *params[] = {segment_id, text};
    enum db_status st;
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return DB_ERROR;
    }
    st = store_call(pool, STMT_LOOKALIKE_FIT_SAVE, 2, params, out, err, errlen);
    free(text);
    return st;
}
