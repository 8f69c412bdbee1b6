/*
 * Unit tests for the next best action (src/nba.c): each condition against
 * hand-built facts and thresholds, the default rule list of
 * sql/020_next_best_action.sql firing rule by rule in its order, the facts
 * read from a summary document, the placeholders, and the check of a rule
 * list sent by admin.
 */
#include <check.h>
#include <string.h>

#include "nba.h"
#include "test_helpers.h"

/* The default rules as GET /v1/settings/next-best-action shows them. */
static const char DEFAULT_RULES[] =
    "[{\"priority\": 1, \"name\": \"open_complaint\", \"conditions\": [\"open_complaint_case\"],"
    "  \"action\": \"resolve_case\","
    "  \"reason\": \"An open complaint case ({case_subject}) must be resolved first\"},"
    " {\"priority\": 2, \"name\": \"valuable_at_risk\", \"conditions\": [\"high_value\", \"at_risk\"],"
    "  \"action\": \"retention_offer\","
    "  \"reason\": \"High-value customer (tier {tier}, CLV {clv}) at risk of churning (risk {churn_risk})\"},"
    " {\"priority\": 3, \"name\": \"valuable_lapsed\", \"conditions\": [\"high_value\", \"lapsed\"],"
    "  \"action\": \"win_back_offer\","
    "  \"reason\": \"High-value customer (tier {tier}, CLV {clv}) has lapsed: no purchase for a long time\"},"
    " {\"priority\": 4, \"name\": \"detractor\", \"conditions\": [\"detractor\"],"
    "  \"action\": \"service_recovery_call\", \"reason\": \"Last NPS score was {nps} (detractor)\"},"
    " {\"priority\": 5, \"name\": \"warranty_expiring\", \"conditions\": [\"warranty_expiring\"],"
    "  \"action\": \"warranty_extension_offer\", \"reason\": \"A warranty expires on {warranty_date}\"},"
    " {\"priority\": 6, \"name\": \"onboarding\", \"conditions\": [\"onboarding\"],"
    "  \"action\": \"onboarding_check_in\","
    "  \"reason\": \"A new customer (stage {stage}): make sure the first purchase works out\"},"
    " {\"priority\": 7, \"name\": \"top_need\", \"conditions\": [\"has_need\"],"
    "  \"action\": \"offer_{need}\", \"reason\": \"The customer's top need is {need}\"},"
    " {\"priority\": 8, \"name\": \"no_action\", \"conditions\": [], \"action\": \"no_action\","
    "  \"reason\": \"No rule applies\"}]";

static const struct nba_thresholds TH = {.high_value_clv = 1000, .at_risk_churn_risk = 0.5,
                                         .warranty_days = 30};

static struct nba_facts empty_facts(void)
{
    struct nba_facts f;
    memset(&f, 0, sizeof(f));
    f.warranty_days_until = -1;
    return f;
}

/* The recommendation's rule name and action, "rule/action". */
static const char *pick(const char *rules_text, const struct nba_facts *f)
{
    static char out[256];
    json_t *rules = J(rules_text), *r = nba_recommend(rules, f, &TH);
    snprintf(out, sizeof(out), "%s/%s",
             json_is_string(json_object_get(r, "rule")) ? json_string_value(json_object_get(r, "rule"))
                                                        : "null",
             json_string_value(json_object_get(r, "action")));
    json_decref(r);
    json_decref(rules);
    return out;
}

