/*
 * test_lookalike: the look-alike model (src/lookalike.c) against figures
 * computed by hand or in closed form, and on generated data whose true
 * model is known.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lookalike.h"
#include "test_helpers.h"

/* One binary feature: 10 rows with x = 0 (2 positives), 10 with x = 1 (6
 * positives). Without a penalty the MLE reproduces the two groups' rates:
 * raw slope logit(0.6) - logit(0.2) = ln 1.5 + ln 4 = 1.791759469228, raw
 * intercept logit(0.2) = -ln 4. Standardised (mean 0.5, population sd 0.5):
 * coef = slope * 0.5, intercept = -ln 4 + slope * 0.5. */
static void binary_case(double *x, unsigned char *y)
{
    for (int i = 0; i < 20; i++) {
        x[i] = i < 10 ? 0 : 1;
        y[i] = (i < 2) || (i >= 10 && i < 16);
    }
}

START_TEST(test_closed_form_mle)
{
    double x[20], slope = log(1.5) + log(4.0);
    unsigned char y[20];
    struct lookalike_model m;
    binary_case(x, y);
    ck_assert(lookalike_fit(x, y, NULL, 20, 1, 0.0, 0, &m));
    ck_assert(m.converged);
    ck_assert_double_eq_tol(m.mean[0], 0.5, 1e-12);
    ck_assert_double_eq_tol(m.sd[0], 0.5, 1e-12);
    ck_assert_double_eq_tol(m.coef[0], slope * 0.5, 1e-9);
    ck_assert_double_eq_tol(m.intercept, -log(4.0) + slope * 0.5, 1e-9);
    /* the fitted probabilities are the groups' rates */
    ck_assert_double_eq_tol(lookalike_score(&m, &x[0]), 0.2, 1e-9);
    ck_assert_double_eq_tol(lookalike_score(&m, &x[10]), 0.6, 1e-9);
    ck_assert_int_le(m.iterations, 10);
}
END_TEST

/* The same data with the L2 penalty: figures from an independent Newton
 * fit in Python (2x2 solve by Cramer's rule, 1e-14 step tolerance):
 *   lambda 1: intercept -0.458779154940, coef 0.716834778484
 *   lambda 5: intercept -0.422591159755, coef 0.411295519827 */
START_TEST(test_penalised_fit)
{
    double x[20];
    unsigned char y[20];
    struct lookalike_model m;
    binary_case(x, y);
    ck_assert(lookalike_fit(x, y, NULL, 20, 1, 1.0, 0, &m));
    ck_assert_double_eq_tol(m.intercept, -0.458779154940, 1e-9);
    ck_assert_double_eq_tol(m.coef[0], 0.716834778484, 1e-9);
    ck_assert(lookalike_fit(x, y, NULL, 20, 1, 5.0, 0, &m));
    ck_assert_double_eq_tol(m.intercept, -0.422591159755, 1e-9);
    ck_assert_double_eq_tol(m.coef[0], 0.411295519827, 1e-9);
}
END_TEST

/* use[] leaves rows out of the fit: the first 10 rows alone have rate 0.2. */
START_TEST(test_use_mask_and_constant_feature)
{
    double x[20];
    unsigned char y[20];
    bool use[20];
    struct lookalike_model m;
    binary_case(x, y);
    for (int i = 0; i < 20; i++)
        use[i] = i < 10;
    /* x is constant (0) on those rows: sd is taken as 1, the coefficient
     * stays 0 under the penalty and the intercept is logit(0.2) */
    ck_assert(lookalike_fit(x, y, use, 20, 1, 1.0, 0, &m));
    ck_assert_double_eq_tol(m.sd[0], 1.0, 1e-12);
    ck_assert_double_eq_tol(m.coef[0], 0.0, 1e-12);
    ck_assert_double_eq_tol(m.intercept, -log(4.0), 1e-9);
    /* bad arguments */
    ck_assert(!lookalike_fit(x, y, NULL, 0, 1, 1.0, 0, &m));
    ck_assert(!lookalike_fit(x, y, NULL, 20, 0, 1.0, 0, &m));
    ck_assert(!lookalike_fit(x, y, NULL, 20, LOOKALIKE_FEATURES + 1, 1.0, 0, &m));
    ck_assert(!lookalike_fit(x, y, NULL, 20, 1, -1.0, 0, &m));
}
END_TEST

START_TEST(test_contributions)
{
    struct lookalike_model m = {.p = 3, .intercept = -1.0};
    double row[3] = {4.0, 1.0, 10.0}, c[3];
    int idx[3];
    m.mean[0] = 2.0, m.sd[0] = 2.0, m.coef[0] = 0.5;  /* 0.5 * (4-2)/2 = 0.5 */
    m.mean[1] = 0.0, m.sd[1] = 1.0, m.coef[1] = 2.0;  /* 2 * 1 = 2 */
    m.mean[2] = 12.0, m.sd[2] = 4.0, m.coef[2] = 1.0; /* 1 * (10-12)/4 = -0.5 */
    lookalike_contributions(&m, row, c);
    ck_assert_double_eq_tol(c[0], 0.5, 1e-12);
    ck_assert_double_eq_tol(c[1], 2.0, 1e-12);
    ck_assert_double_eq_tol(c[2], -0.5, 1e-12);
    ck_assert_double_eq_tol(lookalike_logit(&m, row), -1.0 + 0.5 + 2.0 - 0.5, 1e-12);
    ck_assert_double_eq_tol(lookalike_score(&m, row), 1.0 / (1.0 + exp(-1.0)), 1e-12);
    ck_assert_int_eq(lookalike_top_features(&m, row, 3, idx, c), 3);
    ck_assert_int_eq(idx[0], 1);
    ck_assert_int_eq(idx[1], 0);
    ck_assert_int_eq(idx[2], 2);
    ck_assert_double_eq_tol(c[0], 2.0, 1e-12);
    ck_assert_int_eq(lookalike_top_features(&m, row, 5, idx, c), 3);
}
END_TEST

