#!/usr/bin/env python3
"""End-to-end tests of the journey stage (issue 16, part 3; docs/stage.md):
the stage a purchase decides (single and batch ingest), the sweep of
time-based changes (called directly, and run by the moments thread), the
live value run's churn risk, the thresholds in the value settings, the
history, the customer.stage_changed events, the profile's stage, the stage
segment field, the stage KPIs (customers by stage, transitions, the phase of
experience interactions relative to a purchase), and merge, unmerge and
erasure.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_stage.py [TestClass[.test_method] ...]

Time passing is simulated by moving a customer's purchases back (their
interactions, statistics and stage row) and calling crm.stage_sweep().
KPIs and segments are restricted to a per-test segment (an attribute unique
to the test), so the database need not be empty.
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, patch, post, query, uid  # noqa: E402
from test_value import days_ago  # noqa: E402

sql = harness.sql
lit = harness.lit
SOURCE = "e2e-stage"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def new_customer(marker=None):
    body = {"identifiers": [{"kind": "email", "value": "stage-%s@example.com" % uid()}],
            "source": SOURCE}
    if marker:
        body["traits"] = {"attributes": {"stage_marker": marker}}
    r = post("/v1/customers:resolve", body)
    assert r.status == 201, r
    return r.body["customer_id"]


def item(cid, type="purchase", at=None, channel="web", **fields):
    body = {"customer_id": cid, "source": SOURCE, "external_id": "st-" + uid(),
            "channel": channel, "type": type, "occurred_at": at or days_ago(0)}
    if type == "purchase":
        body.setdefault("amount", 20)
        body.setdefault("currency", "EUR")
    body.update(fields)
    return body


def stage_row(cid):
    out = sql("SELECT stage FROM crm.customer_stage WHERE customer_id = %s" % lit(cid))
    return out or None


def history(cid):
    out = sql("SELECT coalesce(string_agg(from_stage || '>' || to_stage || ':' || reason, ' ' "
              "ORDER BY at, from_stage), '') FROM crm.stage_history WHERE customer_id = %s"
              % lit(cid))
    return out.split() if out else []


def events(cid):
    out = sql("SELECT coalesce(jsonb_agg(data ORDER BY xid, seq), '[]') FROM crm.events "
              "WHERE customer_id = %s AND type = 'customer.stage_changed'" % lit(cid))
    return json.loads(out)


def shift_back(cid, days):
    """Time passes: the customer's purchases (and everything decided from
    them) move `days` into the past; the stage row is due at once."""
    iv = "interval '%d days'" % days
    sql("UPDATE crm.interactions SET occurred_at = occurred_at - %s WHERE customer_id = %s"
        % (iv, lit(cid)))
    sql("UPDATE crm.interaction_stats SET first_at = first_at - %s, last_at = last_at - %s "
        "WHERE customer_id = %s" % (iv, iv, lit(cid)))
    sql("UPDATE crm.customer_stage SET first_purchase_at = first_purchase_at - %s, "
        "last_purchase_at = last_purchase_at - %s, since = since - %s, due_at = now() "
        "WHERE customer_id = %s" % (iv, iv, iv, lit(cid)))


def sweep():
    return json.loads(sql("SELECT crm.stage_sweep()"))


class Base(harness.CrmTestCase):
    def ingest(self, cid, **kw):
        return self.assertJson(post("/v1/interactions", item(cid, **kw)), 201)

    def stage(self, cid):
        return self.assertJson(get("/v1/customers/%s" % cid), 200)["stage"]

    def settings(self, **values):
        """Patch stage settings for the test; restored (and swept) after it."""
        before = self.assertJson(get("/v1/settings/value"), 200)
        self.assertJson(patch("/v1/settings/value", values), 200)

        def restore():
            self.assertJson(patch("/v1/settings/value", {k: before[k] for k in values}), 200)
            sweep()
        self.addCleanup(restore)


# ---------------------------------------------------------------------------
# a purchase decides the stage

class PurchaseTests(Base):
    def test_prospect_until_the_first_purchase_then_onboarding(self):
        cid = new_customer()
        created = self.assertJson(get("/v1/customers/%s" % cid), 200)["created_at"]
        self.assertEqual(self.stage(cid), {"stage": "prospect", "since": created})
        self.ingest(cid, type="page_view")
        self.ingest(cid, type="complaint", channel="email")
        self.assertIsNone(stage_row(cid))  # no purchase: no row, no write
        self.assertEqual(self.stage(cid)["stage"], "prospect")
        self.ingest(cid, amount=30)
        st = self.stage(cid)
        self.assertEqual(st["stage"], "onboarding")
        self.assertGreater(st["since"], created)
        self.assertEqual(history(cid), ["prospect>onboarding:purchase"])
        evs = events(cid)
        self.assertEqual([(e["from"], e["to"], e["reason"]) for e in evs],
                         [("prospect", "onboarding", "purchase")])
        self.assertTimestamp(evs[0]["at"])
        # a second purchase changes nothing (the one-statement path)
        self.ingest(cid, amount=10)
        self.assertEqual(self.stage(cid), st)
        self.assertEqual(len(history(cid)), 1)

    def test_the_purchase_dates_decide(self):
        # first purchase 400 days ago, last 100: at risk by recency
        a = new_customer()
        self.ingest(a, at=days_ago(400))
        self.assertEqual(self.stage(a)["stage"], "lapsed")
        self.ingest(a, at=days_ago(10))
        self.assertEqual(self.stage(a)["stage"], "won_back")  # bought after being lapsed
        # a win-back longer ago than stage_won_back_days is decided by the other rules
        d = new_customer()
        self.ingest(d, at=days_ago(400))
        self.ingest(d, at=days_ago(100))
        self.assertEqual(self.stage(d)["stage"], "at_risk")
        self.assertEqual(history(d), ["prospect>lapsed:purchase", "lapsed>at_risk:purchase"])
        b = new_customer()
        self.ingest(b, at=days_ago(400))
        self.ingest(b, at=days_ago(395))
        self.assertEqual(self.stage(b)["stage"], "lapsed")
        # an old purchase found late is no win-back
        self.ingest(b, at=days_ago(390))
        self.assertEqual(self.stage(b)["stage"], "lapsed")
        c = new_customer()
        self.ingest(c, at=days_ago(100))
        self.assertEqual(self.stage(c)["stage"], "at_risk")
        self.ingest(c, at=days_ago(1))
        self.assertEqual(self.stage(c)["stage"], "active")
        self.assertEqual(history(c), ["prospect>at_risk:purchase", "at_risk>active:purchase"])

    def test_won_back_then_active(self):
        cid = new_customer()
        self.ingest(cid, at=days_ago(500))
        self.ingest(cid, at=days_ago(300))
        self.assertEqual(self.stage(cid)["stage"], "lapsed")
        self.ingest(cid, at=days_ago(0))
        self.assertEqual(self.stage(cid)["stage"], "won_back")
        self.ingest(cid, at=days_ago(0))
        self.assertEqual(self.stage(cid)["stage"], "won_back")
        # 61 days on (stage_won_back_days 60), with a purchase 10 days ago: active
        shift_back(cid, 61)
        self.ingest(cid, at=days_ago(10))
        self.assertEqual(self.stage(cid)["stage"], "active")
        self.assertEqual(history(cid), ["prospect>lapsed:purchase", "lapsed>won_back:purchase",
                                        "won_back>active:purchase"])

    def test_batch_ingest_decides_each_buyer(self):
        a, b, c = new_customer(), new_customer(), new_customer()
        items = [item(a, at=days_ago(2)), item(b, at=days_ago(200)), item(a, at=days_ago(1)),
                 item(c, type="inquiry"), item(b, type="complaint")]
        doc = self.assertJson(post("/v1/interactions:batch", {"items": items}), 200)
        self.assertEqual(doc["created"], 5, doc)
        self.assertEqual(self.stage(a)["stage"], "onboarding")
        self.assertEqual(self.stage(b)["stage"], "lapsed")
        self.assertEqual(self.stage(c)["stage"], "prospect")
        self.assertIsNone(stage_row(c))
        self.assertEqual(history(a), ["prospect>onboarding:purchase"])

    def test_a_stale_row_is_decided_first(self):
        # active, but the sweep has not yet seen 200 days pass: the next
        # purchase is a win-back all the same
        cid = new_customer()
        self.ingest(cid, at=days_ago(60))
        self.ingest(cid, at=days_ago(1))
        self.assertEqual(self.stage(cid)["stage"], "active")
        shift_back(cid, 200)  # the sweep has not run since
        self.assertEqual(stage_row(cid), "active")
        self.ingest(cid, at=days_ago(0))
        self.assertEqual(self.stage(cid)["stage"], "won_back")


# ---------------------------------------------------------------------------
# time: the sweep

class SweepTests(Base):
    def test_onboarding_active_at_risk_lapsed_as_days_pass(self):
        cid = new_customer()
        self.ingest(cid, at=days_ago(0))
        self.assertEqual(self.stage(cid)["stage"], "onboarding")
        shift_back(cid, 31)
        self.assertGreaterEqual(sweep()["changes"], 1)
        self.assertEqual(self.stage(cid)["stage"], "active")
        shift_back(cid, 60)
        sweep()
        self.assertEqual(self.stage(cid)["stage"], "at_risk")
        shift_back(cid, 90)
        sweep()
        st = self.stage(cid)
        self.assertEqual(st["stage"], "lapsed")
        self.assertEqual(history(cid), ["prospect>onboarding:purchase", "onboarding>active:sweep",
                                        "active>at_risk:sweep", "at_risk>lapsed:sweep"])
        self.assertEqual([e["to"] for e in events(cid)],
                         ["onboarding", "active", "at_risk", "lapsed"])
        # a lapsed customer is due no more
        self.assertEqual(sql("SELECT due_at IS NULL FROM crm.customer_stage "
                             "WHERE customer_id = %s" % lit(cid)), "t")
        # nothing due: the sweep changes nothing
        sql("UPDATE crm.customer_stage SET due_at = now() WHERE customer_id = %s" % lit(cid))
        sweep()
        self.assertEqual(self.stage(cid), st)

    def test_the_moments_thread_sweeps(self):
        cid = new_customer()
        self.ingest(cid, at=days_ago(0))
        shift_back(cid, 100)
        server = harness.extra_server("--moments-period", "1")
        try:
            deadline = time.monotonic() + 30
            while stage_row(cid) != "at_risk" and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            server.stop()
        self.assertEqual(stage_row(cid), "at_risk")
        self.assertEqual(history(cid)[-1], "onboarding>at_risk:sweep")

    def test_changed_thresholds_decide_everyone_again(self):
        cid = new_customer()
        self.ingest(cid, at=days_ago(5))
        self.assertEqual(self.stage(cid)["stage"], "onboarding")
        sweep()  # the thresholds the sweep used are the current ones
        self.settings(stage_onboarding_days=3)
        doc = sweep()
        self.assertTrue(doc.get("thresholds_changed"), doc)
        self.assertEqual(self.stage(cid)["stage"], "active")


# ---------------------------------------------------------------------------
# settings

class SettingsTests(Base):
    def test_defaults_ranges_and_order(self):
        doc = self.assertJson(get("/v1/settings/value"), 200)
        for k, v in (("stage_onboarding_days", 30), ("stage_at_risk_days", 90),
                     ("stage_at_risk_churn", 0.5), ("stage_lapsed_days", 180),
                     ("stage_won_back_days", 60), ("stage_during_hours", 24)):
            self.assertEqual(doc[k], v, k)
        for body, pointer in (({"stage_onboarding_days": 0}, "/stage_onboarding_days"),
                              ({"stage_at_risk_churn": 1.5}, "/stage_at_risk_churn"),
                              ({"stage_lapsed_days": 10.5}, "/stage_lapsed_days"),
                              ({"stage_during_hours": "24"}, "/stage_during_hours"),
                              ({"stage_at_risk_days": 180}, "/stage_at_risk_days"),
                              ({"stage_lapsed_days": 90}, "/stage_lapsed_days"),
                              ({"stage_at_risk_days": 200, "stage_lapsed_days": 150},
                               "/stage_lapsed_days")):
            with self.subTest(body=body):
                self.assertProblem(patch("/v1/settings/value", body), 422, "validation-failed",
                                   pointers=[pointer])
        self.assertEqual(self.assertJson(get("/v1/settings/value"), 200), doc)  # nothing applied
        self.settings(stage_at_risk_days=100, stage_lapsed_days=101)
        doc = self.assertJson(get("/v1/settings/value"), 200)
        self.assertEqual((doc["stage_at_risk_days"], doc["stage_lapsed_days"]), (100, 101))


# ---------------------------------------------------------------------------
# value runs: the churn risk

class ValueRunTests(Base):
    @classmethod
    def setUpClass(cls):
        test_value.make_fit_population()

    def test_churn_above_the_threshold_is_at_risk(self):
        cid = new_customer()
        for d in (60, 40, 20):
            self.ingest(cid, at=days_ago(d))
        self.assertEqual(self.stage(cid)["stage"], "active")
        test_value.recompute()
        p_alive = self.assertJson(get("/v1/customers/%s" % cid), 200)["value"]["p_alive"]
        self.assertLess(p_alive, 1)
        self.assertEqual(self.stage(cid)["stage"], "active")  # churn 1 - p_alive <= 0.5
        self.settings(stage_at_risk_churn=max(0.0, round(1 - p_alive - 0.001, 6)))
        test_value.recompute()
        self.assertEqual(self.stage(cid)["stage"], "at_risk")
        self.assertEqual(history(cid)[-1], "active>at_risk:value_run")
        # a purchase since the run proves the customer alive
        self.ingest(cid, at=days_ago(0))
        self.assertEqual(self.stage(cid)["stage"], "active")


# ---------------------------------------------------------------------------
# segments and KPIs

class SegmentAndKpiTests(Base):
    def test_stage_segment_field(self):
        marker = uid()
        lapsed, fresh, prospect = new_customer(marker), new_customer(marker), new_customer(marker)
        self.ingest(lapsed, at=days_ago(300))
        self.ingest(fresh, at=days_ago(1))

        def ids(op, value):
            rule = {"all": [{"field": "traits.attributes.stage_marker", "op": "eq",
                             "value": marker}, {"field": "stage", "op": op, "value": value}]}
            doc = self.assertJson(post("/v1/segments:preview", {"rule": rule}), 200)
            return sorted(it["customer_id"] for it in doc["items"])
        self.assertEqual(ids("eq", "lapsed"), [lapsed])
        self.assertEqual(ids("in", ["onboarding", "prospect"]), sorted([fresh, prospect]))
        self.assertEqual(ids("ne", "prospect"), sorted([lapsed, fresh]))
        self.assertProblem(post("/v1/segments:preview", {"rule": {
            "field": "stage", "op": "eq", "value": "churned"}}), 422, "validation-failed",
            pointers=["/rule/value"])
        # live membership follows a stage change
        seg = self.assertJson(post("/v1/segments", {"name": "won back " + marker, "rule": {
            "all": [{"field": "traits.attributes.stage_marker", "op": "eq", "value": marker},
                    {"field": "stage", "op": "eq", "value": "won_back"}]}}), 201)
        self.assertIn("stage", seg["depends"])
        self.ingest(lapsed, at=days_ago(0))
        deadline = time.monotonic() + 20
        members = []
        while time.monotonic() < deadline:
            members = [it["customer_id"] for it in self.assertJson(
                get("/v1/segments/%s/customers" % seg["segment_id"]), 200)["items"]]
            if members:
                break
            time.sleep(0.2)
        self.assertEqual(members, [lapsed])
        harness.request("DELETE", "/v1/segments/%s" % seg["segment_id"])

    def test_kpis_by_stage_transitions_and_phases(self):
        marker = uid()
        seg = self.assertJson(post("/v1/segments", {"name": "stage kpis " + marker, "rule": {
            "field": "traits.attributes.stage_marker", "op": "eq", "value": marker}}), 201)
        self.addCleanup(harness.request, "DELETE", "/v1/segments/%s" % seg["segment_id"])
        a, b, c = new_customer(marker), new_customer(marker), new_customer(marker)
        # a: a complaint before any purchase, then a purchase, a complaint
        # two hours later (during) and one ten days later (after)
        self.ingest(a, type="complaint", channel="phone", at=days_ago(20))
        self.ingest(a, at=days_ago(15))
        self.ingest(a, type="complaint", channel="email", at=days_ago(15, -2))
        self.ingest(a, type="complaint", channel="email", at=days_ago(5))
        self.ingest(a, type="return", at=days_ago(4))
        # b: lapsed; c: a prospect with a complaint (before)
        self.ingest(b, at=days_ago(300))
        self.ingest(c, type="complaint", channel="phone", at=days_ago(3))
        self.ingest(c, type="page_view", at=days_ago(3))  # not an experience interaction
        r = get(query("/v1/kpis", {"from": days_ago(30), "to": days_ago(-1),
                               "segment_id": seg["segment_id"]}))
        k = self.assertJson(r, 200)["stage"]
        self.assertEqual(k["customers_by_stage"], {"prospect": 1, "onboarding": 1, "active": 0,
                                                   "at_risk": 0, "lapsed": 1, "won_back": 0})
        self.assertEqual(k["transitions"]["total"], 2)
        self.assertEqual(sorted((t["from"], t["to"], t["count"]) for t in k["transitions"]["items"]),
                         [("prospect", "lapsed", 1), ("prospect", "onboarding", 1)])
        ph = k["phases"]
        self.assertEqual(ph["window_hours"], 24)
        self.assertEqual(ph["total"], {"before": 2, "during": 1, "after": 2})
        self.assertEqual(ph["by_type"], {"complaint": {"before": 2, "during": 1, "after": 1},
                                         "return": {"before": 0, "during": 0, "after": 1}})
        self.assertEqual(ph["complaints_by_channel"],
                         {"phone": {"before": 2, "during": 0, "after": 0},
                          "email": {"before": 0, "during": 1, "after": 1}})
        # a narrower window: the complaint two hours after is no longer during
        self.settings(stage_during_hours=1)
        k = self.assertJson(get(query("/v1/kpis", {"from": days_ago(30), "to": days_ago(-1),
                                                   "segment_id": seg["segment_id"]})), 200)["stage"]
        self.assertEqual(k["phases"]["total"], {"before": 2, "during": 0, "after": 3})
        # a period before everything: no transitions, no interactions
        k = self.assertJson(get(query("/v1/kpis", {"from": days_ago(400), "to": days_ago(350),
                                                   "segment_id": seg["segment_id"]})), 200)["stage"]
        self.assertEqual(k["transitions"], {"total": 0, "items": []})
        self.assertEqual(k["phases"]["total"], {"before": 0, "during": 0, "after": 0})


# ---------------------------------------------------------------------------
# merge, unmerge, erasure

class IdentityTests(Base):
    def test_merge_decides_the_survivor_and_unmerge_both(self):
        a, b = new_customer(), new_customer()
        self.ingest(a, at=days_ago(300))
        self.ingest(b, at=days_ago(2))
        self.assertEqual((self.stage(a)["stage"], self.stage(b)["stage"]), ("lapsed", "onboarding"))
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                  "reason": "e2e stage"}), 200)
        # the survivor bought 2 days ago, after being lapsed: won back
        self.assertEqual(self.stage(a)["stage"], "won_back")
        self.assertEqual(history(a)[-1], "lapsed>won_back:merge")
        # the absorbed customer's row is kept as it was, out of the sweep
        self.assertEqual(sql("SELECT stage || ' ' || (due_at IS NULL) FROM crm.customer_stage "
                             "WHERE customer_id = %s" % lit(b)), "onboarding true")
        before_b = self.stage(b)  # the survivor's, through the absorbed id
        self.assertEqual(before_b["stage"], "won_back")
        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b}), 200)
        self.assertEqual(self.stage(a)["stage"], "lapsed")
        st_b = self.stage(b)
        self.assertEqual(st_b["stage"], "onboarding")
        self.assertEqual(history(a)[-1], "won_back>lapsed:unmerge")
        self.assertEqual(history(b), ["prospect>onboarding:purchase"])  # no change for b

    def test_merge_of_a_buyer_into_a_prospect(self):
        a, b = new_customer(), new_customer()
        self.ingest(b, at=days_ago(100))
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                  "reason": "e2e stage"}), 200)
        self.assertEqual(self.stage(a)["stage"], "at_risk")
        self.assertEqual(history(a), ["prospect>at_risk:merge"])
        # unmerged, the survivor has no purchase again: a prospect without a
        # row, since its creation, as before the merge
        created = self.assertJson(get("/v1/customers/%s" % a), 200)["created_at"]
        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b}), 200)
        self.assertEqual(self.stage(a), {"stage": "prospect", "since": created})
        self.assertIsNone(stage_row(a))
        self.assertEqual(history(a), ["prospect>at_risk:merge", "at_risk>prospect:unmerge"])

    def test_erasure_removes_stage_and_history(self):
        marker = uid()
        a = new_customer(marker)
        self.ingest(a, at=days_ago(1))
        self.assertEqual(len(history(a)), 1)
        exported = self.assertJson(get("/v1/customers/%s/export" % a), 200)["stage_history"]
        self.assertEqual([(h["from"], h["to"], h["reason"]) for h in exported],
                         [("prospect", "onboarding", "purchase")])
        self.assertJson(harness.request("DELETE", "/v1/customers/%s" % a), 200)
        self.assertIsNone(stage_row(a))
        self.assertEqual(history(a), [])
        self.assertStatus(get("/v1/customers/%s" % a), 410)
        # the events keep no personal data and stay
        self.assertEqual([e["to"] for e in events(a)], ["onboarding"])
        # and the sweep leaves the erased customer alone
        sweep()
        self.assertIsNone(stage_row(a))


if __name__ == "__main__":
    harness.main()
