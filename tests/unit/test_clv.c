/*
 * Unit tests for clv: the hypergeometric function against closed forms and
 * mpmath, the BG/NBD and Gamma-Gamma formulas against values computed
 * independently with mpmath (50+ digits) at the published CDNOW parameters,
 * the fits against the published CDNOW estimates, recovery of known
 * parameters from simulated customers, and the CLV helpers.
 *
 * Data: the CDNOW summary from $CRM_CDNOW_CSV, or else the copy the
 * repository carries, CRM_SOURCE_ROOT/tests/data/cdnow_customers_summary.csv
 * (source and licence in tests/data/README.md). A missing file fails the
 * tests that need it.
 *
 * The fit on 1,000,000 simulated customers prints its time and asserts only
 * the result. It runs in optimised builds without sanitizers; elsewhere (the
 * ASan/UBSan debug build) it runs on 100,000 customers to keep the suite
 * fast. CRM_CLV_BIG=1 forces the million, CRM_CLV_BIG=0 forces the small run.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clv.h"

#ifndef CRM_SOURCE_ROOT
#error "build with -DCRM_SOURCE_ROOT=\"<repo root>\" (meson.build does this for test_clv)"
#endif

#define CDNOW_DEFAULT_PATH CRM_SOURCE_ROOT "/tests/data/cdnow_customers_summary.csv"
#define CDNOW_CUSTOMERS 2357

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define BUILT_WITH_SANITIZER 1
#endif
#endif
#ifndef BUILT_WITH_SANITIZER
#define BUILT_WITH_SANITIZER 0
#endif

/* Published CDNOW estimates (Fader, Hardie & Lee 2005; tests/data/README.md). */
static const struct bgnbd_params cdnow_bg = {0.243, 4.414, 0.793, 2.426};
static const struct gg_params cdnow_gg = {6.25, 3.74, 15.44};

static void assert_rel(double got, double want, double rel, const char *what)
{
    ck_assert_msg(isfinite(got) && fabs(got - want) <= rel * fabs(want),
                  "%s: got %.12g, want %.12g (relative tolerance %g)", what, got, want, rel);
}

static void assert_abs(double got, double want, double tol, const char *what)
{
    ck_assert_msg(isfinite(got) && fabs(got - want) <= tol,
                  "%s: got %.12g, want %.12g (absolute tolerance %g)", what, got, want, tol);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* ---- CDNOW data ----------------------------------------------------------- */

struct customers {
    size_t n, cap;
    double *x, *tx, *T, *zbar;
};

static void customers_free(struct customers *c)
{
    free(c->x);
    free(c->tx);
    free(c->T);
    free(c->zbar);
    memset(c, 0, sizeof(*c));
}

static void customers_alloc(struct customers *c, size_t cap)
{
    memset(c, 0, sizeof(*c));
    c->cap = cap;
    c->x = malloc(cap * sizeof(double));
    c->tx = malloc(cap * sizeof(double));
    c->T = malloc(cap * sizeof(double));
    c->zbar = malloc(cap * sizeof(double));
    ck_assert(c->x && c->tx && c->T && c->zbar);
}

/* Column index of name in a CSV header line, or -1. */
static int column_of(const char *header, const char *name)
{
    char buf[256];
    int col = 0;
    snprintf(buf, sizeof(buf), "%s", header);
    buf[strcspn(buf, "\r\n")] = '\0';
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save), col++)
        if (strcmp(tok, name) == 0)
            return col;
    return -1;
}

static void load_cdnow(struct customers *c)
{
    const char *path = getenv("CRM_CDNOW_CSV");
    char line[256];
    int cx, ctx, cT, cz;
    FILE *f;
    if (!path || !*path)
        path = CDNOW_DEFAULT_PATH;
    f = fopen(path, "r");
    ck_assert_msg(f != NULL,
                  "CDNOW data not found at %s: set CRM_CDNOW_CSV (the repository carries it "
                  "in tests/data)",
                  path);
    ck_assert_msg(fgets(line, sizeof(line), f) != NULL, "%s: empty file", path);
    cx = column_of(line, "x");
    ctx = column_of(line, "t_x");
    cT = column_of(line, "T");
    cz = column_of(line, "zbar");
    ck_assert_msg(cx >= 0 && ctx >= 0 && cT >= 0 && cz >= 0,
                  "%s: header lacks x, t_x, T or zbar: %s", path, line);
    customers_alloc(c, CDNOW_CUSTOMERS + 16);
    while (fgets(line, sizeof(line), f)) {
        double v[8];
        int col = 0;
        char *p = line, *end;
        if (line[0] == '\n' || line[0] == '\r')
            continue;
        ck_assert_msg(c->n < c->cap, "%s: more rows than expected", path);
        while (col < 8) {
            v[col++] = strtod(p, &end);
            ck_assert_msg(end != p, "%s: bad number in row %zu: %s", path, c->n + 1, line);
            if (*end != ',')
                break;
            p = end + 1;
        }
        ck_assert_msg(col > cx && col > ctx && col > cT && col > cz, "%s: short row %zu", path,
                      c->n + 1);
        c->x[c->n] = v[cx];
        c->tx[c->n] = v[ctx];
        c->T[c->n] = v[cT];
        c->zbar[c->n] = v[cz];
        c->n++;
    }
    fclose(f);
    ck_assert_msg(c->n == CDNOW_CUSTOMERS, "%s: %zu customers, expected %d", path, c->n,
                  CDNOW_CUSTOMERS);
}

/* ---- Simulation: splitmix64 and gamma/beta samplers ----------------------- */

struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *g)
{
    uint64_t z = (g->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform on (0, 1), never 0 or 1. */
static double rng_uniform(struct rng *g)
{
    return ((double)(rng_next(g) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_normal(struct rng *g)
{
    double u = rng_uniform(g), v = rng_uniform(g);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Gamma(shape k, scale 1): Marsaglia & Tsang (2000); for k < 1 the usual
 * boost Gamma(k) = Gamma(k + 1) * U^(1/k). */
static double rng_gamma(struct rng *g, double k)
{
    double d, c;
    if (k < 1)
        return rng_gamma(g, k + 1) * pow(rng_uniform(g), 1 / k);
    d = k - 1.0 / 3;
    c = 1 / sqrt(9 * d);
    for (;;) {
        double z = rng_normal(g), v = 1 + c * z, u;
        if (v <= 0)
            continue;
        v = v * v * v;
        u = rng_uniform(g);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

static double rng_beta(struct rng *g, double a, double b)
{
    double u = rng_gamma(g, a), v = rng_gamma(g, b);
    return u / (u + v);
}

/*
 * One BG/NBD customer observed for T: lambda ~ Gamma(r, rate alpha), p ~
 * Beta(a, b); purchases arrive as a Poisson process and after each one the
 * customer leaves with probability p.
 */
static void simulate_bgnbd_customer(struct rng *g, const struct bgnbd_params *m, double T,
                                    double *x, double *tx)
{
    double lambda = rng_gamma(g, m->r) / m->alpha, p = rng_beta(g, m->a, m->b), t = 0;
    *x = 0;
    *tx = 0;
    for (;;) {
        t += -log(rng_uniform(g)) / lambda;
        if (t > T)
            return;
        *x += 1;
        *tx = t;
        if (rng_uniform(g) < p)
            return;
    }
}

/* ---- hyp2f1 ----------------------------------------------------------------- */

START_TEST(test_hyp2f1_log_closed_form)
{
    /* 2F1(1, 1; 2; z) = -log(1 - z) / z */
    const double zs[] = {1e-8, 0.1, 0.5, 0.9, 0.99, 0.999, -0.5, -0.99, -3, -100};
    for (size_t i = 0; i < sizeof(zs) / sizeof(zs[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "2F1(1,1;2;%g)", zs[i]);
        assert_rel(hyp2f1(1, 1, 2, zs[i]), -log1p(-zs[i]) / zs[i], 1e-13, what);
    }
}
END_TEST

START_TEST(test_hyp2f1_binomial)
{
    /* 2F1(a, b; b; z) = (1 - z)^-a */
    const double as[] = {0.243, 1, 2.5, -1.7, 7.25};
    const double zs[] = {0.3, 0.75, 0.95, -0.4, -7};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++) {
            char what[64];
            snprintf(what, sizeof(what), "2F1(%g,1.3;1.3;%g)", as[i], zs[j]);
            /* 1e-11: for a < 0 and z near 1 the first terms nearly cancel
             * (the result is 0.006 from terms of order 1). */
            assert_rel(hyp2f1(as[i], 1.3, 1.3, zs[j]), pow(1 - zs[j], -as[i]), 1e-11, what);
        }
}
END_TEST

START_TEST(test_hyp2f1_trigonometric)
{
    /* 2F1(1/2, 1/2; 3/2; s^2) = asin(s)/s and 2F1(1/2, 1; 3/2; -s^2) = atan(s)/s */
    const double ss[] = {0.01, 0.3, 0.7, 0.95, 0.999};
    for (size_t i = 0; i < 5; i++) {
        double s = ss[i];
        assert_rel(hyp2f1(0.5, 0.5, 1.5, s * s), asin(s) / s, 1e-12, "asin form");
        assert_rel(hyp2f1(0.5, 1, 1.5, -s * s), atan(s) / s, 1e-13, "atan form");
        assert_rel(hyp2f1(0.5, 1, 1.5, -(10 * s) * (10 * s)), atan(10 * s) / (10 * s), 1e-12,
                   "atan form, z < -1");
    }
}
END_TEST

START_TEST(test_hyp2f1_polynomial)
{
    /* a = -2 terminates after three terms:
     * 1 - 2 b z / c + b (b + 1) z^2 / (c (c + 1)). */
    const double b = 1.7, c = 3.1;
    const double zs[] = {0.2, 0.9, -0.5, -20};
    for (size_t i = 0; i < 4; i++) {
        double z = zs[i];
        double want = 1 - 2 * b * z / c + b * (b + 1) * z * z / (c * (c + 1));
        assert_rel(hyp2f1(-2, b, c, z), want, 1e-13, "2F1(-2,b;c;z)");
    }
    ck_assert(hyp2f1(0, 5, 2, 0.7) == 1);
}
END_TEST

START_TEST(test_hyp2f1_mpmath_values)
{
    /* mpmath.hyp2f1 with 60 digits. The first is the E[Y(39)] term of the
     * CDNOW customer below; the last is the Euler-transformed form used for
     * a heavy buyer (negative b, large c); then sign-changing terms, a
     * negative non-integer c, negative z, z close to 1 and a large value. */
    const struct {
        double a, b, c, z, want;
    } cases[] = {
        {2.243, 4.426, 4.219, 39 / (4.414 + 38.86 + 39), 4.5753158976436900739},
        {0.243, 2.426, 2.219, 0.9, 1.9476311698186014235},
        {1.5, -0.3, 2.2, 0.7, 0.81310780793485203617},
        {-2.5, 1.5, 0.5, 0.6, -0.65775375331502290106},
        {0.5, 0.5, -1.5, 0.3, 1.0732665063410881665},
        {1.2, 2.3, 3.4, -0.8, 0.60686412796273210315},
        {0.7, 1.9, 2.2, -5, 0.32040695004341001377},
        {0.3, 0.4, 2.0, 0.999, 1.1050397028950069425},
        {10.5, 20.25, 3.5, 0.5, 102549396522.5355374},
        {1.976, -0.207, 52.219, 0.92, 0.99264033269421977756},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[96];
        snprintf(what, sizeof(what), "2F1(%g,%g;%g;%g)", cases[i].a, cases[i].b, cases[i].c,
                 cases[i].z);
        assert_rel(hyp2f1(cases[i].a, cases[i].b, cases[i].c, cases[i].z), cases[i].want, 1e-12,
                   what);
    }
}
END_TEST

START_TEST(test_hyp2f1_domain)
{
    ck_assert(hyp2f1(1.5, 2.5, 3.5, 0) == 1);
    ck_assert(isnan(hyp2f1(1, 1, 2, 1)));
    ck_assert(isnan(hyp2f1(1, 1, 2, 1.5)));
    ck_assert(isnan(hyp2f1(1, 1, 0, 0.5)));
    ck_assert(isnan(hyp2f1(1, 1, -3, 0.5)));
    ck_assert(isnan(hyp2f1(NAN, 1, 2, 0.5)));
    ck_assert(isnan(hyp2f1(1, 1, 2, -INFINITY)));
    /* Out of the term budget, so NaN rather than a wrong number. */
    ck_assert(isnan(hyp2f1(1, 1, 2, 1 - 1e-9)));
}
END_TEST

/* ---- BG/NBD formulas -------------------------------------------------------- */

START_TEST(test_bgnbd_loglik_mpmath)
{
    /* mpmath, 60 digits, at the published parameters. */
    const struct {
        double x, tx, T, want;
    } cases[] = {
        {0, 0, 38.86, -0.55471327643815845108},   {2, 30.43, 38.86, -9.4586063070662712451},
        {1, 1.71, 38.86, -4.4690932750325884944},  {29, 35.14, 38.86, -44.179618245629119525},
        {3, 0.5, 32.0, -7.5585662635674358046},    {200, 30, 39, 140.63328572555956444},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "loglik(%g, %g, %g)", cases[i].x, cases[i].tx, cases[i].T);
        assert_rel(bgnbd_loglik(&cdnow_bg, cases[i].x, cases[i].tx, cases[i].T), cases[i].want,
                   1e-12, what);
    }
    /* tx plays no part when x = 0 */
    ck_assert(bgnbd_loglik(&cdnow_bg, 0, 5, 38.86) == bgnbd_loglik(&cdnow_bg, 0, 0, 38.86));
}
END_TEST

START_TEST(test_bgnbd_loglik_cdnow_total)
{
    struct customers c;
    double ll = 0;
    load_cdnow(&c);
    for (size_t i = 0; i < c.n; i++)
        ll += bgnbd_loglik(&cdnow_bg, c.x[i], c.tx[i], c.T[i]);
    customers_free(&c);
    /* mpmath sum at the published (rounded) parameters. */
    assert_abs(ll, -9582.4268311823646988, 1e-8, "CDNOW log-likelihood at published params");
}
END_TEST

START_TEST(test_bgnbd_cdnow_customer_predictions)
{
    /* CDNOW customer 1: x = 2, t_x = 30.43, T = 38.86. E[Y(39)] = 1.226 is the
     * figure quoted for this customer (lifetimes docs); all references here
     * are mpmath evaluations of equations (9) and (10) with 60 digits. */
    const struct bgnbd_params *m = &cdnow_bg;
    assert_rel(bgnbd_expected_purchases(m, 39, 2, 30.43, 38.86), 1.2260281747671444463, 1e-12,
               "E[Y(39) | 2, 30.43, 38.86]");
    assert_abs(bgnbd_expected_purchases(m, 39, 2, 30.43, 38.86), 1.226, 5e-4, "published 1.226");
    assert_rel(bgnbd_p_alive(m, 2, 30.43, 38.86), 0.72657857008067291068, 1e-13, "P(alive)");
    assert_rel(bgnbd_expected_purchases(m, 520, 2, 30.43, 38.86), 7.3193138117111046883, 1e-12,
               "E[Y(520)]");
    assert_rel(bgnbd_expected_purchases(m, 0.001, 2, 30.43, 38.86), 3.7660175950157368723e-5,
               1e-10, "E[Y(0.001)]: no cancellation for short horizons");
    assert_rel(bgnbd_expected_purchases(m, 39, 0, 0, 38.86), 0.19509805201126263869, 1e-12,
               "E[Y(39) | x = 0]");
    assert_rel(bgnbd_expected_purchases(m, 39, 50, 38, 38.86), 33.391197999069291106, 1e-12,
               "E[Y(39) | x = 50]");
    assert_rel(bgnbd_expected_purchases(m, 39, 500, 38, 38.86), 9.2200275883628618268, 1e-11,
               "E[Y(39) | x = 500]");
    assert_rel(bgnbd_expected_purchases(m, 520, 500, 38, 38.86), 45.493469293867990373, 1e-11,
               "E[Y(520) | x = 500]: no overflow for heavy buyers");
    assert_rel(bgnbd_expected_unconditional(m, 39), 1.1967231933208168419, 1e-12, "E[X(39)]");
    assert_rel(bgnbd_expected_unconditional(m, 78), 1.8605190579427685363, 1e-12, "E[X(78)]");
    ck_assert(bgnbd_expected_purchases(m, 0, 2, 30.43, 38.86) == 0);
}
END_TEST

START_TEST(test_bgnbd_p_alive_properties)
{
    const struct bgnbd_params *m = &cdnow_bg;
    double prev;
    /* x = 0: alive by construction, whatever T. */
    ck_assert(bgnbd_p_alive(m, 0, 0, 0) == 1);
    ck_assert(bgnbd_p_alive(m, 0, 0, 38.86) == 1);
    ck_assert(bgnbd_p_alive(m, 0, 0, 1e6) == 1);
    /* x > 0, last purchase just now: 1 / (1 + a / (b + x - 1)). */
    assert_rel(bgnbd_p_alive(m, 3, 20, 20), 1 / (1 + m->a / (m->b + 2)), 1e-14, "tx = T");
    /* Decreasing in T - tx (fixed x, tx), strictly inside (0, 1]. */
    prev = 2;
    for (double T = 10; T <= 500; T += 10) {
        double p = bgnbd_p_alive(m, 4, 10, T);
        ck_assert_msg(p > 0 && p <= 1 && p < prev, "P(alive | 4, 10, %g) = %g after %g", T, p,
                      prev);
        prev = p;
    }
    /* Increasing in tx for fixed x and T. */
    prev = -1;
    for (double tx = 0; tx <= 38; tx += 2) {
        double p = bgnbd_p_alive(m, 4, tx, 38);
        ck_assert_msg(p > prev, "P(alive | 4, %g, 38) = %g not above %g", tx, p, prev);
        prev = p;
    }
    /* A frequent buyer who went quiet is more likely gone than an occasional one. */
    ck_assert(bgnbd_p_alive(m, 20, 10, 38) < bgnbd_p_alive(m, 2, 10, 38));
    /* No overflow far out. */
    ck_assert(bgnbd_p_alive(m, 1000, 1, 1e6) >= 0);
}
END_TEST

START_TEST(test_bgnbd_expected_properties)
{
    const struct bgnbd_params *m = &cdnow_bg;
    double prev = 0;
    /* E[Y(t)] increases with t, E[X(t)] is the x = 0, T = 0 case. */
    for (double t = 1; t <= 1000; t *= 1.5) {
        double e = bgnbd_expected_purchases(m, t, 3, 25, 38.86);
        ck_assert_msg(e > prev, "E[Y(%g)] = %g not above %g", t, e, prev);
        prev = e;
        assert_rel(bgnbd_expected_purchases(m, t, 0, 0, 0), bgnbd_expected_unconditional(m, t),
                   1e-15, "E[X(t)] = E[Y(t) | 0, 0, 0]");
    }
    /* The transformed formula in the module against the textbook one built
     * on hyp2f1 directly (moderate x, where the direct form is safe). */
    for (double x = 1; x <= 40; x += 3) {
        const double t = 52, tx = 20, T = 38.86;
        double r = m->r, al = m->alpha, a = m->a, b = m->b;
        double z = t / (al + T + t);
        double bracket = 1 - pow((al + T) / (al + T + t), r + x) *
                                 hyp2f1(r + x, b + x, a + b + x - 1, z);
        double denom = 1 + a / (b + x - 1) * pow((al + T) / (al + tx), r + x);
        char what[64];
        snprintf(what, sizeof(what), "E[Y(52) | %g, 20, 38.86] vs textbook", x);
        assert_rel(bgnbd_expected_purchases(m, t, x, tx, T),
                   (a + b + x - 1) / (a - 1) * bracket / denom, 1e-10, what);
    }
    /* More purchases in the same time and still recent: more expected. */
    ck_assert(bgnbd_expected_purchases(m, 39, 6, 37, 38.86) >
              bgnbd_expected_purchases(m, 39, 2, 37, 38.86));
}
END_TEST

START_TEST(test_bgnbd_removable_singularities)
{
    /* a = 1 divides 0 by 0 in equation (10); mpmath at a = 1 + 1e-30. */
    struct bgnbd_params m = {0.243, 4.414, 1.0, 2.426};
    assert_rel(bgnbd_expected_purchases(&m, 39, 2, 30.43, 38.86), 1.1021367860399557729, 1e-12,
               "a = 1");
    assert_rel(bgnbd_expected_unconditional(&m, 39), 1.0842790105915187411, 1e-12, "E[X], a = 1");
    m.a = 1 + 1e-9;
    assert_rel(bgnbd_expected_purchases(&m, 39, 2, 30.43, 38.86), 1.1021367854937252605, 1e-12,
               "a = 1 + 1e-9");
    m.a = 1 - 1e-12;
    assert_rel(bgnbd_expected_purchases(&m, 39, 2, 30.43, 38.86), 1.1021367860399557729, 1e-10,
               "a = 1 - 1e-12");
    /* x = 0 with a + b = 1 makes c = 0 in 2F1; mpmath at b = 0.6 + 1e-30. */
    m = (struct bgnbd_params){0.243, 4.414, 0.4, 0.6};
    assert_rel(bgnbd_expected_purchases(&m, 39, 0, 0, 38.86), 0.18478526960983741179, 1e-12,
               "x = 0, a + b = 1");
    /* a + b < 1: c in (-1, 0), terms change sign once. */
    m = (struct bgnbd_params){0.243, 4.414, 0.3, 0.5};
    assert_rel(bgnbd_expected_purchases(&m, 39, 0, 0, 38.86), 0.18722310273679666554, 1e-12,
               "x = 0, a + b < 1");
}
END_TEST

START_TEST(test_bgnbd_invalid_arguments)
{
    struct bgnbd_params bad = {0.243, -4.414, 0.793, 2.426};
    const struct bgnbd_params *m = &cdnow_bg;
    ck_assert(isnan(bgnbd_loglik(&bad, 1, 1, 2)));
    ck_assert(isnan(bgnbd_loglik(NULL, 1, 1, 2)));
    ck_assert(isnan(bgnbd_loglik(m, 1, 3, 2)));    /* tx > T */
    ck_assert(isnan(bgnbd_loglik(m, -1, 0, 2)));   /* x < 0 */
    ck_assert(isnan(bgnbd_loglik(m, 1.5, 1, 2)));  /* not a count */
    ck_assert(isnan(bgnbd_p_alive(m, 2, NAN, 2)));
    ck_assert(isnan(bgnbd_p_alive(&bad, 2, 1, 2)));
    ck_assert(isnan(bgnbd_expected_purchases(m, -1, 2, 1, 2)));
    ck_assert(isnan(bgnbd_expected_purchases(m, INFINITY, 2, 1, 2)));
    ck_assert(isnan(bgnbd_expected_purchases(m, 10, 2, 3, 2)));
    ck_assert(isnan(bgnbd_expected_unconditional(&bad, 10)));
}
END_TEST

/* ---- BG/NBD fit -------------------------------------------------------------- */

START_TEST(test_bgnbd_fit_cdnow)
{
    struct customers c;
    struct bgnbd_params m;
    struct fit_report rep;
    struct timespec t0;
    double secs;
    bool ok;
    load_cdnow(&c);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ok = bgnbd_fit(c.x, c.tx, c.T, NULL, c.n, &m, &rep);
    secs = seconds_since(&t0);
    printf("BG/NBD CDNOW: r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.4f (%d iterations, %d "
           "evaluations, %d restarts, %zu distinct rows) in %.3f s\n",
           m.r, m.alpha, m.a, m.b, rep.log_likelihood, rep.iterations, rep.evaluations,
           rep.restarts, rep.n_unique, secs);
    fflush(stdout);
    ck_assert_msg(ok && rep.converged, "fit did not converge");
    assert_rel(m.r, cdnow_bg.r, 0.01, "r");
    assert_rel(m.alpha, cdnow_bg.alpha, 0.01, "alpha");
    assert_rel(m.a, cdnow_bg.a, 0.01, "a");
    assert_rel(m.b, cdnow_bg.b, 0.01, "b");
    assert_abs(rep.log_likelihood, -9582.4, 0.5, "log-likelihood");
    /* The optimum is at least as good as the published (rounded) point. */
    ck_assert(rep.log_likelihood >= -9582.4268311823646988);
    ck_assert(rep.iterations > 0 && rep.evaluations > rep.iterations && rep.restarts >= 1);
    ck_assert(rep.total_weight == (double)c.n);
    ck_assert(rep.n_unique > 0 && rep.n_unique < c.n);
    customers_free(&c);
}
END_TEST

START_TEST(test_bgnbd_fit_weights)
{
    struct customers c, agg;
    struct bgnbd_params plain, weighted, doubled;
    struct fit_report rp, rw, rd;
    double *w, *w2;
    load_cdnow(&c);
    /* Aggregate by hand: identical (x, tx, T) rows become one with a count.
     * (Quadratic, but 2,357 rows.) */
    customers_alloc(&agg, c.n);
    w = calloc(c.n, sizeof(double));
    w2 = malloc(c.n * sizeof(double));
    ck_assert(w && w2);
    for (size_t i = 0; i < c.n; i++) {
        size_t j = 0;
        while (j < agg.n && !(agg.x[j] == c.x[i] && agg.tx[j] == c.tx[i] && agg.T[j] == c.T[i]))
            j++;
        if (j == agg.n) {
            agg.x[j] = c.x[i];
            agg.tx[j] = c.tx[i];
            agg.T[j] = c.T[i];
            agg.n++;
        }
        w[j] += 1;
        w2[i] = 2;
    }
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, NULL, c.n, &plain, &rp));
    ck_assert(bgnbd_fit(agg.x, agg.tx, agg.T, w, agg.n, &weighted, &rw));
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, w2, c.n, &doubled, &rd));
    ck_assert_uint_eq(rw.n_unique, rp.n_unique);
    assert_rel(weighted.r, plain.r, 1e-9, "weighted r");
    assert_rel(weighted.alpha, plain.alpha, 1e-9, "weighted alpha");
    assert_rel(weighted.a, plain.a, 1e-9, "weighted a");
    assert_rel(weighted.b, plain.b, 1e-9, "weighted b");
    assert_rel(rw.log_likelihood, rp.log_likelihood, 1e-12, "weighted LL");
    /* Every customer twice: same optimum, twice the log-likelihood. */
    assert_rel(doubled.r, plain.r, 1e-6, "doubled r");
    assert_rel(doubled.b, plain.b, 1e-6, "doubled b");
    assert_rel(rd.log_likelihood, 2 * rp.log_likelihood, 1e-9, "doubled LL");
    ck_assert(rd.total_weight == 2.0 * (double)c.n);
    /* Rows with weight 0 take no part (even odd-looking ones). */
    w2[0] = 0;
    c.x[0] = 1000;
    c.tx[0] = 38;
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, w2, c.n, &doubled, &rd));
    ck_assert(rd.total_weight == 2.0 * (double)c.n - 2);
    free(w);
    free(w2);
    customers_free(&agg);
    customers_free(&c);
}
END_TEST

START_TEST(test_bgnbd_fit_rejects_bad_input)
{
    double x[] = {0, 2, 1}, tx[] = {0, 5, 3}, T[] = {10, 10, 10}, w[] = {1, 1, 1};
    struct bgnbd_params m;
    struct fit_report rep;
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 0, &m, &rep));
    ck_assert(!rep.converged && isnan(rep.log_likelihood));
    ck_assert(!bgnbd_fit(NULL, tx, T, NULL, 3, &m, &rep));
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 3, NULL, &rep));
    tx[1] = 11; /* tx > T */
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 3, &m, &rep));
    tx[1] = 5;
    x[2] = 1.5; /* not a count */
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 3, &m, &rep));
    x[2] = 1;
    T[0] = NAN;
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 3, &m, &rep));
    T[0] = 10;
    w[1] = -1;
    ck_assert(!bgnbd_fit(x, tx, T, w, 3, &m, &rep));
    w[0] = w[1] = w[2] = 0;
    ck_assert(!bgnbd_fit(x, tx, T, w, 3, &m, &rep));
    /* Nobody bought twice: no maximum to find. */
    x[1] = x[2] = 0;
    ck_assert(!bgnbd_fit(x, tx, T, NULL, 3, &m, &rep));
}
END_TEST

