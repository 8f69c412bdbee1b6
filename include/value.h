/*
 * value: the value recompute. Reads every customer's model inputs from
 * crm.value_inputs (set-based SQL), fits BG/NBD and Gamma-Gamma (clv.c) on
 * them, predicts P(alive), expected purchases, expected spend and CLV per
 * customer, stages the predictions with COPY and lets crm.value_finish
 * derive RFM scores and tiers, all in one transaction (one run at a time).
 */
#ifndef CRM_VALUE_H
#define CRM_VALUE_H

#include <jansson.h>

#include "db.h"

/* progress, when given, receives one-line human-readable messages. A live
 * run replaces the live values, tiers and the profile's value section; any
 * other only writes its snapshot (the callers make runs without as_of live
 * and dated runs not, unless asked otherwise). Both
 * record the value settings they used with the run. On success *summary is
 * the run ({run_id, status: "succeeded", live, as_of, customers, buyers,
 * params, diagnostics, fit_seconds, customer_equity, settings, tiers}). A fit
 * that did not converge applies nothing: the run is recorded as failed and
 * *summary is {status: "failed", error, run} (DB_OK all the same). */
enum db_status value_recompute(struct db_pool *pool, const char *as_of, bool live,
                               void (*progress)(const char *message), json_t **summary,
                               char *err, size_t errlen);

/* The run under way in this process ({run_id, started_at, seconds, step}:
 * the last progress line), or NULL when none. */
json_t *value_progress(void);

#endif
