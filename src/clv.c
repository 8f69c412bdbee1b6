/*
 * clv: BG/NBD and Gamma-Gamma models, their maximum-likelihood fits and the
 * CLV predictions; see include/clv.h for the contracts.
 *
 * Layout of this file:
 *   1. small numeric helpers (log-gamma, log-sum-exp, argument checks),
 *   2. the hypergeometric function 2F1,
 *   3. a Nelder-Mead minimiser over log-parameters,
 *   4. BG/NBD: likelihood, compression of the input, fit, predictions,
 *   5. Gamma-Gamma: likelihood, compression, fit, predictions,
 *   6. the CLV helpers.
 */
#include "clv.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- 1. Numeric helpers -------------------------------------------------- */

/* lgamma() writes the global signgam; lgamma_r() does not, so fits may run
 * in several threads at once. All arguments here are positive. */
static double log_gamma(double v)
{
#ifdef __GLIBC__
    int sign;
    return lgamma_r(v, &sign);
#else
    return lgamma(v);
#endif
}

/* log(exp(u) + exp(v)) without overflow or underflow. */
static double log_add(double u, double v)
{
    double hi = u > v ? u : v, lo = u > v ? v : u;
    if (hi == -INFINITY)
        return -INFINITY;
    return hi + log1p(exp(lo - hi));
}

static bool positive(double v)
{
    return isfinite(v) && v > 0;
}

/* A repeat-purchase count: a finite whole number >= 0. */
static bool valid_count(double x)
{
    return isfinite(x) && x >= 0 && x == floor(x);
}

static bool valid_history(double x, double tx, double T)
{
    return valid_count(x) && isfinite(T) && isfinite(tx) && tx >= 0 && tx <= T;
}

static bool valid_bgnbd(const struct bgnbd_params *m)
{
    return m && positive(m->r) && positive(m->alpha) && positive(m->a) && positive(m->b);
}

static bool valid_gg(const struct gg_params *m)
{
    return m && positive(m->p) && positive(m->q) && positive(m->gamma);
}

static bool valid_weight(const double *weights, size_t i)
{
    return !weights || (isfinite(weights[i]) && weights[i] >= 0);
}

/* ---- 2. Gaussian hypergeometric function --------------------------------- */

#define HYP2F1_MAX_TERMS 2000000L
#define HYP2F1_TAIL_TOL 1e-16

static bool nonpositive_integer(double v)
{
    return v <= 0 && v == floor(v);
}

/*
 * Sum of the terms n >= 1 of the 2F1 power series, for 0 <= z < 1, into
 * *tail, so 2F1 = 1 + *tail. Term n+1 is term n times (a+n)(b+n) z / ((c+n)(n+1)). Once n is past
 * |a| + |b| + |c| that ratio moves monotonically towards z, so the rest of
 * the series is bounded by a geometric one with ratio max(next ratio, z);
 * summing stops when that bound is below HYP2F1_TAIL_TOL of *tail itself
 * (not of 1 + *tail: a caller subtracting the 1 keeps full relative
 * precision even when *tail is tiny). Returns false if HYP2F1_MAX_TERMS
 * terms were not enough.
 */