START_TEST(test_bgnbd_fit_recovers_simulated)
{
    /* 20,000 customers from known parameters, each observed for a T uniform
     * in [52, 156) weeks. The expected sampling error (inverse observed
     * information, measured while writing this test) is about 1.2% for r,
     * 1.6% for alpha, 2.2% for a and 3.2% for b, so 10% is 3 to 8 standard
     * errors. The seed is fixed, so the test is deterministic. */
    const struct bgnbd_params truth = {1.0, 4.0, 0.8, 3.0};
    const size_t n = 20000;
    struct customers c;
    struct rng g = {20240601};
    struct bgnbd_params m;
    struct fit_report rep;
    double ll_truth = 0;
    customers_alloc(&c, n);
    for (size_t i = 0; i < n; i++) {
        c.T[i] = 52 + 104 * rng_uniform(&g);
        simulate_bgnbd_customer(&g, &truth, c.T[i], &c.x[i], &c.tx[i]);
        ll_truth += bgnbd_loglik(&truth, c.x[i], c.tx[i], c.T[i]);
    }
    c.n = n;
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, NULL, n, &m, &rep));
    printf("BG/NBD simulated (truth r=1 alpha=4 a=0.8 b=3): r=%.4f alpha=%.4f a=%.4f b=%.4f "
           "LL=%.2f (truth %.2f)\n",
           m.r, m.alpha, m.a, m.b, rep.log_likelihood, ll_truth);
    fflush(stdout);
    assert_rel(m.r, truth.r, 0.10, "r");
    assert_rel(m.alpha, truth.alpha, 0.10, "alpha");
    assert_rel(m.a, truth.a, 0.10, "a");
    assert_rel(m.b, truth.b, 0.10, "b");
    /* The optimiser found at least the truth; and twice the gap is a
     * chi-square with 4 degrees of freedom (20 is its 99.95% point). */
    ck_assert(rep.log_likelihood >= ll_truth);
    ck_assert_msg(2 * (rep.log_likelihood - ll_truth) < 20, "LL gap %g",
                  rep.log_likelihood - ll_truth);
    customers_free(&c);
}
END_TEST