START_TEST(test_conditions)
{
    struct nba_facts f = empty_facts();
    for (int c = 0; c < NBA_CONDITION_COUNT; c++)
        ck_assert_msg(!nba_condition_holds((enum nba_condition)c, &f, &TH), "%s holds on nothing",
                      nba_condition_name(c));

    f.open_cases = 1;
    ck_assert(nba_condition_holds(NBA_OPEN_CASE, &f, &TH));
    ck_assert(!nba_condition_holds(NBA_OPEN_COMPLAINT_CASE, &f, &TH));
    f.open_complaint_cases = 1;
    ck_assert(nba_condition_holds(NBA_OPEN_COMPLAINT_CASE, &f, &TH));

    f = empty_facts();
    f.tier = "mvc";
    ck_assert(nba_condition_holds(NBA_HIGH_VALUE, &f, &TH));
    f.tier = "mgc";
    ck_assert(nba_condition_holds(NBA_HIGH_VALUE, &f, &TH));
    f.tier = "mlc";
    f.has_clv = true;
    f.clv = 1000; /* above, not at */
    ck_assert(!nba_condition_holds(NBA_HIGH_VALUE, &f, &TH));
    f.clv = 1000.01;
    ck_assert(nba_condition_holds(NBA_HIGH_VALUE, &f, &TH));

    f.has_churn_risk = true;
    f.churn_risk = 0.5;
    ck_assert(!nba_condition_holds(NBA_AT_RISK, &f, &TH));
    f.churn_risk = 0.51;
    ck_assert(nba_condition_holds(NBA_AT_RISK, &f, &TH));

    f.has_nps = true;
    f.nps = 7;
    ck_assert(!nba_condition_holds(NBA_DETRACTOR, &f, &TH));
    f.nps = 6;
    ck_assert(nba_condition_holds(NBA_DETRACTOR, &f, &TH));
    f.nps = 0;
    ck_assert(nba_condition_holds(NBA_DETRACTOR, &f, &TH));

    f.warranty_date = "2027-01-06";
    f.warranty_days_until = 31;
    ck_assert(!nba_condition_holds(NBA_WARRANTY_EXPIRING, &f, &TH));
    f.warranty_days_until = 30;
    ck_assert(nba_condition_holds(NBA_WARRANTY_EXPIRING, &f, &TH));
    f.warranty_days_until = 0;
    ck_assert(nba_condition_holds(NBA_WARRANTY_EXPIRING, &f, &TH));

    f.top_need = "";
    ck_assert(!nba_condition_holds(NBA_HAS_NEED, &f, &TH));
    f.top_need = "running";
    ck_assert(nba_condition_holds(NBA_HAS_NEED, &f, &TH));

    /* the journey stage: at_risk by the stage alone, lapsed, onboarding */
    f = empty_facts();
    f.stage = "active";
    for (int c = 0; c < NBA_CONDITION_COUNT; c++)
        ck_assert_msg(!nba_condition_holds((enum nba_condition)c, &f, &TH), "%s holds when active",
                      nba_condition_name(c));
    f.stage = "at_risk";
    ck_assert(nba_condition_holds(NBA_AT_RISK, &f, &TH));
    f.stage = "lapsed";
    ck_assert(nba_condition_holds(NBA_LAPSED, &f, &TH));
    ck_assert(!nba_condition_holds(NBA_AT_RISK, &f, &TH));
    f.stage = "onboarding";
    ck_assert(nba_condition_holds(NBA_ONBOARDING, &f, &TH));
    ck_assert(!nba_condition_holds(NBA_LAPSED, &f, &TH));
}
END_TEST

START_TEST(test_default_rules_in_order)
{
    struct nba_facts f = empty_facts();
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "no_action/no_action");

    f.top_need = "Running Shoes";
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "top_need/offer_running_shoes");

    f.stage = "onboarding";
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "onboarding/onboarding_check_in");

    f.warranty_date = "2027-01-01";
    f.warranty_days_until = 25;
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "warranty_expiring/warranty_extension_offer");

    f.has_nps = true;
    f.nps = 3;
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "detractor/service_recovery_call");

    f.tier = "mvc";
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "detractor/service_recovery_call"); /* not at risk */
    f.stage = "lapsed";
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "valuable_lapsed/win_back_offer");
    f.stage = "at_risk"; /* the stage alone makes a valuable customer at risk */
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "valuable_at_risk/retention_offer");
    f.stage = "active";
    f.has_churn_risk = true;
    f.churn_risk = 0.8;
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "valuable_at_risk/retention_offer");

    f.open_cases = 1; /* not a complaint: no rule of its own by default */
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "valuable_at_risk/retention_offer");
    f.open_complaint_cases = 1;
    ck_assert_str_eq(pick(DEFAULT_RULES, &f), "open_complaint/resolve_case");

    /* a list that ends without a catch-all answers no_action with no rule */
    ck_assert_str_eq(pick("[{\"priority\": 1, \"name\": \"x\", \"conditions\": [\"at_risk\", "
                          "\"open_case\", \"detractor\", \"has_need\"], \"action\": \"a\", "
                          "\"reason\": \"r\"}]",
                          &(struct nba_facts){.warranty_days_until = -1}),
                     "null/no_action");
}
END_TEST