static bool hyp2f1_series_tail(double a, double b, double c, double z, double *tail)
{
    double term = 1, sum = 0;
    double settle = fabs(a) + fabs(b) + fabs(c) + 1;
    for (long n = 0; n < HYP2F1_MAX_TERMS; n++) {
        double k = (double)n;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z;
        sum += term;
        if (term == 0)
            break; /* terminating series (or z == 0) */
        if (k + 1 < settle) {
            /* Before the ratio settles there is still a valid bound when all
             * parameters are positive and c >= b (or c >= a): every later
             * ratio is at most z * max((other + j) / (j + 1), 1) with the
             * j = k + 1 value, since (b + j) / (c + j) <= 1. This is what
             * keeps huge a, b (a fit at the edge of the parameter space)
             * from needing |a| + |b| + |c| terms. */
            double other = c >= b ? a : b;
            if (a > 0 && b > 0 && c > 0 && (c >= b || c >= a)) {
                double lead = (other + k + 1) / (k + 2);
                double bound = z * (lead > 1 ? lead : 1);
                if (bound < 1 && fabs(term) * bound / (1 - bound) <= HYP2F1_TAIL_TOL * fabs(sum)) {
                    *tail = sum;
                    return true;
                }
            }
            continue;
        }
        double next = fabs((a + k + 1) * (b + k + 1) / ((c + k + 1) * (k + 2))) * z;
        double rho = next > z ? next : z;
        if (rho < 1 && fabs(term) * rho / (1 - rho) <= HYP2F1_TAIL_TOL * fabs(sum)) {
            *tail = sum;
            return true;
        }
    }
    *tail = sum;
    return term == 0;
}

double hyp2f1(double a, double b, double c, double z)
{
    double tail;
    if (!isfinite(a) || !isfinite(b) || !isfinite(c) || !isfinite(z) || z >= 1 ||
        nonpositive_integer(c))
        return NAN;
    if (z >= 0)
        return hyp2f1_series_tail(a, b, c, z, &tail) ? 1 + tail : NAN;
    /* Pfaff: 2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; z/(z-1)). */
    if (!hyp2f1_series_tail(a, c - b, c, z / (z - 1), &tail))
        return NAN;
    return exp(-a * log1p(-z)) * (1 + tail);
}

/* ---- 3. Nelder-Mead over log-parameters ----------------------------------- */

/*
 * The fits minimise the mean negative log-likelihood per customer over the
 * logarithms of the parameters (so every point is a valid parameter set and
 * the scales of alpha or gamma do not matter). Standard coefficients:
 * reflection 1, expansion 2, contraction 1/2, shrink 1/2. A run stops when
 * the objective values on the simplex agree to NM_FTOL (relative) and every
 * vertex is within NM_XTOL of the best in each coordinate. Nelder-Mead can
 * stall on a collapsed simplex, so after a run converges it is restarted
 * from its best point with a fresh simplex until a restart improves the
 * objective by no more than NM_FTOL.
 */
#define NM_MAX_DIM 4
#define NM_MAX_ITER 5000
#define NM_MAX_RESTARTS 8
#define NM_STEP 0.5
#define NM_FTOL 1e-12
#define NM_XTOL 1e-6
#define NM_LOG_BOUND 30.0 /* |log parameter| beyond this is not evaluated */
#define NM_EDGE 5.0       /* an optimum this close to the bound is no optimum */

struct nm_problem {
    double (*f)(const double *theta, void *ctx);
    void *ctx;
    int dim;
    int iterations;
    int evaluations;
};

static double nm_value(struct nm_problem *pb, const double *theta)
{
    double v;
    pb->evaluations++;
    for (int i = 0; i < pb->dim; i++)
        if (!(fabs(theta[i]) <= NM_LOG_BOUND))
            return HUGE_VAL;
    v = pb->f(theta, pb->ctx);
    return isfinite(v) ? v : HUGE_VAL;
}

/* out = c + coef * (c - worst): reflection (1), expansion (2), contractions (+-1/2). */
static void nm_point(const double *c, const double *worst, double coef, int dim, double *out)
{
    for (int i = 0; i < dim; i++)
        out[i] = c[i] + coef * (c[i] - worst[i]);
}

/* Order the dim + 1 vertices by value, best first. */
static void nm_sort(double v[][NM_MAX_DIM], double *fv, int dim)
{
    for (int i = 1; i <= dim; i++) {
        double key[NM_MAX_DIM], fkey = fv[i];
        int j = i - 1;
        memcpy(key, v[i], sizeof(key));
        while (j >= 0 && fv[j] > fkey) {
            memcpy(v[j + 1], v[j], sizeof(key));
            fv[j + 1] = fv[j];
            j--;
        }
        memcpy(v[j + 1], key, sizeof(key));
        fv[j + 1] = fkey;
    }
}

