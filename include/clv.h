/*
 * clv: the statistics behind predictive customer lifetime value. Owns the
 * BG/NBD purchase model (Fader, Hardie & Lee 2005, "Counting Your Customers
 * the Easy Way") for repeat purchases and P(alive), the Gamma-Gamma spend
 * model (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie note 025),
 * their maximum-likelihood fits (Nelder-Mead on log-parameters), the
 * per-customer predictions, a small CLV helper and the Gaussian
 * hypergeometric function the predictions need. Pure: no I/O, no globals;
 * the fits allocate scratch memory and free it before returning.
 *
 * Inputs are the usual RFM summaries of one customer, in any one time unit
 * (alpha and every horizon t are in that unit):
 *   x    repeat transactions in the calibration period (a whole number >= 0),
 *   tx   time of the last repeat transaction since the first (ignored when
 *        x = 0, where it is 0 by convention),
 *   T    time since the first transaction (0 <= tx <= T),
 *   zbar mean value of the repeat transactions (> 0 when x > 0).
 *
 * Prediction functions return NaN for arguments outside their domain, so a
 * bad row shows up in the output rather than as a plausible number.
 */
#ifndef CRM_CLV_H
#define CRM_CLV_H

#include <stdbool.h>
#include <stddef.h>

/* BG/NBD: purchase rate lambda ~ Gamma(shape r, rate alpha); after each
 * purchase the customer drops out with probability p ~ Beta(a, b). */
struct bgnbd_params {
    double r, alpha, a, b;
};

/* Gamma-Gamma: a transaction's value ~ Gamma(shape p, rate nu), with
 * nu ~ Gamma(shape q, rate gamma) across customers. */
struct gg_params {
    double p, q, gamma;
};

/* What a fit did. */
struct fit_report {
    double log_likelihood; /* at the optimum, summed over customers (weighted) */
    int iterations;        /* Nelder-Mead iterations, all restarts together */
    int evaluations;       /* log-likelihood evaluations */
    int restarts;          /* restarts from the best point */
    bool converged;        /* tolerances met and the last restart found nothing better */
    size_t n_unique;       /* distinct input rows after merging */
    double total_weight;   /* customers represented (sum of weights) */
};

/* ---- BG/NBD ------------------------------------------------------------- */

/* Log-likelihood of one customer; NaN outside the domain. */
double bgnbd_loglik(const struct bgnbd_params *m, double x, double tx, double T);

/*
 * Maximum-likelihood fit of (r, alpha, a, b) from n customers. weights may be
 * NULL (each row is one customer) or give each row a count >= 0, so callers
 * can pass pre-aggregated (x, tx, T) patterns. Identical rows are merged
 * inside the fit either way, which is what keeps a fit on millions of
 * customers with day-resolution times fast. Nelder-Mead on the
 * log-parameters, restarted from its best point until a restart stops
 * improving.
 *
 * Returns false for invalid input (see the file comment; all values finite,
 * weights with a positive sum, at least one repeat purchase), out of memory,
 * or when the optimiser did not converge or a parameter ran off towards 0 or
 * infinity; in those last cases *out and *report still hold the best point
 * found. report may be NULL. On small samples the maximum can sit on a flat
 * ridge (typically a -> 0 with b large: almost nobody drops out); the fit
 * then returns a point on it, whose predictions are what the data support.
 */
bool bgnbd_fit(const double *x, const double *tx, const double *T, const double *weights,
               size_t n, struct bgnbd_params *out, struct fit_report *report);

/* P(alive | x, tx, T). 1 for x = 0: a BG/NBD customer can only drop out
 * right after a repeat purchase. */
double bgnbd_p_alive(const struct bgnbd_params *m, double x, double tx, double T);

/*
 * E[Y(t) | x, tx, T]: expected repeat purchases in the next t >= 0 time units
 * of a customer with this history (equation 10 of the paper). The formula
 * divides by a - 1 (and, for x = 0, by a + b - 1 inside 2F1); exactly at
 * those removable singularities the value is the mean of the two sides 1e-7
 * away, as the expectation is smooth there. For a <= 1 the expectation grows
 * without bound in t, but is finite for every finite t.
 */
double bgnbd_expected_purchases(const struct bgnbd_params *m, double t, double x, double tx,
                                double T);

/* E[X(t)]: expected repeat purchases in (0, t] of a new, randomly chosen
 * customer (equation 9); equals bgnbd_expected_purchases(m, t, 0, 0, 0). */
double bgnbd_expected_unconditional(const struct bgnbd_params *m, double t);

/* ---- Gamma-Gamma ---------------------------------------------------------- */

/* Log-likelihood (density of zbar) of a customer with x > 0 and zbar > 0. */
double gg_loglik(const struct gg_params *m, double x, double zbar);

/*
 * Maximum-likelihood fit of (p, q, gamma). Rows with x == 0 are skipped (the
 * model is fitted on repeat customers); a row with x > 0 needs zbar > 0, or
 * the input is invalid. Weights, merging and return value as for bgnbd_fit.
 */
bool gg_fit(const double *x, const double *zbar, const double *weights, size_t n,
            struct gg_params *out, struct fit_report *report);

/* E[Z | x, zbar] = p (gamma + x zbar) / (p x + q - 1): a weighted average of
 * the population mean and the customer's own mean. Needs q > 1 (else NaN).
 * For x = 0 it is the population mean and zbar is ignored. */
double gg_expected_spend(const struct gg_params *m, double x, double zbar);

/* E[Z] for a customer we know nothing about: p gamma / (q - 1); NaN unless q > 1. */
double gg_population_mean(const struct gg_params *m);

/* ---- CLV ------------------------------------------------------------------ */

/* Undiscounted: expected_purchases * expected_spend * margin. */
double clv_simple(double expected_purchases, double expected_spend, double margin);

/*
 * Discounted CLV of one customer over `horizon` time units split into `steps`
 * equal periods, the purchases of period i valued at its end:
 *   sum_{i=1..steps} margin * spend * (E[Y(t_i)] - E[Y(t_{i-1})]) / (1 + rate)^i
 * with t_i = i * horizon / steps and rate the discount rate per period (e.g.
 * horizon 52 weeks, steps 12, rate 0.01 for about 1% a month). rate = 0
 * gives clv_simple(E[Y(horizon)], spend, margin). NaN for steps == 0,
 * rate <= -1, a negative horizon or a bad history.
 */
double clv_discounted(const struct bgnbd_params *m, double x, double tx, double T,
                      double expected_spend, double margin, double horizon, unsigned steps,
                      double rate);

/* ---- Special function ----------------------------------------------------- */

/*
 * Gaussian hypergeometric function 2F1(a, b; c; z) for real arguments.
 * Domain: z < 1 and c not in {0, -1, -2, ...}; NaN outside it.
 *   0 <= z < 1: the power series, summed until the estimated tail is below
 *               1e-16 of the sum. Terms stop changing sign once n exceeds
 *               -a, -b and -c, so precision is best when those are small
 *               (all terms positive for a, b, c > 0). The cost grows like
 *               1/(1 - z): NaN if 2,000,000 terms are not enough, which
 *               happens only for z within about 1e-5 of 1.
 *   z < 0:      Pfaff's transformation
 *               2F1(a,b;c;z) = (1-z)^-a 2F1(a, c-b; c; z/(z-1)),
 *               whose argument lies in [0, 1) (so z below about -1e5 is
 *               out of reach the same way).
 * A series that terminates (a or b a non-positive integer) is exact.
 */
double hyp2f1(double a, double b, double c, double z);

#endif