/* Whether to fit a million customers (see the file comment). */
static bool big_run_wanted(void)
{
    const char *env = getenv("CRM_CLV_BIG");
    if (env && *env)
        return strcmp(env, "0") != 0;
#if defined(__OPTIMIZE__)
    return !BUILT_WITH_SANITIZER;
#else
    return false;
#endif
}

START_TEST(test_bgnbd_fit_large_timing)
{
    /* CDNOW-like customers in day resolution: first purchase on one of 84
     * days, calibration end on day 273, purchase times rounded to days
     * (weeks as the unit). Day resolution is what real data has and what
     * lets the fit merge rows. */
    const size_t n = big_run_wanted() ? 1000000 : 100000;
    struct customers c;
    struct rng g = {777};
    struct bgnbd_params m;
    struct fit_report rep;
    struct timespec t0;
    double secs;
    customers_alloc(&c, n);
    for (size_t i = 0; i < n; i++) {
        int first_day = (int)(84 * rng_uniform(&g));
        c.T[i] = (273 - first_day) / 7.0;
        simulate_bgnbd_customer(&g, &cdnow_bg, c.T[i], &c.x[i], &c.tx[i]);
        c.tx[i] = round(c.tx[i] * 7) / 7;
    }
    c.n = n;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, NULL, n, &m, &rep));
    secs = seconds_since(&t0);
    printf("BG/NBD fit on %zu simulated customers (%zu distinct rows): %.2f s, %d evaluations; "
           "r=%.4f alpha=%.4f a=%.4f b=%.4f%s\n",
           n, rep.n_unique, secs, rep.evaluations, m.r, m.alpha, m.a, m.b,
           n < 1000000 ? " (reduced run: sanitizer/debug build or CRM_CLV_BIG=0)" : "");
    fflush(stdout);
    assert_rel(m.r, cdnow_bg.r, 0.10, "r");
    assert_rel(m.alpha, cdnow_bg.alpha, 0.10, "alpha");
    assert_rel(m.a, cdnow_bg.a, 0.15, "a");
    assert_rel(m.b, cdnow_bg.b, 0.15, "b");
    customers_free(&c);
}
END_TEST