static bool nm_converged(double v[][NM_MAX_DIM], const double *fv, int dim)
{
    if (!(fv[dim] - fv[0] <= NM_FTOL * (1 + fabs(fv[0]))))
        return false;
    for (int i = 1; i <= dim; i++)
        for (int j = 0; j < dim; j++)
            if (fabs(v[i][j] - v[0][j]) > NM_XTOL)
                return false;
    return true;
}

static void nm_replace_worst(double v[][NM_MAX_DIM], double *fv, int dim, const double *x,
                             double fx)
{
    memcpy(v[dim], x, sizeof(double) * (size_t)dim);
    fv[dim] = fx;
}

/* One run from a fresh simplex around theta; theta and *fbest get the best
 * vertex (never worse than the start). True when the tolerances were met. */
static bool nm_run(struct nm_problem *pb, double *theta, double *fbest)
{
    int n = pb->dim;
    double v[NM_MAX_DIM + 1][NM_MAX_DIM], fv[NM_MAX_DIM + 1];
    double c[NM_MAX_DIM], xr[NM_MAX_DIM], xe[NM_MAX_DIM], xc[NM_MAX_DIM];
    bool converged = false;

    for (int i = 0; i <= n; i++) {
        memcpy(v[i], theta, sizeof(double) * (size_t)n);
        if (i > 0)
            v[i][i - 1] += NM_STEP;
        fv[i] = nm_value(pb, v[i]);
    }
    for (int iter = 0; iter < NM_MAX_ITER; iter++) {
        double fr;
        nm_sort(v, fv, n);
        if (nm_converged(v, fv, n)) {
            converged = true;
            break;
        }
        pb->iterations++;
        for (int j = 0; j < n; j++) {
            c[j] = 0;
            for (int i = 0; i < n; i++)
                c[j] += v[i][j];
            c[j] /= n;
        }
        nm_point(c, v[n], 1.0, n, xr);
        fr = nm_value(pb, xr);
        if (fr < fv[0]) {
            double fe;
            nm_point(c, v[n], 2.0, n, xe);
            fe = nm_value(pb, xe);
            if (fe < fr)
                nm_replace_worst(v, fv, n, xe, fe);
            else
                nm_replace_worst(v, fv, n, xr, fr);
        } else if (fr < fv[n - 1]) {
            nm_replace_worst(v, fv, n, xr, fr);
        } else {
            bool outside = fr < fv[n];
            double fc;
            nm_point(c, v[n], outside ? 0.5 : -0.5, n, xc);
            fc = nm_value(pb, xc);
            if (outside ? fc <= fr : fc < fv[n]) {
                nm_replace_worst(v, fv, n, xc, fc);
            } else {
                for (int i = 1; i <= n; i++) {
                    for (int j = 0; j < n; j++)
                        v[i][j] = v[0][j] + 0.5 * (v[i][j] - v[0][j]);
                    fv[i] = nm_value(pb, v[i]);
                }
            }
        }
    }
    nm_sort(v, fv, n);
    memcpy(theta, v[0], sizeof(double) * (size_t)n);
    *fbest = fv[0];
    return converged;
}

/* Minimise from theta (in/out), restarting until a restart converges without
 * improving on the run before it; fills the optimiser fields of rep. */
static bool nm_minimize(struct nm_problem *pb, double *theta, double *fbest,
                        struct fit_report *rep)
{
    double f, g;
    bool settled = false;
    int restarts = 0;
    nm_run(pb, theta, &f);
    while (!settled && restarts < NM_MAX_RESTARTS) {
        bool again = nm_run(pb, theta, &g);
        settled = again && f - g <= NM_FTOL * (1 + fabs(g));
        f = g;
        restarts++;
    }
    *fbest = f;
    rep->iterations = pb->iterations;
    rep->evaluations = pb->evaluations;
    rep->restarts = restarts;
    /* A parameter that ran off towards 0 or infinity means the likelihood
     * has no maximum for these data (e.g. a handful of customers). */
    for (int i = 0; i < pb->dim; i++)
        if (fabs(theta[i]) > NM_LOG_BOUND - NM_EDGE)
            return false;
    return settled && isfinite(f);
}