START_TEST(test_placeholders_filled)
{
    struct nba_facts f = empty_facts();
    json_t *rules = J(DEFAULT_RULES), *r;

    f.open_cases = f.open_complaint_cases = 1;
    f.case_id = "c1";
    f.case_subject = "broken zip";
    r = nba_recommend(rules, &f, &TH);
    ck_assert_str_eq(json_string_value(json_object_get(r, "reason")),
                     "An open complaint case (broken zip) must be resolved first");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "priority")), 1);
    json_decref(r);

    f = empty_facts();
    f.tier = "mgc";
    f.has_clv = true;
    f.clv = 12.5;
    f.has_churn_risk = true;
    f.churn_risk = 0.734;
    r = nba_recommend(rules, &f, &TH);
    ck_assert_str_eq(json_string_value(json_object_get(r, "reason")),
                     "High-value customer (tier mgc, CLV 12.50) at risk of churning (risk 0.73)");
    json_decref(r);

    f = empty_facts();
    f.top_need = "  Ski & Snow  ";
    r = nba_recommend(rules, &f, &TH);
    ck_assert_str_eq(json_string_value(json_object_get(r, "action")), "offer_ski_snow");
    ck_assert_str_eq(json_string_value(json_object_get(r, "reason")),
                     "The customer's top need is   Ski & Snow  ");
    json_decref(r);
    json_decref(rules);
}
END_TEST

START_TEST(test_facts_from_summary)
{
    struct nba_facts f;
    json_t *s = J("{\"customer_id\": \"x\", \"stage\": {\"stage\": \"lapsed\", \"since\": \"2026-01-01\"},"
                  " \"value\": {\"tier\": \"mvc\", \"clv\": 1520.25, \"churn_risk\": 0.42},"
                  " \"cases\": {\"open_count\": 2, \"open_complaint_count\": 1, \"most_urgent\": ["
                  "   {\"case_id\": \"a\", \"subject\": \"late\", \"complaint\": false},"
                  "   {\"case_id\": \"b\", \"subject\": \"broken\", \"complaint\": true}]},"
                  " \"satisfaction\": {\"last\": null, \"nps\": 4},"
                  " \"needs\": [\"running\", \"hiking\"],"
                  " \"moments\": [{\"kind\": \"birthday\", \"date\": \"2026-12-10\", \"days_until\": 3},"
                  "   {\"kind\": \"warranty\", \"date\": \"2026-12-20\", \"days_until\": 13},"
                  "   {\"kind\": \"warranty\", \"date\": \"2026-12-30\", \"days_until\": 23}]}");
    nba_facts_from_summary(s, &f);
    ck_assert_int_eq(f.open_cases, 2);
    ck_assert_int_eq(f.open_complaint_cases, 1);
    ck_assert_str_eq(f.case_id, "b"); /* the complaint case, though less urgent */
    ck_assert_str_eq(f.case_subject, "broken");
    ck_assert_str_eq(f.tier, "mvc");
    ck_assert(f.has_clv && f.clv == 1520.25);
    ck_assert(f.has_churn_risk && f.churn_risk == 0.42);
    ck_assert(f.has_nps && f.nps == 4);
    ck_assert_str_eq(f.warranty_date, "2026-12-20");
    ck_assert_int_eq(f.warranty_days_until, 13);
    ck_assert_str_eq(f.top_need, "running");
    ck_assert_str_eq(f.stage, "lapsed");
    json_decref(s);

    s = J("{\"customer_id\": \"x\", \"value\": null, \"cases\": {\"open_count\": 0,"
          " \"open_complaint_count\": 0, \"most_urgent\": []}, \"satisfaction\": {\"nps\": null},"
          " \"needs\": [], \"moments\": []}");
    nba_facts_from_summary(s, &f);
    ck_assert(!f.has_clv && !f.has_churn_risk && !f.has_nps);
    ck_assert_ptr_null(f.tier);
    ck_assert_ptr_null(f.case_id);
    ck_assert_ptr_null(f.top_need);
    ck_assert_int_eq(f.warranty_days_until, -1);
    json_decref(s);
}
END_TEST

