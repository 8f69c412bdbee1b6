#!/usr/bin/env python3
"""End-to-end tests of the look-alikes of a segment (docs/lookalikes.md):
GET /v1/segments/{id}/lookalikes ranks the customers outside a segment by a
logistic regression fitted on the segment's members against everyone else.

The fixture: 20 members who share a trait (a need of their own and three
large purchases) and a marker attribute the segment's rule selects on (the
model never sees attributes), 8 "twins" who share the trait but not the
marker, and 30 others (one small purchase, another need). The twins must be
ranked first. One more twin is erased and one merged into another twin:
neither is ever listed. The database need not be empty: the members' need
is theirs alone, and the other customers in it have no reason to outrank
the twins.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_lookalikes.py [TestClass[.test_method] ...]
"""

import datetime
import os
import random
import uuid
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get, post, query, request, uid  # noqa: E402

SOURCE = "e2e-lookalike"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def must(r, status):
    if r.status != status:
        raise AssertionError("expected HTTP %d, got %d: %r" % (status, r.status, r.body))
    return r.body


def days_ago(n):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=n)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def customer(marker=None):
    body = {"identifiers": [{"kind": "email", "value": "la-%s@example.com" % uid()}],
            "source": SOURCE}
    if marker is not None:
        body["traits"] = {"attributes": {"la_marker": marker}}
    return must(post("/v1/customers:resolve", body), 201)["customer_id"]


def events(cid, items):
    batch = []
    for e in items:
        item = {"customer_id": cid, "source": SOURCE, "external_id": "la-" + uid()}
        item.update(e)
        batch.append(item)
    doc = must(post("/v1/interactions:batch", {"items": batch}), 200)
    assert doc.get("created") == len(batch), doc


def trait_customer(need, marker=None):
    """A customer with the trait: the need and three purchases of 300 to
    500 EUR (varied, or the spend model of the value run has nothing to fit)."""
    cid = customer(marker)
    events(cid, [{"type": "purchase", "channel": ch, "occurred_at": days_ago(d),
                  "amount": 300 + random.randrange(200), "currency": "EUR", "tags": [need]}
                 for ch, d in (("web", 40 + random.randrange(10)), ("store", 20), ("app", 5))])
    return cid


def plain_customer(other_need):
    cid = customer()
    events(cid, [{"type": "purchase", "channel": "web", "occurred_at": days_ago(90),
                  "amount": 10 + random.randrange(30), "currency": "EUR", "tags": [other_need]},
                 {"type": "page_view", "channel": "web", "occurred_at": days_ago(30)}])
    return cid


def lookalikes(sid, limit=None, **kw):
    params = {} if limit is None else {"limit": limit}
    return get(query("/v1/segments/%s/lookalikes" % sid, params), **kw)