/* ---- 4. BG/NBD -------------------------------------------------------------- */

/*
 * Likelihood (section 7 of the paper, in log space):
 *   L = Gamma(r+x) alpha^r / Gamma(r) * B(a, b+x) / B(a, b)
 *       * [ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+tx)^-(r+x) ]
 * using B(a+1, b+x-1) / B(a, b+x) = a / (b+x-1). The two terms in brackets
 * are added with log_add. Everything but the two logarithms of (alpha + time)
 * depends on the parameters and x only, which the fit exploits.
 */
struct bg_x_terms {
    double rx;    /* r + x */
    double head;  /* log of the factor in front of the brackets */
    double ldrop; /* log(a / (b+x-1)), or -inf for x = 0 */
};

static void bg_terms_for_x(double r, double alpha, double a, double b, double x,
                           struct bg_x_terms *k)
{
    k->rx = r + x;
    k->head = log_gamma(r + x) - log_gamma(r) + r * log(alpha) + log_gamma(a + b) +
              log_gamma(b + x) - log_gamma(b) - log_gamma(a + b + x);
    k->ldrop = x > 0 ? log(a) - log(b + x - 1) : -INFINITY;
}

/* log L from the x terms and log(alpha + T), log(alpha + tx). */
static double bg_combine(const struct bg_x_terms *k, double log_alpha_T, double log_alpha_tx)
{
    double stay = -k->rx * log_alpha_T;
    if (k->ldrop == -INFINITY)
        return k->head + stay;
    return k->head + log_add(stay, k->ldrop - k->rx * log_alpha_tx);
}

double bgnbd_loglik(const struct bgnbd_params *m, double x, double tx, double T)
{
    struct bg_x_terms k;
    if (!valid_bgnbd(m) || !valid_history(x, tx, T))
        return NAN;
    bg_terms_for_x(m->r, m->alpha, m->a, m->b, x, &k);
    return bg_combine(&k, log(m->alpha + T), log(m->alpha + tx));
}

/* One distinct (x, tx, T) with the number of customers showing it. */
struct bg_row {
    double x, tx, T, w;
};

/* The compressed input of a fit: rows sorted by x, and the distinct time
 * values (tx and T together) they index, so that an evaluation takes one
 * logarithm per distinct time instead of two per row. */
struct bg_data {
    struct bg_row *rows;
    size_t n;
    size_t *itx, *iT;
    double *times, *log_times;
    size_t ntimes;
    double total_weight;
};

static int cmp_bg_row(const void *pa, const void *pb)
{
    const struct bg_row *u = pa, *v = pb;
    if (u->x != v->x)
        return u->x < v->x ? -1 : 1;
    if (u->tx != v->tx)
        return u->tx < v->tx ? -1 : 1;
    if (u->T != v->T)
        return u->T < v->T ? -1 : 1;
    return 0;
}

static int cmp_double(const void *pa, const void *pb)
{
    double u = *(const double *)pa, v = *(const double *)pb;
    return u < v ? -1 : u > v;
}

/* Index of value in the sorted distinct array vals (it is always there). */
static size_t find_value(const double *vals, size_t n, double value)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (vals[mid] <= value)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Sort rows[0..n) and merge equal keys (weights add); returns the new count. */
static size_t merge_sorted_rows(void *rows, size_t n, size_t size,
                                int (*cmp)(const void *, const void *),
                                void (*add)(void *into, const void *from))
{
    char *base = rows;
    size_t out = 0;
    if (n == 0)
        return 0;
    qsort(rows, n, size, cmp);
    for (size_t i = 1; i < n; i++) {
        if (cmp(base + out * size, base + i * size) == 0) {
            add(base + out * size, base + i * size);
        } else {
            out++;
            if (out != i)
                memcpy(base + out * size, base + i * size, size);
        }
    }
    return out + 1;
}