static const char *check_errors(const char *rules, const char *thresholds)
{
    char text[8192];
    json_t *doc, *errors = json_array();
    static char out[4096];
    snprintf(text, sizeof(text), "{\"rules\": %s, \"thresholds\": %s}", rules, thresholds);
    doc = J(text);
    nba_settings_check(doc, errors);
    snprintf(out, sizeof(out), "%s", pointers(errors));
    json_decref(doc);
    json_decref(errors);
    return out;
}

#define GOOD_TH "{\"high_value_clv\": 1000, \"at_risk_churn_risk\": 0.5, \"warranty_days\": 30}"

START_TEST(test_settings_check)
{
    json_t *doc, *errors = json_array();
    ck_assert_str_eq(check_errors(DEFAULT_RULES, GOOD_TH), "");
    ck_assert_str_eq(check_errors("[]", GOOD_TH), "/rules");
    ck_assert_str_eq(check_errors(DEFAULT_RULES, "{\"high_value_clv\": -1, \"at_risk_churn_risk\": "
                                                 "1.5, \"warranty_days\": 2.5, \"x\": 1}"),
                     "/thresholds/x | /thresholds/high_value_clv | "
                     "/thresholds/at_risk_churn_risk | /thresholds/warranty_days");
    ck_assert_str_eq(
        check_errors("[{\"priority\": 1, \"name\": \"a\", \"conditions\": [\"vip\", \"at_risk\", "
                     "\"at_risk\"], \"action\": \"call\", \"reason\": \"r\"},"
                     " {\"priority\": 1, \"name\": \"a\", \"conditions\": [], \"action\": "
                     "\"Call Now\", \"reason\": \"{nps}\"},"
                     " {\"priority\": 0, \"name\": \"B\", \"conditions\": {}, \"action\": "
                     "\"offer_{tier}\", \"reason\": \"{oops\", \"when\": 1},"
                     " {\"priority\": 4, \"name\": \"d\", \"conditions\": [\"has_need\"], "
                     "\"action\": \"offer_{need}\", \"reason\": \"{need} {what}\"}, 7]",
                     GOOD_TH),
        "/rules/0/conditions/0 | /rules/0/conditions/2 | "
        "/rules/1/priority | /rules/1/name | /rules/1/action | /rules/1/reason | "
        "/rules/2/when | /rules/2/priority | /rules/2/name | /rules/2/conditions | "
        "/rules/2/action | /rules/2/reason | /rules/3/reason | /rules/4");

    doc = J("{\"rules\": [], \"extra\": 1}");
    ck_assert(!nba_settings_check(doc, errors));
    ck_assert_str_eq(pointers(errors), "/extra | /rules | /thresholds");
    json_decref(doc);
    json_array_clear(errors);
    doc = J("[1]");
    ck_assert(!nba_settings_check(doc, errors));
    json_decref(doc);
    json_decref(errors);
}
END_TEST

START_TEST(test_vocabulary)
{
    enum nba_condition c;
    char buf[256];
    ck_assert_str_eq(nba_condition_list(), "open_complaint_case, open_case, high_value, at_risk, "
                                           "detractor, warranty_expiring, has_need, lapsed, onboarding");
    ck_assert(nba_condition_parse("at_risk", &c) && c == NBA_AT_RISK);
    ck_assert(!nba_condition_parse("stage", &c));
    ck_assert(nba_condition_parse("lapsed", &c) && c == NBA_LAPSED);
    ck_assert_ptr_null(nba_condition_name(NBA_CONDITION_COUNT));
    ck_assert_str_eq(nba_placeholder_list(buf, sizeof(buf)),
                     "{need}, {tier}, {clv}, {churn_risk}, {stage}, {nps}, {case_id}, {case_subject}, "
                     "{warranty_date}, {warranty_days}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nba");
    TCase *tc = tcase_create("nba");
    tcase_add_test(tc, test_conditions);
    tcase_add_test(tc, test_default_rules_in_order);
    tcase_add_test(tc, test_placeholders_filled);
    tcase_add_test(tc, test_facts_from_summary);
    tcase_add_test(tc, test_settings_check);
    tcase_add_test(tc, test_vocabulary);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