/* ---- Gamma-Gamma -------------------------------------------------------------- */

START_TEST(test_gg_loglik_mpmath)
{
    struct customers c;
    double ll = 0;
    assert_rel(gg_loglik(&cdnow_gg, 2, 22.35), -3.5513167597317047305, 1e-12, "x=2 zbar=22.35");
    assert_rel(gg_loglik(&cdnow_gg, 1, 11.77), -3.7377096787408400427, 1e-12, "x=1 zbar=11.77");
    ck_assert(isnan(gg_loglik(&cdnow_gg, 0, 10)));
    ck_assert(isnan(gg_loglik(&cdnow_gg, 2, 0)));
    ck_assert(isnan(gg_loglik(&cdnow_gg, 2, -3)));
    load_cdnow(&c);
    for (size_t i = 0; i < c.n; i++)
        if (c.x[i] > 0)
            ll += gg_loglik(&cdnow_gg, c.x[i], c.zbar[i]);
    customers_free(&c);
    assert_abs(ll, -4055.9247127301659817, 1e-8, "CDNOW Gamma-Gamma LL at published params");
}
END_TEST

START_TEST(test_gg_fit_cdnow)
{
    struct customers c;
    struct gg_params m;
    struct fit_report rep;
    struct timespec t0;
    double secs;
    bool ok;
    load_cdnow(&c);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ok = gg_fit(c.x, c.zbar, NULL, c.n, &m, &rep);
    secs = seconds_since(&t0);
    printf("Gamma-Gamma CDNOW: p=%.4f q=%.4f gamma=%.4f LL=%.4f (%d iterations, %.0f "
           "customers) in %.3f s\n",
           m.p, m.q, m.gamma, rep.log_likelihood, rep.iterations, rep.total_weight, secs);
    fflush(stdout);
    ck_assert_msg(ok && rep.converged, "fit did not converge");
    ck_assert(rep.total_weight == 946); /* customers with x > 0 */
    assert_rel(m.p, cdnow_gg.p, 0.02, "p");
    assert_rel(m.q, cdnow_gg.q, 0.02, "q");
    assert_rel(m.gamma, cdnow_gg.gamma, 0.02, "gamma");
    ck_assert(rep.log_likelihood >= -4055.9247127301659817);
    customers_free(&c);
}
END_TEST