static void add_bg_row(void *into, const void *from)
{
    ((struct bg_row *)into)->w += ((const struct bg_row *)from)->w;
}

static void bg_data_free(struct bg_data *d)
{
    free(d->rows);
    free(d->itx);
    free(d->iT);
    free(d->times);
    free(d->log_times);
}

/* Validate, drop zero weights, merge, and index the times. 0 on success,
 * -1 for invalid input, -2 out of memory. */
static int bg_data_build(struct bg_data *d, const double *x, const double *tx, const double *T,
                         const double *weights, size_t n)
{
    size_t m = 0, k = 0;
    memset(d, 0, sizeof(*d));
    if (!x || !tx || !T || n == 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!valid_history(x[i], tx[i], T[i]) || !valid_weight(weights, i))
            return -1;
    d->rows = malloc(n * sizeof(*d->rows));
    if (!d->rows)
        return -2;
    for (size_t i = 0; i < n; i++) {
        double w = weights ? weights[i] : 1;
        if (w == 0)
            continue;
        /* tx plays no part when x = 0; zeroing it lets such rows merge. */
        d->rows[m] = (struct bg_row){x[i], x[i] > 0 ? tx[i] : 0, T[i], w};
        d->total_weight += w;
        m++;
    }
    if (m == 0 || !(d->total_weight > 0) || !isfinite(d->total_weight))
        return -1;
    d->n = merge_sorted_rows(d->rows, m, sizeof(*d->rows), cmp_bg_row, add_bg_row);

    d->times = malloc(2 * d->n * sizeof(double));
    d->itx = malloc(d->n * sizeof(size_t));
    d->iT = malloc(d->n * sizeof(size_t));
    if (!d->times || !d->itx || !d->iT)
        return -2;
    for (size_t i = 0; i < d->n; i++) {
        d->times[2 * i] = d->rows[i].tx;
        d->times[2 * i + 1] = d->rows[i].T;
    }
    qsort(d->times, 2 * d->n, sizeof(double), cmp_double);
    for (size_t i = 0; i < 2 * d->n; i++)
        if (k == 0 || d->times[i] != d->times[k - 1])
            d->times[k++] = d->times[i];
    d->ntimes = k;
    d->log_times = malloc(k * sizeof(double));
    if (!d->log_times)
        return -2;
    for (size_t i = 0; i < d->n; i++) {
        d->itx[i] = find_value(d->times, k, d->rows[i].tx);
        d->iT[i] = find_value(d->times, k, d->rows[i].T);
    }
    return 0;
}

/* Total log-likelihood of the compressed data. */
static double bg_data_loglik(struct bg_data *d, double r, double alpha, double a, double b)
{
    struct bg_x_terms k = {0};
    double ll = 0, cur_x = -1;
    for (size_t i = 0; i < d->ntimes; i++)
        d->log_times[i] = log(alpha + d->times[i]);
    for (size_t i = 0; i < d->n; i++) {
        const struct bg_row *row = &d->rows[i];
        if (row->x != cur_x) {
            cur_x = row->x;
            bg_terms_for_x(r, alpha, a, b, cur_x, &k);
        }
        ll += row->w * bg_combine(&k, d->log_times[d->iT[i]], d->log_times[d->itx[i]]);
    }
    return ll;
}

static double bg_objective(const double *theta, void *ctx)
{
    struct bg_data *d = ctx;
    return -bg_data_loglik(d, exp(theta[0]), exp(theta[1]), exp(theta[2]), exp(theta[3])) /
           d->total_weight;
}

static void report_reset(struct fit_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->log_likelihood = NAN;
}