/* Ranked by hand: positives score 0.9, 0.8, 0.6; negatives 0.7, 0.55, 0.5.
 * Of the 9 (positive, negative) pairs the positive is higher in 3 + 3 + 2. */
START_TEST(test_auc_by_hand)
{
    double s[6] = {0.9, 0.8, 0.7, 0.6, 0.55, 0.5};
    unsigned char y[6] = {1, 1, 0, 1, 0, 0};
    bool use[6] = {true, true, true, true, true, false};
    double tied[4] = {0.5, 0.5, 0.2, 0.9};
    unsigned char ty[4] = {1, 0, 0, 1};
    ck_assert_double_eq_tol(lookalike_auc(s, y, NULL, 6), 8.0 / 9.0, 1e-12);
    /* without the 0.5 negative: 2 + 2 + 1 of 6 */
    ck_assert_double_eq_tol(lookalike_auc(s, y, use, 6), 5.0 / 6.0, 1e-12);
    /* a tie counts one half: pairs (0.5 vs 0.5) 0.5, (0.5 vs 0.2) 1,
     * (0.9 vs 0.5) 1, (0.9 vs 0.2) 1: 3.5 of 4 */
    ck_assert_double_eq_tol(lookalike_auc(tied, ty, NULL, 4), 3.5 / 4.0, 1e-12);
    ck_assert(isnan(lookalike_auc(s, y, NULL, 0)));
    ck_assert(isnan(lookalike_auc(s, (unsigned char[6]){1, 1, 1, 1, 1, 1}, NULL, 6)));
}
END_TEST

static uint64_t rng_state;
static double uniform(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform());
}

/* Generated data with known truth: 20,000 rows of 4 features, labels drawn
 * from logit = -1.5 + 1.2 x0 - 0.8 x1 + 2 x2 + 0 x3 (x0 ~ N(0,1),
 * x1 ~ N(3,2), x2 ~ Bernoulli(0.3), x3 ~ N(0,1) noise). Fitted on 80 %,
 * the held-out AUC must reach 0.8 and come close to the true model's; the
 * raw coefficients (coef / sd) come back near the truth. */
START_TEST(test_generated_truth)
{
    enum { N = 20000, P = 4 };
    const double truth[P] = {1.2, -0.8, 2.0, 0.0};
    double *x = malloc(sizeof(double) * N * P), *score = malloc(sizeof(double) * N),
           *true_score = malloc(sizeof(double) * N);
    unsigned char *y = malloc(N);
    bool *train = malloc(sizeof(bool) * N), *test = malloc(sizeof(bool) * N);
    struct lookalike_model m;
    double auc, true_auc;
    rng_state = 20;
    for (int i = 0; i < N; i++) {
        double *r = x + i * P, eta;
        r[0] = normal();
        r[1] = 3.0 + 2.0 * normal();
        r[2] = uniform() < 0.3;
        r[3] = normal();
        eta = -1.5 + truth[0] * r[0] + truth[1] * r[1] + truth[2] * r[2] + truth[3] * r[3];
        y[i] = uniform() < 1.0 / (1.0 + exp(-eta));
        true_score[i] = eta;
        test[i] = i % 5 == 0;
        train[i] = !test[i];
    }
    ck_assert(lookalike_fit(x, y, train, N, P, 1.0, 0, &m));
    ck_assert(m.converged);
    for (int j = 0; j < P; j++)
        ck_assert_msg(fabs(m.coef[j] / m.sd[j] - truth[j]) < 0.15, "feature %d: %f vs %f", j,
                      m.coef[j] / m.sd[j], truth[j]);
    for (int i = 0; i < N; i++)
        score[i] = lookalike_score(&m, x + i * P);
    auc = lookalike_auc(score, y, test, N);
    true_auc = lookalike_auc(true_score, y, test, N);
    ck_assert_msg(auc >= 0.8, "held-out AUC %f", auc);
    ck_assert_msg(fabs(auc - true_auc) < 0.01, "AUC %f, true model's %f", auc, true_auc);
    free(x), free(score), free(true_score), free(y), free(train), free(test);
}
END_TEST

START_TEST(test_names_and_split)
{
    int held = 0;
    char id[40];
    ck_assert_str_eq(lookalike_feature_name(LA_DAYS_SINCE_PURCHASE), "days_since_purchase");
    ck_assert_str_eq(lookalike_feature_name(LA_NPS_MISSING), "nps_missing");
    ck_assert_ptr_null(lookalike_feature_name(LA_BASE_FEATURES));
    ck_assert_ptr_null(lookalike_feature_name(-1));
    for (int i = 0; i < LA_BASE_FEATURES; i++)
        ck_assert_ptr_nonnull(lookalike_feature_name(i));
    /* about a fifth held out, and the same id always on the same side */
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        held += lookalike_held_out(id);
        ck_assert(lookalike_held_out(id) == lookalike_held_out(id));
    }
    ck_assert_int_gt(held, 1800);
    ck_assert_int_lt(held, 2200);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lookalike");
    TCase *tc = tcase_create("lookalike");
    tcase_add_test(tc, test_closed_form_mle);
    tcase_add_test(tc, test_penalised_fit);
    tcase_add_test(tc, test_use_mask_and_constant_feature);
    tcase_add_test(tc, test_contributions);
    tcase_add_test(tc, test_auc_by_hand);
    tcase_add_test(tc, test_generated_truth);
    tcase_add_test(tc, test_names_and_split);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