START_TEST(test_gg_fit_recovers_simulated)
{
    /* zbar of x purchases with value ~ Gamma(p, rate nu), nu ~ Gamma(q, rate
     * gamma): the sum of x values is Gamma(p x, rate nu). With 20,000
     * customers the spread of the estimates over seeds (measured while
     * writing this test) is about 6% for p and gamma, which move together
     * in opposite directions, 1.5% for q and 1% for the population mean
     * p gamma / (q - 1). The tolerances follow that; the seed is fixed. */
    const struct gg_params truth = {6.0, 4.0, 15.0};
    const size_t n = 20000;
    struct customers c;
    struct rng g = {99};
    struct gg_params m;
    struct fit_report rep;
    double ll_truth = 0;
    customers_alloc(&c, n);
    for (size_t i = 0; i < n; i++) {
        double nu = rng_gamma(&g, truth.q) / truth.gamma;
        c.x[i] = 1 + (double)(rng_next(&g) % 8);
        c.zbar[i] = rng_gamma(&g, truth.p * c.x[i]) / nu / c.x[i];
        ll_truth += gg_loglik(&truth, c.x[i], c.zbar[i]);
    }
    c.n = n;
    ck_assert(gg_fit(c.x, c.zbar, NULL, n, &m, &rep));
    printf("Gamma-Gamma simulated (truth p=6 q=4 gamma=15): p=%.4f q=%.4f gamma=%.4f\n", m.p,
           m.q, m.gamma);
    fflush(stdout);
    assert_rel(m.q, truth.q, 0.10, "q");
    assert_rel(gg_population_mean(&m), gg_population_mean(&truth), 0.05, "population mean");
    assert_rel(m.p, truth.p, 0.25, "p");
    assert_rel(m.gamma, truth.gamma, 0.25, "gamma");
    ck_assert(rep.log_likelihood >= ll_truth);
    ck_assert_msg(2 * (rep.log_likelihood - ll_truth) < 17, "LL gap %g",
                  rep.log_likelihood - ll_truth); /* chi-square, 3 df, 99.93% */
    customers_free(&c);
}
END_TEST