bool bgnbd_fit(const double *x, const double *tx, const double *T, const double *weights,
               size_t n, struct bgnbd_params *out, struct fit_report *rep)
{
    struct fit_report scratch;
    struct bg_data d = {0};
    struct nm_problem pb = {bg_objective, &d, 4, 0, 0};
    double theta[4], f, sum_x = 0, sum_T = 0;
    bool converged;

    if (!rep)
        rep = &scratch;
    report_reset(rep);
    if (!out || bg_data_build(&d, x, tx, T, weights, n) != 0) {
        bg_data_free(&d);
        return false;
    }
    /* Start at r = 1, a = b = 1, and alpha matching the mean purchase rate
     * r / alpha to the observed one. */
    for (size_t i = 0; i < d.n; i++) {
        sum_x += d.rows[i].w * d.rows[i].x;
        sum_T += d.rows[i].w * d.rows[i].T;
    }
    if (!(sum_x > 0)) {
        /* Without a repeat purchase the likelihood grows towards r = 0. */
        bg_data_free(&d);
        return false;
    }
    theta[0] = 0;
    theta[1] = sum_T > 0 ? log(sum_T / sum_x) : 0;
    theta[2] = 0;
    theta[3] = 0;
    converged = nm_minimize(&pb, theta, &f, rep);

    out->r = exp(theta[0]);
    out->alpha = exp(theta[1]);
    out->a = exp(theta[2]);
    out->b = exp(theta[3]);
    rep->log_likelihood = bg_data_loglik(&d, out->r, out->alpha, out->a, out->b);
    rep->n_unique = d.n;
    rep->total_weight = d.total_weight;
    rep->converged = converged && isfinite(rep->log_likelihood);
    bg_data_free(&d);
    return rep->converged;
}

double bgnbd_p_alive(const struct bgnbd_params *m, double x, double tx, double T)
{
    double d;
    if (!valid_bgnbd(m) || !valid_history(x, tx, T))
        return NAN;
    if (x == 0)
        return 1;
    /* 1 / (1 + e^d), d = log(a/(b+x-1)) + (r+x) log((alpha+T)/(alpha+tx)). */
    d = log(m->a) - log(m->b + x - 1) + (m->r + x) * (log(m->alpha + T) - log(m->alpha + tx));
    return d > 0 ? exp(-d) / (1 + exp(-d)) : 1 / (1 + exp(d));
}

/*
 * Equation (10) with z = t / (alpha+T+t), 1 - z = (alpha+T) / (alpha+T+t):
 *   E = (a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)] / D,
 *   D = 1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+tx))^(r+x).
 * Euler's transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)
 * turns the bracket into 1 - (1-z)^(a-1) F with F = 2F1(a+b-1-r, a-1;
 * a+b+x-1; z), whose parameters do not grow with x: no overflow and fast
 * convergence for heavy buyers. With F = 1 + S and L = (a-1) log(1-z),
 *   bracket = -expm1(L) - e^L S,
 * both parts carry the factor a - 1 exactly, so dividing by a - 1 loses
 * nothing however close a is to 1 (only a == 1 itself is 0/0).
 */
static double bg_expected_raw(double r, double alpha, double a, double b, double t, double x,
                              double tx, double T)
{
    double log1mz = log(alpha + T) - log(alpha + T + t);
    double z = t / (alpha + T + t);
    double c = a + b + x - 1, L = (a - 1) * log1mz, s, bracket, denom = 1;
    if (nonpositive_integer(c))
        return NAN;
    if (a > 50) {
        /* Large a (a fit drifting to a common dropout probability): the
         * rearranged series below would need ~a*z terms; the published form
         * 1 - (1-z)^(r+x) 2F1(r+x, b+x; c; z) converges fast and a - 1 is
         * far from the cancellation at a = 1. */
        if (!hyp2f1_series_tail(r + x, b + x, c, z, &s))
            return NAN;
        bracket = -expm1((r + x) * log1mz) - exp((r + x) * log1mz) * s;
    } else {
        if (!hyp2f1_series_tail(a + b - 1 - r, a - 1, c, z, &s))
            return NAN;
        bracket = -expm1(L) - exp(L) * s;
    }
    if (x > 0)
        denom += exp(log(a) - log(b + x - 1) +
                     (r + x) * (log(alpha + T) - log(alpha + tx)));
    return c / (a - 1) * bracket / denom;
}

