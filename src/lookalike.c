/*
 * lookalike: see include/lookalike.h. The fit keeps b = (intercept, coef)
 * and, per pass over the rows, the log-likelihood at b, its gradient g and
 * the negative Hessian H = Z'WZ + lambda I (Z the standardised rows with a
 * leading 1, W the diagonal mu(1 - mu)); Newton's step is H^-1 g, solved by
 * Cholesky. A step that lowers the penalised log-likelihood is halved
 * (never needed in practice on a strictly concave objective, but cheap).
 */
#include "lookalike.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DIM_MAX (LOOKALIKE_FEATURES + 1)
#define STEP_TOL 1e-9
#define HALVINGS_MAX 30

static const char *const NAMES[LA_BASE_FEATURES] = {
    [LA_DAYS_SINCE_PURCHASE] = "days_since_purchase",
    [LA_PURCHASE_DAYS] = "purchase_days",
    [LA_LOG_REVENUE] = "log_revenue",
    [LA_LOG_CLV] = "log_clv",
    [LA_P_ALIVE] = "p_alive",
    [LA_CHANNELS] = "channels",
    [LA_LOG_INTERACTIONS] = "log_interactions",
    [LA_COMPLAINTS] = "complaints",
    [LA_RETURNS] = "returns",
    [LA_NPS] = "nps",
    [LA_NPS_MISSING] = "nps_missing",
};

const char *lookalike_feature_name(int f)
{
    return f >= 0 && f < LA_BASE_FEATURES ? NAMES[f] : NULL;
}

/* ln(1 + e^eta) without overflow. */
static double log1pexp(double eta)
{
    return eta > 0 ? eta + log1p(exp(-eta)) : log1p(exp(eta));
}

static void standardise(const struct lookalike_model *m, const double *row, double *z)
{
    z[0] = 1.0;
    for (int j = 0; j < m->p; j++)
        z[j + 1] = (row[j] - m->mean[j]) / m->sd[j];
}

/* One pass at b: the penalised log-likelihood, g and H (d = p + 1). */
static double pass(const double *x, const unsigned char *y, const bool *use, size_t n,
                   const struct lookalike_model *m, const double *b, double *g, double *h)
{
    int d = m->p + 1;
    double ll = 0, z[DIM_MAX];
    memset(g, 0, sizeof(double) * (size_t)d);
    memset(h, 0, sizeof(double) * (size_t)(d * d));
    for (size_t i = 0; i < n; i++) {
        double eta = 0, mu, w, r;
        if (use != NULL && !use[i])
            continue;
        standardise(m, x + i * (size_t)m->p, z);
        for (int j = 0; j < d; j++)
            eta += b[j] * z[j];
        mu = 1.0 / (1.0 + exp(-eta));
        w = mu * (1.0 - mu);
        r = (double)y[i] - mu;
        ll += (y[i] ? eta : 0.0) - log1pexp(eta);
        for (int j = 0; j < d; j++) {
            double wz = w * z[j];
            g[j] += r * z[j];
            for (int k = j; k < d; k++)
                h[j * d + k] += wz * z[k];
        }
    }
    for (int j = 1; j < d; j++) {
        ll -= 0.5 * m->lambda * b[j] * b[j];
        g[j] -= m->lambda * b[j];
        h[j * d + j] += m->lambda;
    }
    for (int j = 0; j < d; j++) /* the lower triangle from the upper */
        for (int k = 0; k < j; k++)
            h[j * d + k] = h[k * d + j];
    return ll;
}

/* Solve h s = g for symmetric positive definite h (d x d, overwritten by
 * its Cholesky factor); false when h is not positive definite. */
static bool cholesky_solve(double *h, const double *g, double *s, int d)
{
    for (int j = 0; j < d; j++) {
        double v = h[j * d + j];
        for (int k = 0; k < j; k++)
            v -= h[j * d + k] * h[j * d + k];
        if (!(v > 1e-300))
            return false;
        h[j * d + j] = sqrt(v);
        for (int i = j + 1; i < d; i++) {
            double u = h[i * d + j];
            for (int k = 0; k < j; k++)
                u -= h[i * d + k] * h[j * d + k];
            h[i * d + j] = u / h[j * d + j];
        }
    }
    for (int i = 0; i < d; i++) { /* L t = g */
        double v = g[i];
        for (int k = 0; k < i; k++)
            v -= h[i * d + k] * s[k];
        s[i] = v / h[i * d + i];
    }
    for (int i = d - 1; i >= 0; i--) { /* L' s = t */
        double v = s[i];
        for (int k = i + 1; k < d; k++)
            v -= h[k * d + i] * s[k];
        s[i] = v / h[i * d + i];
    }
    return true;
}