START_TEST(test_gg_expected_spend)
{
    const struct gg_params *m = &cdnow_gg;
    double pop = 6.25 * 15.44 / (3.74 - 1);
    assert_rel(gg_population_mean(m), pop, 1e-15, "population mean");
    assert_rel(gg_expected_spend(m, 2, 22.35), 6.25 * (15.44 + 2 * 22.35) / (6.25 * 2 + 3.74 - 1),
               1e-15, "E[Z | 2, 22.35]");
    /* x = 0: the population mean, zbar ignored. */
    ck_assert(gg_expected_spend(m, 0, 0) == gg_population_mean(m));
    ck_assert(gg_expected_spend(m, 0, 123) == gg_population_mean(m));
    /* Between the population mean and the customer's own, closer to the
     * latter the more purchases there are. */
    {
        double prev_gap = INFINITY;
        for (double x = 1; x <= 100; x *= 2) {
            double e = gg_expected_spend(m, x, 80);
            ck_assert(e > pop && e < 80);
            ck_assert(80 - e < prev_gap);
            prev_gap = 80 - e;
        }
    }
    /* Undefined mean for q <= 1. */
    {
        struct gg_params heavy = {6.25, 0.9, 15.44};
        ck_assert(isnan(gg_population_mean(&heavy)));
        ck_assert(isnan(gg_expected_spend(&heavy, 2, 22)));
    }
    ck_assert(isnan(gg_expected_spend(m, 2, 0)));
    ck_assert(isnan(gg_expected_spend(m, -1, 10)));
}
END_TEST

START_TEST(test_gg_fit_rejects_bad_input)
{
    double x[] = {0, 2, 1, 3}, z[] = {0, 20, 11, 35}, w[] = {1, 1, 1, 1};
    struct gg_params m;
    struct fit_report rep;
    double only_zero[] = {0, 0};
    ck_assert(!gg_fit(x, z, NULL, 0, &m, &rep));
    ck_assert(!gg_fit(only_zero, z, NULL, 2, &m, &rep)); /* no repeat customers */
    z[2] = 0;                                             /* x > 0 needs zbar > 0 */
    ck_assert(!gg_fit(x, z, NULL, 4, &m, &rep));
    z[2] = 11;
    w[3] = NAN;
    ck_assert(!gg_fit(x, z, w, 4, &m, &rep));
    ck_assert(!gg_fit(x, NULL, NULL, 4, &m, &rep));
}
END_TEST

/* ---- CLV ------------------------------------------------------------------------ */