#define SINGULARITY_STEP 1e-7

double bgnbd_expected_purchases(const struct bgnbd_params *m, double t, double x, double tx,
                                double T)
{
    double r, alpha, a, b, h = SINGULARITY_STEP;
    if (!valid_bgnbd(m) || !valid_history(x, tx, T) || !isfinite(t) || t < 0)
        return NAN;
    r = m->r;
    alpha = m->alpha;
    a = m->a;
    b = m->b;
    if (t == 0)
        return 0;
    if (a == 1)
        return 0.5 * (bg_expected_raw(r, alpha, a - h, b, t, x, tx, T) +
                      bg_expected_raw(r, alpha, a + h, b, t, x, tx, T));
    if (nonpositive_integer(a + b + x - 1) && b > h)
        return 0.5 * (bg_expected_raw(r, alpha, a, b - h, t, x, tx, T) +
                      bg_expected_raw(r, alpha, a, b + h, t, x, tx, T));
    return bg_expected_raw(r, alpha, a, b, t, x, tx, T);
}

double bgnbd_expected_unconditional(const struct bgnbd_params *m, double t)
{
    return bgnbd_expected_purchases(m, t, 0, 0, 0);
}

/* ---- 5. Gamma-Gamma --------------------------------------------------------- */

/*
 * Density of the mean zbar of x transactions (Fader & Hardie, note 025):
 *   log f = lgamma(px+q) - lgamma(px) - lgamma(q) + q log gamma
 *           + (px-1) log zbar + px log x - (px+q) log(gamma + x zbar)
 */
struct gg_row {
    double x, zbar, w;
};

struct gg_data {
    struct gg_row *rows;
    double *log_zbar;
    size_t n;
    double total_weight;
};

static double gg_head(double p, double q, double gamma, double x)
{
    return log_gamma(p * x + q) - log_gamma(p * x) - log_gamma(q) + q * log(gamma) +
           p * x * log(x);
}

static double gg_body(double p, double q, double gamma, double x, double zbar, double log_zbar)
{
    return (p * x - 1) * log_zbar - (p * x + q) * log(gamma + x * zbar);
}

double gg_loglik(const struct gg_params *m, double x, double zbar)
{
    if (!valid_gg(m) || !valid_count(x) || x == 0 || !positive(zbar))
        return NAN;
    return gg_head(m->p, m->q, m->gamma, x) + gg_body(m->p, m->q, m->gamma, x, zbar, log(zbar));
}

static int cmp_gg_row(const void *pa, const void *pb)
{
    const struct gg_row *u = pa, *v = pb;
    if (u->x != v->x)
        return u->x < v->x ? -1 : 1;
    if (u->zbar != v->zbar)
        return u->zbar < v->zbar ? -1 : 1;
    return 0;
}

static void add_gg_row(void *into, const void *from)
{
    ((struct gg_row *)into)->w += ((const struct gg_row *)from)->w;
}

static void gg_data_free(struct gg_data *d)
{
    free(d->rows);
    free(d->log_zbar);
}

/* As bg_data_build; rows with x == 0 are skipped. */
static int gg_data_build(struct gg_data *d, const double *x, const double *zbar,
                         const double *weights, size_t n)
{
    size_t m = 0;
    memset(d, 0, sizeof(*d));
    if (!x || !zbar || n == 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!valid_count(x[i]) || !valid_weight(weights, i) || (x[i] > 0 && !positive(zbar[i])))
            return -1;
    d->rows = malloc(n * sizeof(*d->rows));
    if (!d->rows)
        return -2;
    for (size_t i = 0; i < n; i++) {
        double w = weights ? weights[i] : 1;
        if (x[i] == 0 || w == 0)
            continue;
        d->rows[m++] = (struct gg_row){x[i], zbar[i], w};
        d->total_weight += w;
    }
    if (m == 0 || !(d->total_weight > 0) || !isfinite(d->total_weight))
        return -1;
    d->n = merge_sorted_rows(d->rows, m, sizeof(*d->rows), cmp_gg_row, add_gg_row);
    d->log_zbar = malloc(d->n * sizeof(double));
    if (!d->log_zbar)
        return -2;
    for (size_t i = 0; i < d->n; i++)
        d->log_zbar[i] = log(d->rows[i].zbar);
    return 0;
}