static bool moments(const double *x, const bool *use, size_t n, struct lookalike_model *m)
{
    size_t used = 0;
    memset(m->mean, 0, sizeof(m->mean));
    memset(m->sd, 0, sizeof(m->sd));
    for (size_t i = 0; i < n; i++) {
        if (use != NULL && !use[i])
            continue;
        used++;
        for (int j = 0; j < m->p; j++) { /* Welford */
            double v = x[i * (size_t)m->p + j], delta = v - m->mean[j];
            m->mean[j] += delta / (double)used;
            m->sd[j] += delta * (v - m->mean[j]);
        }
    }
    if (used == 0)
        return false;
    for (int j = 0; j < m->p; j++) {
        double sd = sqrt(m->sd[j] / (double)used);
        m->sd[j] = sd > 1e-12 * (1.0 + fabs(m->mean[j])) ? sd : 1.0;
    }
    return true;
}

bool lookalike_fit(const double *x, const unsigned char *y, const bool *use, size_t n, int p,
                   double lambda, int max_iter, struct lookalike_model *m)
{
    double b[DIM_MAX] = {0}, prev[DIM_MAX] = {0}, step[DIM_MAX] = {0};
    double g[DIM_MAX], h[DIM_MAX * DIM_MAX], prev_ll = -INFINITY, scale = 1.0;
    int d = p + 1, halvings = 0;
    memset(m, 0, sizeof(*m));
    if (p < 1 || p > LOOKALIKE_FEATURES || n == 0 || !(lambda >= 0) || x == NULL || y == NULL)
        return false;
    m->p = p;
    m->lambda = lambda;
    if (!moments(x, use, n, m))
        return false;
    if (max_iter <= 0)
        max_iter = 50;
    while (m->iterations < max_iter) {
        double ll = pass(x, y, use, n, m, b, g, h), largest = 0;
        if (ll < prev_ll - 1e-12 * fabs(prev_ll) && halvings < HALVINGS_MAX) {
            scale *= 0.5; /* worse: back to half the step */
            halvings++;
            for (int j = 0; j < d; j++)
                b[j] = prev[j] + scale * step[j];
            continue;
        }
        m->iterations++;
        prev_ll = ll;
        memcpy(prev, b, sizeof(b));
        if (!cholesky_solve(h, g, step, d))
            return false;
        for (int j = 0; j < d; j++) {
            b[j] += step[j];
            largest = fmax(largest, fabs(step[j]));
        }
        scale = 1.0;
        halvings = 0;
        if (largest < STEP_TOL) {
            m->converged = true;
            break;
        }
    }
    m->intercept = b[0];
    for (int j = 0; j < p; j++)
        m->coef[j] = b[j + 1];
    return true;
}

double lookalike_logit(const struct lookalike_model *m, const double *row)
{
    double eta = m->intercept;
    for (int j = 0; j < m->p; j++)
        eta += m->coef[j] * (row[j] - m->mean[j]) / m->sd[j];
    return eta;
}

double lookalike_score(const struct lookalike_model *m, const double *row)
{
    return 1.0 / (1.0 + exp(-lookalike_logit(m, row)));
}

void lookalike_contributions(const struct lookalike_model *m, const double *row,
                             double *contrib)
{
    for (int j = 0; j < m->p; j++)
        contrib[j] = m->coef[j] * (row[j] - m->mean[j]) / m->sd[j];
}

int lookalike_top_features(const struct lookalike_model *m, const double *row, int k, int *idx,
                           double *contrib)
{
    double all[LOOKALIKE_FEATURES];
    bool taken[LOOKALIKE_FEATURES] = {0};
    if (k > m->p)
        k = m->p;
    lookalike_contributions(m, row, all);
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int j = 0; j < m->p; j++)
            if (!taken[j] && (best < 0 || all[j] > all[best]))
                best = j;
        taken[best] = true;
        idx[t] = best;
        contrib[t] = all[best];
    }
    return k;
}

struct ranked {
    double score;
    unsigned char y;
};

static int by_score(const void *a, const void *b)
{
    double x = ((const struct ranked *)a)->score, z = ((const struct ranked *)b)->score;
    return (x > z) - (x < z);
}

double lookalike_auc(const double *score, const unsigned char *y, const bool *use, size_t n)
{
    struct ranked *r = malloc(sizeof(*r) * (n > 0 ? n : 1));
    size_t m = 0, i = 0;
    double pos = 0, neg = 0, rank_sum = 0;
    if (r == NULL)
        return NAN;
    for (size_t k = 0; k < n; k++)
        if (use == NULL || use[k])
            r[m++] = (struct ranked){score[k], y[k] ? 1 : 0};
    qsort(r, m, sizeof(*r), by_score);
    while (i < m) { /* a run of ties shares its average rank (1-based) */
        size_t j = i;
        double ties_pos = 0;
        while (j < m && r[j].score == r[i].score)
            ties_pos += r[j++].y;
        rank_sum += ties_pos * ((double)(i + 1) + (double)j) / 2.0;
        pos += ties_pos;
        i = j;
    }
    neg = (double)m - pos;
    free(r);
    if (pos == 0 || neg == 0)
        return NAN;
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

bool lookalike_held_out(const char *customer_id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, 64 bits */
    for (const unsigned char *c = (const unsigned char *)customer_id; *c; c++) {
        h ^= *c;
        h *= 1099511628211ULL;
    }
    h ^= h >> 33; /* the low bits of FNV are weak: mix before the modulus */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h % 5 == 0;
}
