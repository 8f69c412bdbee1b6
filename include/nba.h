/*
 * nba: the next best action of the agent's summary (docs/summary.md). Owns
 * the closed vocabulary of rule conditions (written once here; the CHECK of
 * crm.nba_rules in sql/020_next_best_action.sql and the NbaCondition enum in
 * openapi/ are compared with it by tests/unit/test_enums.c) and of the
 * {placeholders} an action or a reason may name, the facts a rule is judged
 * on (read from the summary document crm.customer_summary answers), the
 * check of a rule list sent by admin, and the choice: the first rule, in
 * priority order, whose conditions all hold. Pure: no I/O; the facts borrow
 * their strings from the summary document, which must outlive them.
 *
 * A new condition is a value of enum nba_condition, its name in
 * NBA_CONDITION_NAMES (nba.c), a case in nba_condition_holds reading a fact
 * of struct nba_facts, the CHECK of crm.nba_rules, the openapi enum and
 * docs/summary.md.
 */
#ifndef CRM_NBA_H
#define CRM_NBA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum nba_condition {
    NBA_OPEN_COMPLAINT_CASE, /* an open case opened by a complaint */
    NBA_OPEN_CASE,           /* any open case (open or in_progress) */
    NBA_HIGH_VALUE,          /* tier mvc or mgc, or CLV above high_value_clv */
    NBA_AT_RISK,             /* churn risk above at_risk_churn_risk, or stage at_risk */
    NBA_DETRACTOR,           /* the last NPS score is 6 or less */
    NBA_WARRANTY_EXPIRING,   /* a warranty ends within warranty_days */
    NBA_HAS_NEED,            /* the customer has a need (derived or declared) */
    NBA_LAPSED,              /* the journey stage is lapsed */
    NBA_ONBOARDING,          /* the journey stage is onboarding */
    NBA_CONDITION_COUNT
};

#define NBA_RULES_MAX 50
#define NBA_NAME_MAX 64
#define NBA_ACTION_MAX 100
#define NBA_REASON_MAX 500

struct nba_thresholds {
    double high_value_clv;
    double at_risk_churn_risk;
    int warranty_days;
};

struct nba_facts {
    int open_cases;
    int open_complaint_cases;
    const char *case_id;      /* the first complaint case of most_urgent, else its first */
    const char *case_subject;
    const char *tier;         /* NULL: no value computed yet */
    bool has_clv;
    double clv;
    bool has_churn_risk;
    double churn_risk;
    bool has_nps;
    int nps;                  /* the last NPS score */
    const char *warranty_date; /* the soonest warranty end in the summary's moments */
    int warranty_days_until;   /* -1: none */
    const char *top_need;
    const char *stage;         /* the journey stage (the profile's stage.stage) */
};

/* The condition's name ("open_complaint_case"), NULL past the last. */
const char *nba_condition_name(int i);
bool nba_condition_parse(const char *name, enum nba_condition *out);
/* "open_complaint_case, open_case, ..." in enum order */
const char *nba_condition_list(void);
/* "{need}, {tier}, ..." written to buf (returned). */
const char *nba_placeholder_list(char *buf, size_t cap);

bool nba_condition_holds(enum nba_condition c, const struct nba_facts *f,
                         const struct nba_thresholds *t);

/* The facts of a summary document (crm.customer_summary's answer); missing
 * members leave their fact empty. */
void nba_facts_from_summary(const json_t *summary, struct nba_facts *out);

/* The thresholds of a settings document's "thresholds"; false when one is
 * missing or not a number. */
bool nba_thresholds_parse(const json_t *thresholds, struct nba_thresholds *out);

/* Check a settings document {"rules": [...], "thresholds": {...}} (PUT
 * /v1/settings/next-best-action; "updated_at", as GET shows it, is
 * ignored). Every problem is added to errors as {pointer, detail}; true
 * when there is none. */
bool nba_settings_check(const json_t *doc, json_t *errors);

/* The recommendation of rules (a checked list, in priority order):
 * {"rule", "priority", "action", "reason"} of the first rule whose
 * conditions all hold, the placeholders filled in from the facts, or
 * {"rule": null, "priority": null, "action": "no_action", "reason": ...}
 * when none does. New reference. */
json_t *nba_recommend(const json_t *rules, const struct nba_facts *f,
                      const struct nba_thresholds *t);

#endif