static double gg_data_loglik(const struct gg_data *d, double p, double q, double gamma)
{
    double ll = 0, cur_x = -1, head = 0;
    for (size_t i = 0; i < d->n; i++) {
        const struct gg_row *row = &d->rows[i];
        if (row->x != cur_x) {
            cur_x = row->x;
            head = gg_head(p, q, gamma, cur_x);
        }
        ll += row->w * (head + gg_body(p, q, gamma, row->x, row->zbar, d->log_zbar[i]));
    }
    return ll;
}

static double gg_objective(const double *theta, void *ctx)
{
    struct gg_data *d = ctx;
    return -gg_data_loglik(d, exp(theta[0]), exp(theta[1]), exp(theta[2])) / d->total_weight;
}

bool gg_fit(const double *x, const double *zbar, const double *weights, size_t n,
            struct gg_params *out, struct fit_report *rep)
{
    struct fit_report scratch;
    struct gg_data d = {0};
    struct nm_problem pb = {gg_objective, &d, 3, 0, 0};
    double theta[3], f, sum_z = 0;
    bool converged;

    if (!rep)
        rep = &scratch;
    report_reset(rep);
    if (!out || gg_data_build(&d, x, zbar, weights, n) != 0) {
        gg_data_free(&d);
        return false;
    }
    /* Start at p = 1, q = 2 and gamma making the population mean
     * p gamma / (q - 1) equal to the mean of zbar. */
    for (size_t i = 0; i < d.n; i++)
        sum_z += d.rows[i].w * d.rows[i].zbar;
    theta[0] = 0;
    theta[1] = log(2.0);
    theta[2] = log(sum_z / d.total_weight);
    converged = nm_minimize(&pb, theta, &f, rep);

    out->p = exp(theta[0]);
    out->q = exp(theta[1]);
    out->gamma = exp(theta[2]);
    rep->log_likelihood = gg_data_loglik(&d, out->p, out->q, out->gamma);
    rep->n_unique = d.n;
    rep->total_weight = d.total_weight;
    rep->converged = converged && isfinite(rep->log_likelihood);
    gg_data_free(&d);
    return rep->converged;
}

double gg_expected_spend(const struct gg_params *m, double x, double zbar)
{
    if (!valid_gg(m) || !(m->q > 1) || !valid_count(x))
        return NAN;
    if (x == 0)
        return gg_population_mean(m);
    if (!positive(zbar))
        return NAN;
    return m->p * (m->gamma + x * zbar) / (m->p * x + m->q - 1);
}

double gg_population_mean(const struct gg_params *m)
{
    if (!valid_gg(m) || !(m->q > 1))
        return NAN;
    return m->p * m->gamma / (m->q - 1);
}

/* ---- 6. CLV ------------------------------------------------------------------- */

double clv_simple(double expected_purchases, double expected_spend, double margin)
{
    return expected_purchases * expected_spend * margin;
}

double clv_discounted(const struct bgnbd_params *m, double x, double tx, double T,
                      double expected_spend, double margin, double horizon, unsigned steps,
                      double rate)
{
    double total = 0, prev = 0, discount = 1;
    if (steps == 0 || !isfinite(horizon) || horizon < 0 || !isfinite(rate) || rate <= -1)
        return NAN;
    for (unsigned i = 1; i <= steps; i++) {
        double cum = bgnbd_expected_purchases(m, horizon * i / steps, x, tx, T);
        discount /= 1 + rate;
        total += (cum - prev) * discount;
        prev = cum;
    }
    return clv_simple(total, expected_spend, margin);
}
