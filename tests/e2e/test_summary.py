#!/usr/bin/env python3
"""End-to-end tests of the call-centre agent's summary and its next best
action (issue 16, part 4; docs/summary.md): GET /v1/customers/{id}/summary
(identity, value, stage, open cases, last contact, last satisfaction score,
moments, contact decisions per purpose, next_best_action), each default rule
of crm.nba_rules firing, read-your-writes through the profile cache, an
absorbed id following its survivor, 404/410, roles and the read audit, and
the rule settings (GET/PUT /v1/settings/next-best-action): validation and a
changed list taking effect.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_summary.py [TestClass[.test_method] ...]

Every test uses fresh customers. The rule list is global: the tests that
change it put the defaults back (tearDown), and no other suite reads it.
"""

import datetime
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get, patch, post, request, uid  # noqa: E402

sql = harness.sql
lit = harness.lit
SETTINGS = "/v1/settings/next-best-action"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def new_customer(traits=None):
    body = {"identifiers": [{"kind": "email", "value": "sum-%s@example.com" % uid()}],
            "source": "e2e-summary"}
    if traits:
        body["traits"] = traits
    r = post("/v1/customers:resolve", body)
    assert r.status == 201, r
    return r.body["customer_id"], body["identifiers"][0]["value"]


def ingest(cid, type="page_view", channel="web", at=None, **fields):
    body = {"customer_id": cid, "source": "e2e-summary", "external_id": "sum-" + uid(),
            "channel": channel, "type": type,
            "occurred_at": at or datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    body.update(fields)
    r = post("/v1/interactions", body)
    assert r.status == 201, r
    return r.body


def set_value(cid, tier, clv, p_alive):
    """A live value for one customer, as a value run would leave it."""
    sql("WITH r AS (INSERT INTO crm.model_runs (model, as_of, started_at, finished_at, status) "
        "VALUES ('e2e-summary', now(), now(), now(), 'succeeded') RETURNING run_id) "
        "INSERT INTO crm.customer_value (customer_id, run_id, revenue, returns, cost, margin, "
        "purchase_days, p_alive, clv, tier, computed_at) "
        "SELECT %s, run_id, 0, 0, 0, 0, 1, %s, %s, %s, now() FROM r "
        "ON CONFLICT (customer_id) DO UPDATE SET run_id = excluded.run_id, "
        "p_alive = excluded.p_alive, clv = excluded.clv, tier = excluded.tier"
        % (lit(cid), p_alive, clv, lit(tier)))


def default_settings():
    return json.loads(sql("SELECT crm.nba_settings_doc() - 'updated_at'"))


DEFAULTS = None


def make_key(role):
    r = post("/v1/admin/keys", {"name": "e2e-summary-%s-%s" % (role, uid()), "role": role,
                                **({"namespace": "e2e-summary"} if role == "partner" else {})})
    assert r.status == 201, r
    return r.body


class Base(harness.CrmTestCase):
    def summary(self, cid, status=200, **kw):
        return self.assertJson(get("/v1/customers/%s/summary" % cid, **kw), status)

    def action(self, cid):
        nba = self.summary(cid)["next_best_action"]
        return nba["rule"], nba["action"]


class SummaryTests(Base):
    def test_new_customer(self):
        cid, email = new_customer({"first_name": "Ann", "last_name": "Lee"})
        s = self.summary(cid)
        self.assertEqual(s["customer_id"], cid)
        self.assertEqual(s["identity"]["name"], "Ann Lee")
        self.assertEqual([(i["kind"], i["value"]) for i in s["identity"]["identifiers"]],
                         [("email", email)])
        self.assertIsNone(s["value"])
        self.assertEqual(s["stage"]["stage"], "prospect")
        self.assertTimestamp(s["stage"]["since"])
        self.assertEqual(s["cases"], {"open_count": 0, "open_complaint_count": 0,
                                      "most_urgent": []})
        self.assertIsNone(s["last_contact"])
        self.assertEqual(s["satisfaction"], {"last": None, "nps": None, "nps_category": None})
        self.assertEqual(s["needs"], [])
        self.assertEqual(s["moments"], [])
        self.assertEqual(s["contact"]["channel"], "email")
        self.assertEqual(s["contact"]["channel_source"], "default")
        self.assertEqual([d["purpose"] for d in s["contact"]["decisions"]],
                         ["marketing", "service", "profiling", "partner_sharing"])
        self.assertFalse(s["contact"]["decisions"][0]["allowed"])
        self.assertEqual(s["contact"]["decisions"][0]["reason"], "no_consent")
        self.assertEqual(s["next_best_action"], {"rule": "no_action", "priority": 8,
                                                 "action": "no_action",
                                                 "reason": "No rule applies"})
        self.assertNotIn("nba", s)

    def test_reads_its_own_writes(self):
        """The profile part comes from the profile cache: an interaction
        posted after a summary was read shows in the next one."""
        cid, _ = new_customer()
        self.assertIsNone(self.summary(cid)["last_contact"])  # the cache now holds the profile
        it = ingest(cid, type="inquiry", channel="chat", tags=["camping"])
        s = self.summary(cid)
        self.assertEqual(s["last_contact"]["interaction_id"], it["interaction_id"])
        self.assertEqual((s["last_contact"]["channel"], s["last_contact"]["type"]),
                         ("chat", "inquiry"))
        self.assertEqual(s["needs"], ["camping"])
        self.assertEqual(s["next_best_action"]["action"], "offer_camping")
        # a later-dated interaction by mistake is no contact yet
        ingest(cid, type="visit", channel="store", at="2099-01-01T00:00:00Z")
        self.assertEqual(self.summary(cid)["last_contact"]["interaction_id"],
                         it["interaction_id"])

    def test_open_complaint_resolve_first(self):
        cid, _ = new_customer()
        set_value(cid, "mvc", 5000, 0.1)  # also high value at risk: the complaint comes first
        ingest(cid, type="complaint", channel="phone", payload={"subject": "broken zip"})
        s = self.summary(cid)
        self.assertEqual(s["cases"]["open_count"], 1)
        self.assertEqual(s["cases"]["open_complaint_count"], 1)
        case = s["cases"]["most_urgent"][0]
        self.assertTrue(case["complaint"])
        self.assertEqual(case["status"], "open")
        self.assertEqual(s["next_best_action"]["rule"], "open_complaint")
        self.assertEqual(s["next_best_action"]["action"], "resolve_case")
        r = patch("/v1/cases/" + case["case_id"], {"status": "resolved"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.action(cid), ("valuable_at_risk", "retention_offer"))

    def test_most_urgent_cases_first(self):
        cid, _ = new_customer()
        ids = []
        for prio in ("low", "urgent", "normal", "high"):
            r = post("/v1/customers/%s/cases" % cid, {"channel": "phone", "priority": prio,
                                                       "subject": prio, "source": "e2e"})
            self.assertEqual(r.status, 201, r)
            ids.append(r.body["case_id"])
        s = self.summary(cid)
        self.assertEqual(s["cases"]["open_count"], 4)
        self.assertEqual(s["cases"]["open_complaint_count"], 0)
        self.assertEqual([c["priority"] for c in s["cases"]["most_urgent"]],
                         ["urgent", "high", "normal"])
        self.assertEqual(self.action(cid), ("no_action", "no_action"))  # no complaint

    def test_high_value_at_risk_retention_offer(self):
        cid, _ = new_customer()
        set_value(cid, "mlc", 5000, 0.3)  # CLV above 1000, churn risk 0.7 above 0.5
        s = self.summary(cid)
        self.assertEqual(s["value"]["tier"], "mlc")
        self.assertAlmostEqual(s["value"]["churn_risk"], 0.7)
        self.assertEqual(s["next_best_action"]["action"], "retention_offer")
        self.assertIn("at risk", s["next_best_action"]["reason"])
        set_value(cid, "mgc", 10, 0.3)  # tier counts whatever the CLV
        self.assertEqual(self.action(cid), ("valuable_at_risk", "retention_offer"))
        set_value(cid, "mgc", 10, 0.9)  # not at risk
        self.assertEqual(self.action(cid), ("no_action", "no_action"))
        set_value(cid, "mlc", 10, 0.1)  # at risk, not high value
        self.assertEqual(self.action(cid), ("no_action", "no_action"))

    def test_detractor_service_recovery_call(self):
        cid, _ = new_customer()
        ingest(cid, type="feedback", channel="email", scores={"nps": 3},
               at="2026-01-01T10:00:00Z")
        s = self.summary(cid)
        self.assertEqual(s["satisfaction"]["nps"], 3)
        self.assertEqual(s["satisfaction"]["nps_category"], "detractor")
        self.assertEqual(s["satisfaction"]["last"]["kind"], "nps")
        self.assertEqual(s["satisfaction"]["last"]["score"], 3)
        self.assertEqual(s["next_best_action"]["action"], "service_recovery_call")
        self.assertEqual(s["next_best_action"]["reason"], "Last NPS score was 3 (detractor)")
        ingest(cid, type="feedback", channel="email", scores={"csat": 5},
               at="2026-01-02T10:00:00Z")
        s = self.summary(cid)
        self.assertEqual((s["satisfaction"]["last"]["kind"], s["satisfaction"]["last"]["score"]),
                         ("csat", 5))
        self.assertEqual(s["next_best_action"]["action"], "service_recovery_call")
        ingest(cid, type="feedback", channel="email", scores={"nps": 7},
               at="2026-01-03T10:00:00Z")
        self.assertEqual(self.action(cid), ("no_action", "no_action"))

    def test_warranty_expiring_extension_offer(self):
        cid, _ = new_customer({"birthday": (today() + datetime.timedelta(days=5))
                               .replace(year=1990).isoformat()})
        soon = (today() + datetime.timedelta(days=10)).isoformat()
        later = (today() + datetime.timedelta(days=25)).isoformat()
        p1 = ingest(cid, type="purchase", channel="store", amount=10, currency="EUR",
                    payload={"warranty_until": later})
        p2 = ingest(cid, type="purchase", channel="store", amount=10, currency="EUR",
                    payload={"warranty_until": soon})
        s = self.summary(cid)
        self.assertEqual([(m["kind"], m.get("interaction_id")) for m in s["moments"]],
                         [("birthday", None), ("warranty", p2["interaction_id"]),
                          ("warranty", p1["interaction_id"])])
        self.assertEqual(s["moments"][1]["days_until"], 10)
        self.assertEqual(s["next_best_action"]["action"], "warranty_extension_offer")
        self.assertEqual(s["next_best_action"]["reason"], "A warranty expires on " + soon)

    def test_top_need_offer(self):
        cid, _ = new_customer({"attributes": {"interests": ["Trail Running"]}})
        s = self.summary(cid)
        self.assertEqual(s["needs"], ["trail running"])
        self.assertEqual(s["next_best_action"], {
            "rule": "top_need", "priority": 7, "action": "offer_trail_running",
            "reason": "The customer's top need is trail running"})

    def test_stage_rules(self):
        # The journey stage (docs/stage.md) is on the summary as on the
        # profile, and feeds the rules: a first purchase today is onboarding;
        # a valuable customer whose last purchase is long past is lapsed
        # (win back), and at_risk by the stage alone (retention).
        cid, _ = new_customer()
        ingest(cid, type="purchase", amount=40, currency="EUR")
        s = self.summary(cid)
        self.assertEqual(s["stage"]["stage"], "onboarding")
        self.assertEqual(s["next_best_action"], {
            "rule": "onboarding", "priority": 6, "action": "onboarding_check_in",
            "reason": "A new customer (stage onboarding): make sure the first purchase works out"})

        old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=400))
        cid, _ = new_customer()
        ingest(cid, type="purchase", amount=40, currency="EUR",
               at=old.strftime("%Y-%m-%dT%H:%M:%SZ"))
        set_value(cid, "mvc", 2000, 0.9)  # valuable, and not at risk by the model
        s = self.summary(cid)
        self.assertEqual(s["stage"]["stage"], "lapsed")
        self.assertEqual(self.action(cid), ("valuable_lapsed", "win_back_offer"))

        recent = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=120))
        cid, _ = new_customer()
        ingest(cid, type="purchase", amount=40, currency="EUR",
               at=(recent - datetime.timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        ingest(cid, type="purchase", amount=40, currency="EUR",
               at=recent.strftime("%Y-%m-%dT%H:%M:%SZ"))
        set_value(cid, "mvc", 2000, 0.9)
        s = self.summary(cid)
        self.assertEqual(s["stage"]["stage"], "at_risk")  # no purchase for 90 days
        self.assertEqual(self.action(cid), ("valuable_at_risk", "retention_offer"))

    def test_contact_on_preferred_channel(self):
        cid, _ = new_customer()
        r = patch("/v1/customers/%s/preferences" % cid, {"preferences": {"preferred_channels": ["sms", "email"]},
                                                         "source": "e2e"})
        self.assertEqual(r.status, 200, r)
        r = post("/v1/customers/%s/consents" % cid, {"purpose": "marketing", "channel": "sms",
                                                      "status": "granted", "source": "e2e"})
        self.assertIn(r.status, (200, 201), r)
        s = self.summary(cid)
        self.assertEqual((s["contact"]["channel"], s["contact"]["channel_source"]),
                         ("sms", "preferred_channels"))
        by = {d["purpose"]: d for d in s["contact"]["decisions"]}
        self.assertTrue(by["marketing"]["allowed"], by)
        self.assertEqual(by["marketing"]["best_channel"], "sms")
        self.assertFalse(by["profiling"]["allowed"])

    def test_absorbed_id_follows_survivor(self):
        a, ea = new_customer()
        b, eb = new_customer()
        r = post("/v1/customers:resolve", {"identifiers": [{"kind": "email", "value": ea},
                                                           {"kind": "email", "value": eb}],
                                           "source": "e2e-summary"})
        self.assertEqual(r.status, 200, r)
        survivor = r.body["customer_id"]
        absorbed = b if survivor == a else a
        resp = get("/v1/customers/%s/summary" % absorbed)
        s = self.assertJson(resp, 200)
        self.assertEqual(s["customer_id"], survivor)
        self.assertEqual(s["merged_into"], survivor)
        self.assertEqual(s["requested_id"], absorbed)
        self.assertEqual(resp.headers.get("Content-Location"),
                         "/v1/customers/%s/summary" % survivor)
        self.assertEqual(len(s["identity"]["identifiers"]), 2)

    def test_unknown_bad_and_erased(self):
        self.assertProblem(get("/v1/customers/%s/summary" % uuid.uuid4()), 404, "not-found")
        self.assertProblem(get("/v1/customers/nope/summary"), 400, "invalid-uuid")
        cid, _ = new_customer()
        r = request("DELETE", "/v1/customers/" + cid)
        self.assertEqual(r.status, 200, r)
        self.assertProblem(get("/v1/customers/%s/summary" % cid), 410, "gone")

    def test_roles_and_audit(self):
        cid, _ = new_customer()
        cc = make_key("call_center")
        self.summary(cid, key=cc["api_key"])
        for role in ("front_office", "marketing", "partner"):
            k = make_key(role)
            self.assertProblem(get("/v1/customers/%s/summary" % cid, key=k["api_key"]), 403,
                               "forbidden")
        deadline = time.time() + 5
        rows = ""
        while time.time() < deadline:
            rows = sql("SELECT string_agg(role || '|' || action, ',') FROM crm.audit_log "
                       "WHERE key_id = %s AND customer_id = %s" % (lit(cc["key_id"]), lit(cid)))
            if rows:
                break
            time.sleep(0.05)
        self.assertEqual(rows, "call_center|customer.summary")


class SettingsTests(Base):
    def setUp(self):
        global DEFAULTS
        if DEFAULTS is None:
            DEFAULTS = default_settings()

    def tearDown(self):
        r = request("PUT", SETTINGS, DEFAULTS)
        self.assertEqual(r.status, 200, r)

    def test_get_defaults(self):
        doc = self.assertJson(get(SETTINGS), 200)
        self.assertEqual([(r["priority"], r["name"], r["conditions"], r["action"])
                          for r in doc["rules"]],
                         [(1, "open_complaint", ["open_complaint_case"], "resolve_case"),
                          (2, "valuable_at_risk", ["high_value", "at_risk"], "retention_offer"),
                          (3, "valuable_lapsed", ["high_value", "lapsed"], "win_back_offer"),
                          (4, "detractor", ["detractor"], "service_recovery_call"),
                          (5, "warranty_expiring", ["warranty_expiring"],
                           "warranty_extension_offer"),
                          (6, "onboarding", ["onboarding"], "onboarding_check_in"),
                          (7, "top_need", ["has_need"], "offer_{need}"),
                          (8, "no_action", [], "no_action")])
        self.assertEqual(doc["thresholds"], {"high_value_clv": 1000, "at_risk_churn_risk": 0.5,
                                             "warranty_days": 30})
        self.assertTimestamp(doc["updated_at"])
        cc = make_key("call_center")
        self.assertJson(get(SETTINGS, key=cc["api_key"]), 200)
        self.assertProblem(request("PUT", SETTINGS, DEFAULTS, key=cc["api_key"]), 403,
                           "forbidden")
        fo = make_key("front_office")
        self.assertProblem(get(SETTINGS, key=fo["api_key"]), 403, "forbidden")

    def test_invalid_lists_are_refused(self):
        before = self.assertJson(get(SETTINGS), 200)
        bad = json.loads(json.dumps(DEFAULTS))
        bad["rules"][0]["conditions"] = ["vip"]
        bad["rules"][1]["priority"] = 1
        bad["rules"][2]["reason"] = "{need}"
        bad["rules"][3]["action"] = "Call Now"
        bad["thresholds"]["at_risk_churn_risk"] = 2
        self.assertProblem(request("PUT", SETTINGS, bad), 422, "validation-failed",
                           pointers=["/rules/0/conditions/0", "/rules/1/priority",
                                     "/rules/2/reason", "/rules/3/action",
                                     "/thresholds/at_risk_churn_risk"])
        self.assertProblem(request("PUT", SETTINGS, {"rules": []}), 422, "validation-failed",
                           pointers=["/rules", "/thresholds"])
        self.assertEqual(self.assertJson(get(SETTINGS), 200), before)

    def test_changed_rules_take_effect(self):
        cid, _ = new_customer()
        set_value(cid, "mlc", 1500, 0.9)  # high value by CLV, not at risk
        self.assertEqual(self.action(cid), ("no_action", "no_action"))
        doc = json.loads(json.dumps(DEFAULTS))
        doc["rules"].insert(0, {"priority": 10, "name": "vip", "conditions": ["high_value"],
                                "action": "vip_greeting", "reason": "Tier {tier}, CLV {clv}"})
        for i, r in enumerate(doc["rules"][1:]):
            r["priority"] = 20 + i
        out = self.assertJson(request("PUT", SETTINGS, doc), 200)
        self.assertEqual(out["rules"][0]["name"], "vip")
        self.assertEqual(self.summary(cid)["next_best_action"],
                         {"rule": "vip", "priority": 10, "action": "vip_greeting",
                          "reason": "Tier mlc, CLV 1500.00"})
        # thresholds too: CLV 1500 is no longer high value above 2000
        doc["thresholds"]["high_value_clv"] = 2000
        self.assertJson(request("PUT", SETTINGS, doc), 200)
        self.assertEqual(self.action(cid), ("no_action", "no_action"))
        n = sql("SELECT count(*) FROM crm.audit_log WHERE action = "
                "'settings.next_best_action.changed' AND detail->'after'->'thresholds'->>"
                "'high_value_clv' = '2000'")
        self.assertGreaterEqual(int(n), 1)


if __name__ == "__main__":
    harness.main()