class LookalikeTests(harness.CrmTestCase):
    @classmethod
    def setUpClass(cls):
        cls.marker = "la-" + uid()
        cls.need = "la-need-" + uid()[:8]
        other = "la-other-" + uid()[:8]
        cls.members = {trait_customer(cls.need, cls.marker) for _ in range(20)}
        cls.twins = {trait_customer(cls.need) for _ in range(8)}
        cls.others = {plain_customer(other) for _ in range(30)}
        cls.erased = trait_customer(cls.need)
        must(request("DELETE", "/v1/customers/%s" % cls.erased), 200)
        cls.absorbed = trait_customer(cls.need)
        survivor = sorted(cls.twins)[0]
        must(post("/v1/admin/merges", {"survivor_id": survivor, "absorbed_id": cls.absorbed,
                                       "reason": "same person"}), 200)
        # a value run gives the value features; the model does without them
        # if the database's other customers keep it from fitting (422). A
        # run can fail while other test files write to the same database
        # (seen: 500, a foreign key of crm.customer_value): tried 3 times.
        for _ in range(3):
            r = post("/v1/value:recompute", {})
            if r.status in (200, 422):
                break
        assert r.status in (200, 422), r
        cls.sid = must(post("/v1/segments", {
            "name": "e2e-lookalike-%s" % uid(),
            "rule": {"field": "traits.attributes.la_marker", "op": "eq",
                     "value": cls.marker}}), 201)["segment_id"]
        cls.first = lookalikes(cls.sid, 50)

    def test_twins_ranked_first(self):
        doc = self.assertJson(self.first, 200)
        items = doc["items"]
        self.assertEqual(doc["segment_id"], self.sid)
        # 50, or every live customer outside the segment when there are
        # fewer (this file alone on a fresh database: 38)
        outside = int(harness.sql(
            "SELECT count(*) FROM crm.customers c WHERE c.merged_into IS NULL"
            " AND c.erased_at IS NULL AND NOT EXISTS (SELECT 1 FROM crm.segment_members m"
            " WHERE m.segment_id = %s AND m.customer_id = c.customer_id)" % harness.lit(self.sid)))
        self.assertGreaterEqual(outside, len(self.twins) + len(self.others))
        self.assertEqual(len(items), min(50, outside))
        top = {it["customer_id"] for it in items[:len(self.twins)]}
        self.assertEqual(top, self.twins, "the twins are not ranked first: %r" % items[:10])
        scores = [it["score"] for it in items]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertTrue(all(0 <= s <= 1 for s in scores))
        self.assertFalse(self.members & {it["customer_id"] for it in items},
                         "members are listed")
        for it in items[:len(self.twins)]:
            feats = it["top_features"]
            self.assertEqual(len(feats), 3, it)
            self.assertEqual(set(feats[0]), {"name", "contribution"})
            contribs = [f["contribution"] for f in feats]
            self.assertEqual(contribs, sorted(contribs, reverse=True))
            self.assertIn("need:" + self.need, [f["name"] for f in feats], it)
        # the plain customers rank below every twin
        self.assertGreater(min(it["score"] for it in items[:len(self.twins)]),
                           max([it["score"] for it in items if it["customer_id"] in self.others]
                               or [0]))

    def test_fit_metadata_and_cache(self):
        fit = self.assertJson(self.first, 200)["fit"]
        self.assertFalse(fit["cached"])
        self.assertEqual(fit["positives"], 20)
        self.assertGreaterEqual(fit["n"], 20 + 8 + 30)
        self.assertGreater(fit["held_out_n"], 0)
        self.assertLess(fit["held_out_n"], fit["n"])
        if fit["held_out_auc"] is not None:  # null when no member was held out
            # the members' need is theirs and the twins' alone
            self.assertGreaterEqual(fit["held_out_auc"], 0.8)
            self.assertLessEqual(fit["held_out_auc"], 1)
        self.assertTimestamp(fit["fitted_at"])
        self.assertEqual(fit["needs"][0], self.need)
        names = [f["name"] for f in fit["features"]]
        self.assertEqual(names[:3], ["days_since_purchase", "purchase_days", "log_revenue"])
        self.assertIn("need:" + self.need, names)
        need_coef = fit["features"][names.index("need:" + self.need)]["coefficient"]
        self.assertGreater(need_coef, 0)
        again = self.assertJson(lookalikes(self.sid, 10), 200)
        self.assertTrue(again["fit"]["cached"])
        self.assertEqual(again["fit"]["fitted_at"], fit["fitted_at"])
        self.assertIsNone(again["timings"]["fit_ms"])
        self.assertEqual([it["customer_id"] for it in again["items"]],
                         [it["customer_id"] for it in self.first.body["items"][:10]])

    def test_merged_and_erased_never_listed(self):
        doc = self.assertJson(lookalikes(self.sid, 500), 200)
        ids = {it["customer_id"] for it in doc["items"]}
        self.assertFalse(self.erased in ids, "the erased customer is listed")
        self.assertFalse(self.absorbed in ids, "the merged (absorbed) customer is listed")
        self.assertIn(sorted(self.twins)[0], ids)  # the survivor of the merge is

    def test_default_limit(self):
        doc = self.assertJson(lookalikes(self.sid), 200)
        self.assertEqual(len(doc["items"]), 20)

    def test_unknown_segment(self):
        self.assertProblem(lookalikes(str(uuid.uuid4())), 404, "not-found")
        self.assertProblem(get("/v1/segments/not-a-uuid/lookalikes"), 400, "invalid-uuid")

    def test_bad_limit(self):
        for bad in ("0", "501", "abc", "", "1.5"):
            with self.subTest(limit=bad):
                self.assertProblem(lookalikes(self.sid, bad), 400, "invalid-query")
        self.assertProblem(get("/v1/segments/%s/lookalikes?sort=score" % self.sid), 400,
                           "invalid-query")

    def test_roles(self):
        for role, status in (("call_center", 403), ("front_office", 403), ("partner", 403),
                             ("marketing", 200)):
            body = {"name": "e2e-la-%s-%s" % (role, uid()), "role": role}
            if role == "partner":
                body["namespace"] = "la-" + uid()
            key = must(post("/v1/admin/keys", body), 201)["api_key"]
            with self.subTest(role=role):
                r = lookalikes(self.sid, 5, key=key)
                if status == 403:
                    self.assertProblem(r, 403, "forbidden")
                else:
                    self.assertJson(r, 200)

    def test_fit_goes_with_its_segment(self):
        sid = must(post("/v1/segments", {
            "name": "e2e-lookalike-del-%s" % uid(),
            "rule": {"field": "traits.attributes.la_marker", "op": "eq",
                     "value": self.marker}}), 201)["segment_id"]
        self.assertJson(lookalikes(sid, 5), 200)
        kept = "SELECT count(*) FROM crm.lookalike_fits WHERE segment_id = %s" % harness.lit(sid)
        self.assertEqual(harness.sql(kept), "1")
        self.assertEqual(must(request("DELETE", "/v1/segments/%s" % sid), 200), {"deleted": True})
        self.assertEqual(harness.sql(kept), "0")
        self.assertProblem(lookalikes(sid), 404, "not-found")

    def test_segment_without_members(self):
        sid = must(post("/v1/segments", {
            "name": "e2e-lookalike-empty-%s" % uid(),
            "rule": {"field": "traits.attributes.la_marker", "op": "eq",
                     "value": "nobody-" + uid()}}), 201)["segment_id"]
        self.assertProblem(lookalikes(sid), 409, "conflict")


if __name__ == "__main__":
    sys.exit(harness.main())
