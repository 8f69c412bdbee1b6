#!/usr/bin/env python3
"""End-to-end tests of satisfaction as data (issue 16, part 2; docs/api.md
"Satisfaction scores", docs/value.md): typed scores on feedback, review and
support_call interactions (nps 0-10, csat 1-5, ces 1-7) validated on single
and batch ingest, stored in crm.interactions' own columns
(sql/015_satisfaction.sql); the profile's satisfaction section (latest score
of each kind and the NPS category) through the profile cache; scores through
merge, unmerge and erasure; the satisfaction KPIs (NPS over each customer's
latest answer, average CSAT and CES, by channel, for a period and a segment);
and the satisfaction segment fields.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_satisfaction.py [TestClass[.test_method] ...]

Every test uses fresh customers; KPIs and segments are restricted to a
per-test segment (an attribute unique to the test), so the database need not
be empty.
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, post, query, uid  # noqa: E402

sql = harness.sql
lit = harness.lit

NO_SCORES = {"nps": None, "nps_category": None, "csat": None, "ces": None}


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def new_customer(attributes=None):
    body = {"identifiers": [{"kind": "email", "value": "sat-%s@example.com" % uid()}],
            "source": "e2e-sat"}
    if attributes:
        body["traits"] = {"attributes": attributes}
    r = post("/v1/customers:resolve", body)
    assert r.status == 201, r
    return r.body["customer_id"]


def item(cid, type="feedback", channel="email", at="2026-03-01T10:00:00Z", scores=None,
         **fields):
    body = {"customer_id": cid, "source": "e2e-sat", "external_id": "s-" + uid(),
            "channel": channel, "type": type, "occurred_at": at}
    if scores is not None:
        body["scores"] = scores
    body.update(fields)
    return body


def fresh_profile(cid):
    """The profile built from the tables now, bypassing the cache."""
    return json.loads(sql("SELECT coalesce(crm.gone_doc(%s), crm.profile(%s))"
                          % (lit(cid), lit(cid))))


def stored_scores(external_id):
    out = sql("SELECT concat_ws(',', coalesce(nps::text, '-'), coalesce(csat::text, '-'), "
              "coalesce(ces::text, '-')) FROM crm.interactions "
              "WHERE source = 'e2e-sat' AND external_id = %s" % lit(external_id))
    return out or None


class Base(harness.CrmTestCase):
    def ingest(self, cid, **kw):
        body = item(cid, **kw)
        doc = self.assertJson(post("/v1/interactions", body), 201)
        return doc["interaction_id"], body

    def profile(self, cid):
        return self.assertJson(get("/v1/customers/%s" % cid), 200)

    def satisfaction(self, cid):
        doc = self.profile(cid)
        # What the cache answers is what the tables say now.
        self.assertEqual(doc, fresh_profile(cid))
        return doc["satisfaction"]

    def assertPointers(self, r, *pointers):
        body = self.assertProblem(r, 422, "validation-failed")
        self.assertEqual(sorted(e["pointer"] for e in body["errors"]), sorted(pointers),
                         body["errors"])
        return body


# ---------------------------------------------------------------------------
# ingest and validation

class IngestTests(Base):
    def test_scores_are_stored_in_their_columns_and_shown_on_the_timeline(self):
        cid = new_customer()
        iid, body = self.ingest(cid, scores={"nps": 9, "csat": 4},
                                payload={"comment": "quick and friendly"})
        self.assertEqual(stored_scores(body["external_id"]), "9,4,-")
        self.ingest(cid, type="support_call", channel="phone", at="2026-03-02T10:00:00Z",
                    scores={"ces": 2})
        self.ingest(cid, type="review", channel="web", at="2026-03-03T10:00:00Z",
                    scores={"csat": 5, "nps": None})
        self.ingest(cid, type="page_view", channel="web", at="2026-03-04T10:00:00Z")
        items = self.assertJson(get("/v1/customers/%s/interactions" % cid), 200)["items"]
        self.assertEqual([(i["type"], i["scores"]) for i in items],
                         [("page_view", None), ("review", {"csat": 5}),
                          ("support_call", {"ces": 2}), ("feedback", {"nps": 9, "csat": 4})])
        # free text stays in the payload
        self.assertEqual(items[3]["payload"], {"comment": "quick and friendly"})
        self.assertEqual(items[3]["interaction_id"], iid)

    def test_invalid_scores_answer_422_and_store_nothing(self):
        cid = new_customer()
        cases = [
            ({"nps": 11}, "feedback", ["/scores/nps"]),
            ({"nps": -1}, "feedback", ["/scores/nps"]),
            ({"csat": 0}, "feedback", ["/scores/csat"]),
            ({"csat": 6}, "review", ["/scores/csat"]),
            ({"ces": 8}, "support_call", ["/scores/ces"]),
            ({"nps": "9"}, "feedback", ["/scores/nps"]),
            ({"nps": 8.5}, "feedback", ["/scores/nps"]),
            ({"csat": True}, "feedback", ["/scores/csat"]),
            ({"stars": 4}, "review", ["/scores/stars"]),
            ([9], "feedback", ["/scores"]),
            ({"nps": 9}, "purchase", ["/scores"]),
            ({"csat": 2}, "complaint", ["/scores"]),
            ({"nps": 12, "ces": 0}, "feedback", ["/scores/nps", "/scores/ces"]),
        ]
        for scores, type, pointers in cases:
            with self.subTest(scores=scores, type=type):
                body = item(cid, type=type, scores=scores)
                self.assertPointers(post("/v1/interactions", body), *pointers)
                self.assertIsNone(stored_scores(body["external_id"]))
        body = self.assertProblem(post("/v1/interactions", item(cid, type="purchase",
                                                                scores={"nps": 9})),
                                  422, "validation-failed")
        self.assertIn("feedback, review, support_call", body["errors"][0]["detail"])

    def test_batch_validates_each_item(self):
        cid = new_customer()
        good = item(cid, scores={"nps": 10, "ces": 3})
        items = [good,
                 item(cid, scores={"nps": 11}),
                 item(cid, type="visit", scores={"csat": 3}),
                 item(cid, type="review", scores={"csat": 2}),
                 item(cid, type="visit")]
        doc = self.assertJson(post("/v1/interactions:batch", {"items": items}), 200)
        self.assertEqual((doc["created"], doc["failed"]), (3, 2))
        res = doc["results"]
        self.assertEqual([r["status"] for r in res],
                         ["created", "failed", "failed", "created", "created"])
        self.assertEqual([e["pointer"] for e in res[1]["problem"]["errors"]],
                         ["/items/1/scores/nps"])
        self.assertEqual([e["pointer"] for e in res[2]["problem"]["errors"]],
                         ["/items/2/scores"])
        self.assertEqual([stored_scores(i["external_id"]) for i in items],
                         ["10,-,3", None, None, "-,2,-", "-,-,-"])

    def test_a_repeat_within_a_batch_keeps_the_first_scores(self):
        # (Should crm.ingest_batch fail, the server stores the items with the
        # single ingest statement, which the tests above use.)
        cid = new_customer()
        first = item(cid, scores={"nps": 3})
        again = dict(first, scores={"nps": 10})
        doc = self.assertJson(post("/v1/interactions:batch", {"items": [first, again]}), 200)
        self.assertEqual([r["status"] for r in doc["results"]], ["created", "duplicate"])
        self.assertEqual(stored_scores(first["external_id"]), "3,-,-")

    def test_a_redelivery_keeps_the_first_scores(self):
        cid = new_customer()
        body = item(cid, scores={"csat": 1})
        self.assertJson(post("/v1/interactions", body), 201)
        doc = self.assertJson(post("/v1/interactions", dict(body, scores={"csat": 5})), 200)
        self.assertEqual(doc["status"], "duplicate")
        self.assertEqual(stored_scores(body["external_id"]), "-,1,-")


# ---------------------------------------------------------------------------
# the profile

class ProfileTests(Base):
    def test_latest_score_of_each_kind_and_the_category(self):
        cid = new_customer()
        self.assertEqual(self.satisfaction(cid), NO_SCORES)
        self.assertEqual(sql("SELECT doc IS NOT NULL FROM crm.profile_cache "
                             "WHERE customer_id = %s" % lit(cid)), "t")
        self.ingest(cid, type="review", channel="web", at="2026-01-05T09:00:00Z",
                    scores={"csat": 5})
        promoter, _ = self.ingest(cid, at="2026-02-01T09:00:00Z", scores={"nps": 9})
        sat = self.satisfaction(cid)
        self.assertEqual(sat["nps"], {"score": 9, "at": "2026-02-01T09:00:00.000000Z",
                                      "channel": "email", "type": "feedback",
                                      "interaction_id": promoter})
        self.assertEqual(sat["nps_category"], "promoter")
        self.assertEqual(sat["csat"]["score"], 5)
        self.assertIsNone(sat["ces"])
        # A later call: the NPS and CES it carries are the latest now.
        call, _ = self.ingest(cid, type="support_call", channel="phone",
                              at="2026-03-01T09:00:00Z", scores={"nps": 3, "ces": 6})
        sat = self.satisfaction(cid)
        self.assertEqual((sat["nps"]["score"], sat["nps"]["interaction_id"],
                          sat["nps"]["channel"], sat["nps_category"]),
                         (3, call, "phone", "detractor"))
        self.assertEqual(sat["ces"]["score"], 6)
        self.assertEqual(sat["csat"]["score"], 5)   # untouched: the call had none
        # A late-arriving older answer does not replace the latest one.
        self.ingest(cid, at="2026-01-01T09:00:00Z", scores={"nps": 10, "csat": 1})
        sat = self.satisfaction(cid)
        self.assertEqual((sat["nps"]["score"], sat["nps_category"], sat["csat"]["score"]),
                         (3, "detractor", 5))

    def test_categories(self):
        cid = new_customer()
        for day, (nps, category) in enumerate([(0, "detractor"), (6, "detractor"),
                                               (7, "passive"), (8, "passive"),
                                               (9, "promoter"), (10, "promoter")], start=1):
            with self.subTest(nps=nps):
                self.ingest(cid, at="2026-04-%02dT12:00:00Z" % day, scores={"nps": nps})
                sat = self.satisfaction(cid)
                self.assertEqual((sat["nps"]["score"], sat["nps_category"]), (nps, category))

    def test_export_carries_the_scores(self):
        cid = new_customer()
        self.ingest(cid, scores={"nps": 7, "ces": 2})
        doc = self.assertJson(get("/v1/customers/%s/export" % cid), 200)
        self.assertEqual([i["scores"] for i in doc["interactions"]], [{"nps": 7, "ces": 2}])
        self.assertEqual(doc["profile"]["satisfaction"]["nps_category"], "passive")


# ---------------------------------------------------------------------------
# merge, unmerge, erasure

class IdentityTests(Base):
    def test_scores_travel_with_their_interactions_through_merge_and_unmerge(self):
        a, b = new_customer(), new_customer()
        a_nps, _ = self.ingest(a, at="2026-02-01T09:00:00Z", scores={"nps": 9})
        b_nps, _ = self.ingest(b, type="support_call", channel="phone",
                               at="2026-02-10T09:00:00Z", scores={"nps": 2, "csat": 3})
        before = {a: self.satisfaction(a), b: self.satisfaction(b)}
        self.assertEqual(before[a]["nps_category"], "promoter")
        self.assertEqual(before[b]["nps_category"], "detractor")

        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                  "reason": "e2e-sat: same person"}), 200)
        merged = self.satisfaction(a)
        self.assertEqual((merged["nps"]["interaction_id"], merged["nps_category"]),
                         (b_nps, "detractor"))
        self.assertEqual(merged["csat"]["score"], 3)
        # the absorbed id answers with the survivor's document
        self.assertEqual(self.profile(b)["satisfaction"], merged)

        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b}), 200)
        self.assertEqual(self.satisfaction(a), before[a])
        self.assertEqual(self.satisfaction(b), before[b])
        self.assertEqual(self.satisfaction(a)["nps"]["interaction_id"], a_nps)

    def test_erasure_removes_the_scores(self):
        cid = new_customer()
        _, body = self.ingest(cid, scores={"nps": 1, "csat": 2, "ces": 7},
                              payload={"comment": "never again"})
        self.assertEqual(stored_scores(body["external_id"]), "1,2,7")
        doc = self.assertJson(harness.request("DELETE", "/v1/customers/%s" % cid), 200)
        self.assertEqual(doc["interactions_anonymised"], 1)
        self.assertEqual(stored_scores(body["external_id"]), "-,-,-")
        self.assertEqual(sql("SELECT count(*) FROM crm.interactions WHERE customer_id = %s "
                             "AND (nps IS NOT NULL OR csat IS NOT NULL OR ces IS NOT NULL)"
                             % lit(cid)), "0")
        self.assertProblem(get("/v1/customers/%s" % cid), 410, "gone")


# ---------------------------------------------------------------------------
# KPIs and segments

def segment_for(tag):
    r = post("/v1/segments", {"name": "sat-" + tag,
                              "rule": {"field": "traits.attributes.sat_test", "op": "eq",
                                       "value": tag}})
    assert r.status == 201, r
    return r.body["segment_id"]


class KpiTests(Base):
    FROM, TO = "2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z"

    def kpis(self, segment_id):
        doc = self.assertJson(get(query("/v1/kpis", {"from": self.FROM, "to": self.TO,
                                                     "segment_id": segment_id})), 200)
        return doc["satisfaction"]

    def test_nps_csat_ces_by_channel_for_a_period_and_a_segment(self):
        tag = uid()
        c1, c2, c3, c4, c5, c6 = (new_customer({"sat_test": tag}) for _ in range(6))
        outsider = new_customer()
        # c1: promoter by email, then a detractor by phone: its latest (4) counts once
        self.ingest(c1, at="2026-05-02T10:00:00Z", scores={"nps": 10, "csat": 5})
        self.ingest(c1, type="support_call", channel="phone", at="2026-05-20T10:00:00Z",
                    scores={"nps": 4, "ces": 3})
        self.ingest(c2, at="2026-05-03T10:00:00Z", scores={"nps": 9, "csat": 4})
        self.ingest(c3, type="support_call", channel="phone", at="2026-05-04T10:00:00Z",
                    scores={"nps": 10, "csat": 2, "ces": 5})
        self.ingest(c6, channel="sms", at="2026-05-05T10:00:00Z", scores={"nps": 7})
        # c4: answers outside the period only; c5: none
        self.ingest(c4, at="2026-04-30T23:59:59Z", scores={"nps": 0, "csat": 1})
        self.ingest(c4, at="2026-06-01T00:00:00Z", scores={"nps": 0, "ces": 7})
        self.ingest(c5, type="purchase", at="2026-05-10T10:00:00Z", amount=10, currency="EUR")
        # not in the segment
        self.ingest(outsider, at="2026-05-10T10:00:00Z", scores={"nps": 0, "csat": 1})

        sat = self.kpis(segment_for(tag))
        self.assertEqual(sat["nps"], {"score": 25.0, "respondents": 4, "promoters": 2,
                                      "passives": 1, "detractors": 1})
        self.assertEqual(sat["csat"], {"average": 3.6667, "responses": 3})
        self.assertEqual(sat["ces"], {"average": 4.0, "responses": 2})
        self.assertEqual(sorted(sat["by_channel"]), ["email", "phone", "sms"])
        email, phone, sms = (sat["by_channel"][c] for c in ("email", "phone", "sms"))
        self.assertEqual(email["nps"], {"score": 100.0, "respondents": 2, "promoters": 2,
                                        "passives": 0, "detractors": 0})
        self.assertEqual(email["csat"], {"average": 4.5, "responses": 2})
        self.assertEqual(email["ces"], {"average": None, "responses": 0})
        self.assertEqual(phone["nps"], {"score": 0.0, "respondents": 2, "promoters": 1,
                                        "passives": 0, "detractors": 1})
        self.assertEqual(phone["csat"], {"average": 2.0, "responses": 1})
        self.assertEqual(phone["ces"], {"average": 4.0, "responses": 2})
        self.assertEqual(sms["nps"]["score"], 0.0)
        self.assertEqual(sms["nps"]["passives"], 1)

    def test_no_answers(self):
        tag = uid()
        cid = new_customer({"sat_test": tag})
        self.ingest(cid, type="purchase", at="2026-05-10T10:00:00Z", amount=10, currency="EUR")
        self.assertEqual(self.kpis(segment_for(tag)), {
            "nps": {"score": None, "respondents": 0, "promoters": 0, "passives": 0,
                    "detractors": 0},
            "csat": {"average": None, "responses": 0},
            "ces": {"average": None, "responses": 0},
            "by_channel": {}})

    def test_erased_answers_leave_the_kpis(self):
        tag = uid()
        a, b = new_customer({"sat_test": tag}), new_customer({"sat_test": tag})
        self.ingest(a, at="2026-05-02T10:00:00Z", scores={"nps": 10})
        self.ingest(b, at="2026-05-02T10:00:00Z", scores={"nps": 0})
        seg = segment_for(tag)
        self.assertEqual(self.kpis(seg)["nps"]["respondents"], 2)
        # Erased, b is no longer a member (its traits are gone), and its
        # answers are gone from the whole population too.
        self.assertJson(harness.request("DELETE", "/v1/customers/%s" % b), 200)
        self.assertEqual(self.kpis(seg)["nps"]["respondents"], 1)
        self.assertEqual(sql("SELECT count(nps) FROM crm.interactions WHERE customer_id = %s"
                             % lit(b)), "0")


class SegmentTests(Base):
    AS_OF = "2026-07-01T00:00:00Z"

    def preview(self, rule):
        return post("/v1/segments:preview", {"rule": rule, "limit": 100})

    def test_detractors_with_high_value(self):
        tag = uid()
        mine = {"field": "traits.attributes.sat_test", "op": "eq", "value": tag}
        rich_detractor, poor_detractor, rich_promoter, silent = (
            new_customer({"sat_test": tag}) for _ in range(4))
        for cid, amount in ((rich_detractor, 900), (poor_detractor, 20), (rich_promoter, 900),
                            (silent, 900)):
            self.ingest(cid, type="purchase", channel="store", at="2026-01-10T10:00:00Z",
                        amount=amount, currency="EUR")
        self.ingest(rich_detractor, at="2026-01-20T10:00:00Z", scores={"nps": 9})
        self.ingest(rich_detractor, at="2026-02-20T10:00:00Z", scores={"nps": 5})
        self.ingest(poor_detractor, at="2026-02-20T10:00:00Z", scores={"nps": 1})
        self.ingest(rich_promoter, at="2026-01-20T10:00:00Z", scores={"nps": 2})
        self.ingest(rich_promoter, at="2026-02-20T10:00:00Z", scores={"nps": 10, "csat": 2})
        test_value.make_fit_population()  # a live run needs data BG/NBD can fit
        self.assertJson(post("/v1/value:recompute", {"as_of": self.AS_OF, "live": True}), 200)

        def members(*rules):
            doc = self.assertJson(self.preview({"all": [mine] + list(rules)}), 200)
            return sorted(i["customer_id"] for i in doc["items"])

        detractor = {"field": "satisfaction.nps_category", "op": "eq", "value": "detractor"}
        self.assertEqual(members(detractor), sorted([rich_detractor, poor_detractor]))
        self.assertEqual(members(detractor, {"field": "value.revenue", "op": "gte",
                                             "value": 500}), [rich_detractor])
        self.assertEqual(members({"field": "satisfaction.nps_category", "op": "in",
                                  "value": ["promoter", "passive"]}), [rich_promoter])
        self.assertEqual(members({"field": "satisfaction.nps_category", "op": "exists",
                                  "value": False}), [silent])
        self.assertEqual(members({"field": "satisfaction.nps", "op": "lte", "value": 5}),
                         sorted([rich_detractor, poor_detractor]))
        self.assertEqual(members({"field": "satisfaction.csat", "op": "lt", "value": 3}),
                         [rich_promoter])
        self.assertEqual(members({"field": "satisfaction.nps_at", "op": "gte",
                                  "value": "2026-02-01T00:00:00Z"}),
                         sorted([rich_detractor, poor_detractor, rich_promoter]))

    def test_invalid_satisfaction_rules(self):
        for rule, pointer in (
                ({"field": "satisfaction.nps_category", "op": "eq", "value": "fan"},
                 "/rule/value"),
                ({"field": "satisfaction.nps_category", "op": "contains", "value": "pro"},
                 "/rule/op"),
                ({"field": "satisfaction.nps", "op": "eq", "value": "9"}, "/rule/value"),
                ({"field": "satisfaction.mood", "op": "exists"}, "/rule/field")):
            with self.subTest(rule=rule):
                body = self.assertProblem(self.preview(rule), 422, "validation-failed")
                self.assertEqual([e["pointer"] for e in body["errors"]], [pointer])


if __name__ == "__main__":
    harness.main()
