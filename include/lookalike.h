/*
 * lookalike: the statistics behind "customers like this segment's members"
 * (docs/lookalikes.md). Owns the feature list (names and order, written
 * once here: the SQL that reads them, crm.lookalike_features, answers them
 * in this order), feature standardisation, an L2-regularised logistic
 * regression fitted by Newton's method (iteratively reweighted least
 * squares: the penalised log-likelihood is strictly concave, so with a
 * handful of features each step solves one small p x p system by Cholesky
 * and the fit converges in a few passes over the rows, with a step-halving
 * guard), scoring, per-feature contributions (coefficient times the
 * standardised value, which is how much the feature moves the log-odds away
 * from an average customer's), the area under the ROC curve (Mann-Whitney,
 * ties counted half) and the deterministic held-out split. Logistic
 * regression rather than a tree ensemble or nearest neighbours: its fit is
 * a convex problem with one answer (no seed, no tuning beyond the penalty),
 * it needs one pass per iteration over millions of rows, and its score is a
 * sum of per-feature terms, so "why this customer" is the list of the
 * largest terms. Pure: no I/O, no globals; the fit allocates nothing.
 */
#ifndef CRM_LOOKALIKE_H
#define CRM_LOOKALIKE_H

#include <stdbool.h>
#include <stddef.h>

/* The fixed features, then up to LOOKALIKE_NEEDS need indicators
 * ("need:<name>": the needs most common among the segment's members at fit
 * time, chosen by the caller). */
enum lookalike_feature {
    LA_DAYS_SINCE_PURCHASE, /* days since the last purchase, capped; the cap when none */
    LA_PURCHASE_DAYS,       /* distinct days with a purchase (value run) */
    LA_LOG_REVENUE,         /* ln(1 + historic revenue) (value run) */
    LA_LOG_CLV,             /* ln(1 + predicted CLV) (value run) */
    LA_P_ALIVE,             /* BG/NBD P(alive), 0 without purchases (value run) */
    LA_CHANNELS,            /* distinct channels with an interaction */
    LA_LOG_INTERACTIONS,    /* ln(1 + interactions) */
    LA_COMPLAINTS,          /* complaint interactions */
    LA_RETURNS,             /* return interactions */
    LA_NPS,                 /* the latest NPS answer, 0 when none */
    LA_NPS_MISSING,         /* 1 when the customer never answered NPS */
    LA_BASE_FEATURES
};
#define LOOKALIKE_NEEDS 8
#define LOOKALIKE_FEATURES (LA_BASE_FEATURES + LOOKALIKE_NEEDS)
#define LOOKALIKE_RECENCY_CAP 3650.0

/* The name of fixed feature f (NULL out of range). */
const char *lookalike_feature_name(int f);

struct lookalike_model {
    int p;                            /* features used (<= LOOKALIKE_FEATURES) */
    double mean[LOOKALIKE_FEATURES];  /* of each raw feature over the fitted rows */
    double sd[LOOKALIKE_FEATURES];    /* population sd; 1 for a constant feature */
    double coef[LOOKALIKE_FEATURES];  /* per standardised feature */
    double intercept;
    double lambda;                    /* the L2 penalty on coef (not the intercept) */
    int iterations;
    bool converged;
};

/*
 * Fit on the n rows of x (row-major, n x p raw values) whose use[i] is true
 * (use NULL: every row), labels y[i] in {0, 1}: mean and sd from those rows,
 * then Newton steps on the penalised log-likelihood
 *   sum_i [y_i eta_i - ln(1 + e^eta_i)] - lambda/2 |coef|^2
 * from zero until the largest step is below 1e-9 or max_iter (<= 0: 50).
 * Returns false on bad arguments (p out of range, no row, lambda < 0) or a
 * system that cannot be solved (lambda 0 and a degenerate design).
 */
bool lookalike_fit(const double *x, const unsigned char *y, const bool *use, size_t n, int p,
                   double lambda, int max_iter, struct lookalike_model *m);

/* The log-odds and the probability of one row of raw values. */
double lookalike_logit(const struct lookalike_model *m, const double *row);
double lookalike_score(const struct lookalike_model *m, const double *row);

/* contrib[j] = coef[j] * (row[j] - mean[j]) / sd[j], j < m->p. */
void lookalike_contributions(const struct lookalike_model *m, const double *row,
                             double *contrib);

/* The k (<= m->p) indices of the largest contributions, largest first
 * (ties: the lower index first); returns how many were written. */
int lookalike_top_features(const struct lookalike_model *m, const double *row, int k, int *idx,
                           double *contrib);

/* Area under the ROC curve of score against y over the rows with use[i]
 * (use NULL: all): the Mann-Whitney probability that a random positive
 * scores above a random negative, ties counting one half. NaN without a
 * positive or without a negative. Sorts a copy: O(n log n). */
double lookalike_auc(const double *score, const unsigned char *y, const bool *use, size_t n);

/* True when customer_id (its text) falls in the held-out fifth: a hash of
 * the id, so a customer stays on the same side from fit to fit. */
bool lookalike_held_out(const char *customer_id);

#endif