START_TEST(test_clv_simple_and_discounted)
{
    const struct bgnbd_params *m = &cdnow_bg;
    double spend = gg_expected_spend(&cdnow_gg, 2, 22.35);
    double ey = bgnbd_expected_purchases(m, 52, 2, 30.43, 38.86);
    double undiscounted = clv_simple(ey, spend, 0.3), prev;
    assert_rel(undiscounted, ey * spend * 0.3, 1e-15, "clv_simple");
    /* rate 0: the same number whatever the steps. */
    assert_rel(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 1, 0), undiscounted, 1e-14,
               "1 step, rate 0");
    assert_rel(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 12, 0), undiscounted, 1e-12,
               "12 steps, rate 0");
    /* One step: everything discounted once. */
    assert_rel(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 1, 0.1), undiscounted / 1.1,
               1e-14, "1 step, rate 0.1");
    /* Decreasing in the rate; more steps mean earlier purchases, less discount. */
    prev = undiscounted;
    for (double rate = 0.005; rate < 0.2; rate *= 2) {
        double v = clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 12, rate);
        ck_assert_msg(v < prev && v > 0, "rate %g: %g after %g", rate, v, prev);
        prev = v;
    }
    /* Weekly steps at the weekly equivalent of 5% a year: purchases are
     * valued when they happen rather than all at the end of the year. */
    ck_assert(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 52, pow(1.05, 1.0 / 52) - 1) >
              clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 1, 0.05));
    ck_assert(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 52, pow(1.05, 1.0 / 52) - 1) <
              undiscounted);
    ck_assert(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 0, 4, 0.05) == 0);
    ck_assert(isnan(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 0, 0.01)));
    ck_assert(isnan(clv_discounted(m, 2, 30.43, 38.86, spend, 0.3, 52, 12, -1)));
    ck_assert(isnan(clv_discounted(m, 2, 40, 38.86, spend, 0.3, 52, 12, 0.01)));
}
END_TEST

START_TEST(test_clv_cdnow_end_to_end)
{
    /* Fit both models on CDNOW and value every customer over 52 weeks: all
     * finite and non-negative. The total of E[Y(39)] over the customers
     * (the forecast for weeks 40-78) at the published parameters is checked
     * against mpmath, and at the fitted ones it must be close to that. */
    struct customers c;
    struct bgnbd_params bg;
    struct gg_params gg;
    double total_clv = 0, total_ey = 0, total_published = 0;
    load_cdnow(&c);
    ck_assert(bgnbd_fit(c.x, c.tx, c.T, NULL, c.n, &bg, NULL));
    ck_assert(gg_fit(c.x, c.zbar, NULL, c.n, &gg, NULL));
    for (size_t i = 0; i < c.n; i++) {
        double ey = bgnbd_expected_purchases(&bg, 39, c.x[i], c.tx[i], c.T[i]);
        double spend = gg_expected_spend(&gg, c.x[i], c.zbar[i]);
        double v = clv_discounted(&bg, c.x[i], c.tx[i], c.T[i], spend, 1.0, 52, 12, 0.01);
        ck_assert_msg(isfinite(v) && v >= 0 && isfinite(ey) && ey >= 0, "customer %zu", i + 1);
        total_clv += v;
        total_ey += ey;
        total_published += bgnbd_expected_purchases(&cdnow_bg, 39, c.x[i], c.tx[i], c.T[i]);
    }
    printf("CDNOW: expected repeat purchases in weeks 40-78 %.1f, 52-week discounted value "
           "$%.0f\n",
           total_ey, total_clv);
    fflush(stdout);
    assert_rel(total_published, 1653.9484276440507767, 1e-11, "sum E[Y(39)], published params");
    assert_rel(total_ey, total_published, 0.01, "sum E[Y(39)], fitted params");
    customers_free(&c);
}
END_TEST

static Suite *clv_suite(void)
{
    Suite *s = suite_create("clv");
    TCase *tc;

    tc = tcase_create("hyp2f1");
    tcase_add_test(tc, test_hyp2f1_log_closed_form);
    tcase_add_test(tc, test_hyp2f1_binomial);
    tcase_add_test(tc, test_hyp2f1_trigonometric);
    tcase_add_test(tc, test_hyp2f1_polynomial);
    tcase_add_test(tc, test_hyp2f1_mpmath_values);
    tcase_add_test(tc, test_hyp2f1_domain);
    suite_add_tcase(s, tc);

    tc = tcase_create("bgnbd");
    tcase_add_test(tc, test_bgnbd_loglik_mpmath);
    tcase_add_test(tc, test_bgnbd_loglik_cdnow_total);
    tcase_add_test(tc, test_bgnbd_cdnow_customer_predictions);
    tcase_add_test(tc, test_bgnbd_p_alive_properties);
    tcase_add_test(tc, test_bgnbd_expected_properties);
    tcase_add_test(tc, test_bgnbd_removable_singularities);
    tcase_add_test(tc, test_bgnbd_invalid_arguments);
    suite_add_tcase(s, tc);

    tc = tcase_create("bgnbd_fit");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_bgnbd_fit_cdnow);
    tcase_add_test(tc, test_bgnbd_fit_weights);
    tcase_add_test(tc, test_bgnbd_fit_rejects_bad_input);
    tcase_add_test(tc, test_bgnbd_fit_recovers_simulated);
    tcase_add_test(tc, test_bgnbd_fit_large_timing);
    suite_add_tcase(s, tc);

    tc = tcase_create("gamma_gamma");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_gg_loglik_mpmath);
    tcase_add_test(tc, test_gg_fit_cdnow);
    tcase_add_test(tc, test_gg_fit_recovers_simulated);
    tcase_add_test(tc, test_gg_expected_spend);
    tcase_add_test(tc, test_gg_fit_rejects_bad_input);
    suite_add_tcase(s, tc);

    tc = tcase_create("clv");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_clv_simple_and_discounted);
    tcase_add_test(tc, test_clv_cdnow_end_to_end);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(clv_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
