#!/usr/bin/env python3
"""End-to-end tests of the maintained profile document (sql/005_profile_cache.sql,
sql/functions/profile.sql).

A profile read stores the built document in crm.profile_cache; every write
that changes what the profile shows invalidates it in the same transaction.
These tests check that the cache is really used, that each kind of write
invalidates it, that a consent recorded for a future time shows up once that
time has come, that a value run invalidates every document, and that
concurrent writes and reads never leave a stale document behind (the
cached answer is compared with a fresh crm.profile() built by psql).
"""
import datetime
import json
import os
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, patch, post, uid  # noqa: E402
from test_api import run_concurrently  # noqa: E402


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


sql = harness.sql
lit = harness.lit


def new_customer():
    r = post("/v1/customers:resolve", {
        "identifiers": [{"kind": "email", "value": "cache-%s@example.com" % uid()}],
        "source": "e2e-cache"})
    assert r.status == 201, r
    return r.body["customer_id"]


def interaction(cid, **fields):
    body = {"customer_id": cid, "source": "e2e-cache", "external_id": "c-" + uid(),
            "channel": "web", "type": "purchase", "occurred_at": "2026-11-20T15:04:05Z",
            "amount": "10.00", "currency": "EUR"}
    body.update(fields)
    return body


def cache_state(cid):
    """'hit' (document stored), 'stale' (row without document) or 'none'."""
    out = sql("SELECT CASE WHEN doc IS NULL THEN 'stale' ELSE 'hit' END "
              "FROM crm.profile_cache WHERE customer_id = %s" % lit(cid))
    return out or "none"


def fresh_profile(cid):
    """The profile built from the tables now, bypassing the cache."""
    return json.loads(sql("SELECT coalesce(crm.gone_doc(%s), crm.profile(%s))"
                          % (lit(cid), lit(cid))))


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CacheTests(harness.CrmTestCase):
    def read(self, cid):
        return self.assertJson(get("/v1/customers/%s" % cid), 200)

    def assertFresh(self, cid, doc):
        self.assertEqual(doc, fresh_profile(cid))

    def test_read_stores_and_write_invalidates(self):
        cid = new_customer()
        self.read(cid)
        self.assertEqual(cache_state(cid), "hit")
        self.assertJson(post("/v1/interactions", interaction(cid)), 201)
        self.assertEqual(cache_state(cid), "stale")
        doc = self.read(cid)
        self.assertEqual(doc["aggregates"]["interaction_count"], 1)
        self.assertEqual(cache_state(cid), "hit")
        self.assertFresh(cid, doc)

    def test_lookup_builds_only_the_customer_found(self):
        # Regression: joined to the view, the lookup once built (and stored)
        # the document of every customer, 8 lookups per second.
        emails = ["look-%s@example.com" % uid() for _ in range(3)]
        cids = [self.assertJson(post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": e}], "source": "e2e-cache"}), 201)
            ["customer_id"] for e in emails]
        self.assertJson(get("/v1/customers?email=" + emails[0]), 200)
        self.assertEqual([cache_state(c) for c in cids], ["hit", "stale", "stale"])

    def test_a_hit_is_served_from_the_cache(self):
        # Proof that reads use the stored document: plant a marker in it.
        cid = new_customer()
        self.read(cid)
        sql("UPDATE crm.profile_cache SET doc = doc || '{\"planted\": true}' "
            "WHERE customer_id = %s" % lit(cid))
        self.assertTrue(self.read(cid).get("planted"))
        # and any write drops it
        self.assertJson(patch("/v1/customers/%s/traits" % cid,
                              {"source": "e2e-cache", "traits": {"first_name": "Ada"}}), 200)
        doc = self.read(cid)
        self.assertNotIn("planted", doc)
        self.assertEqual(doc["traits"]["first_name"], "Ada")

    def test_every_kind_of_write_shows_up(self):
        cid = new_customer()
        self.read(cid)
        self.assertJson(patch("/v1/customers/%s/preferences" % cid, {
            "source": "e2e-cache", "preferences": {"language": "de"}}), 200)
        self.assertEqual(self.read(cid)["preferences"]["language"], "de")
        self.assertJson(post("/v1/customers/%s/consents" % cid, {
            "purpose": "marketing", "channel": "email", "status": "granted",
            "source": "e2e-cache", "occurred_at": "2026-01-01T00:00:00Z"}), 201)
        self.assertEqual([c["status"] for c in self.read(cid)["consents"]], ["granted"])
        self.assertJson(post("/v1/interactions", interaction(cid, tags=["premium_support"])), 201)
        doc = self.read(cid)
        self.assertEqual([n["need"] for n in doc["needs"]], ["premium_support"])
        phone = "+4930%07d" % (uuid.uuid4().int % 10**7)
        self.assertJson(post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": doc["identifiers"][0]["value"]},
                            {"kind": "phone", "value": phone}],
            "source": "e2e-cache"}), 200)
        doc = self.read(cid)
        self.assertIn("phone", [i["kind"] for i in doc["identifiers"]])
        self.assertFresh(cid, doc)

    def test_a_score_shows_up(self):
        # Satisfaction has no trigger of its own: a scored interaction's
        # aggregates are written in the same transaction, which invalidates.
        cid = new_customer()
        self.assertIsNone(self.read(cid)["satisfaction"]["nps"])
        self.assertEqual(cache_state(cid), "hit")
        self.assertJson(post("/v1/interactions", interaction(
            cid, type="feedback", channel="email", amount=None, currency=None,
            scores={"nps": 6})), 201)
        self.assertEqual(cache_state(cid), "stale")
        doc = self.read(cid)
        self.assertEqual((doc["satisfaction"]["nps"]["score"],
                          doc["satisfaction"]["nps_category"]), (6, "detractor"))
        self.assertFresh(cid, doc)

    def test_merge_and_unmerge_update_both_documents(self):
        a, b = new_customer(), new_customer()
        self.read(a)
        self.read(b)
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                  "reason": "e2e cache"}), 200)
        doc = self.read(a)
        self.assertEqual(doc["merged_ids"], [b])
        via_b = self.read(b)
        self.assertEqual(via_b["merged_into"], a)
        self.assertEqual(via_b["requested_id"], b)
        self.assertEqual(len(doc["identifiers"]), 2)
        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b, "reason": "e2e cache"}), 200)
        self.assertEqual(self.read(a)["merged_ids"], [])
        self.assertNotIn("merged_into", self.read(b))
        self.assertFresh(a, self.read(a))
        self.assertFresh(b, self.read(b))

    def test_future_consent_becomes_current_without_a_write(self):
        cid = new_customer()
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        self.assertJson(post("/v1/customers/%s/consents" % cid, {
            "purpose": "marketing", "channel": "sms", "status": "granted",
            "source": "e2e-cache", "occurred_at": rfc3339(at)}), 201)
        self.assertEqual(self.read(cid)["consents"], [])
        self.assertEqual(cache_state(cid), "hit")
        time.sleep(max(0.0, (at - datetime.datetime.now(datetime.timezone.utc))
                       .total_seconds()) + 0.3)
        self.assertEqual([c["channel"] for c in self.read(cid)["consents"]], ["sms"])

    def test_erasure_replaces_the_document(self):
        cid = new_customer()
        self.read(cid)
        self.assertJson(harness.request("DELETE", "/v1/customers/%s" % cid), 200)
        self.assertProblem(get("/v1/customers/%s" % cid), 410, "gone")

    def test_value_run_invalidates_every_document(self):
        cid = new_customer()
        self.assertJson(post("/v1/interactions", interaction(cid)), 201)
        self.read(cid)
        epoch = int(sql("SELECT epoch FROM crm.profile_cache_epoch"))
        test_value.make_fit_population()  # a live run needs data BG/NBD can fit
        self.assertJson(post("/v1/value:recompute", {}), 200)
        self.assertGreater(int(sql("SELECT epoch FROM crm.profile_cache_epoch")), epoch)
        doc = self.read(cid)
        self.assertIsNotNone(doc["value"])
        self.assertFresh(cid, doc)

    def test_concurrent_writes_and_reads_leave_no_stale_document(self):
        cid = new_customer()
        writers, per_writer = 4, 15

        def work(i):
            if i < writers:
                for _ in range(per_writer):
                    r = post("/v1/interactions", interaction(cid))
                    if r.status != 201:
                        return r
            else:
                for _ in range(per_writer * 2):
                    r = get("/v1/customers/%s" % cid)
                    if r.status != 200:
                        return r
            return None

        results = run_concurrently(writers * 2, work)
        self.assertEqual([r for r in results if r is not None], [])
        doc = self.read(cid)
        self.assertEqual(doc["aggregates"]["interaction_count"], writers * per_writer)
        self.assertFresh(cid, doc)


LSN_RE = r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$"


class ReadRoutingTests(harness.CrmTestCase):
    """Read routing (docs/scaleout.md) without a real standby: the "replica"
    is the primary itself (its replay position is NULL, so it counts as caught
    up), or an address where nothing listens. The loopback test with a real
    streaming replica is tests/scaleout/."""

    @classmethod
    def setUpClass(cls):
        db = os.environ["CRM_DATABASE_URL"]
        cls.routed = harness.extra_server("--db-replica", db, "--db-prepared", "0")
        cls.dead = harness.extra_server("--db-replica",
                                "host=127.0.0.1 port=1 dbname=crm connect_timeout=1")

    @classmethod
    def tearDownClass(cls):
        for server in (cls.routed, cls.dead):
            if server.stop() != 0:
                raise AssertionError("server did not stop cleanly: " + server.log_tail())

    def test_writes_carry_their_lsn_and_reads_say_who_answered(self):
        port = self.routed.port
        r = post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": "route-%s@example.com" % uid()}],
            "source": "e2e-cache"}, port=port)
        cid = self.assertJson(r, 201)["customer_id"]
        lsn = r.headers.get("CRM-Write-LSN")
        self.assertRegex(lsn or "", LSN_RE)
        r = post("/v1/interactions", interaction(cid), port=port)
        self.assertJson(r, 201)
        self.assertRegex(r.headers.get("CRM-Write-LSN") or "", LSN_RE)
        r = get("/v1/customers/%s" % cid, port=port, headers={"CRM-Min-LSN": lsn})
        self.assertEqual(self.assertJson(r, 200)["aggregates"]["interaction_count"], 1)
        self.assertEqual(r.headers.get("CRM-Read-From"), "replica")
        r = get("/v1/customers/%s/interactions" % cid, port=port)
        self.assertJson(r, 200)
        self.assertEqual(r.headers.get("CRM-Read-From"), "replica")
        # routes that are not replica reads carry no CRM-Read-From
        r = get("/v1/customers/%s/preferences" % cid, port=port)
        self.assertJson(r, 200)
        self.assertIsNone(r.headers.get("CRM-Read-From"))
        # a failed write carries no LSN
        r = post("/v1/interactions", interaction(str(uuid.uuid4())), port=port)
        self.assertProblem(r, 404, "not-found")
        self.assertIsNone(r.headers.get("CRM-Write-LSN"))

    def test_malformed_min_lsn(self):
        cid = new_customer()
        for bad in ("0x16", "1/2/3", "0/123456789", "abc", ""):
            r = get("/v1/customers/%s" % cid, port=self.routed.port,
                    headers={"CRM-Min-LSN": bad})
            if bad == "":
                self.assertJson(r, 200)  # an empty header is no header
            else:
                self.assertProblem(r, 400, "invalid-header")

    def test_unreachable_replica_falls_back_to_the_primary(self):
        cid = new_customer()
        for _ in range(3):
            r = get("/v1/customers/%s" % cid, port=self.dead.port)
            self.assertJson(r, 200)
            self.assertEqual(r.headers.get("CRM-Read-From"), "primary")

    def test_without_a_replica_no_routing_headers(self):
        r = post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": "plain-%s@example.com" % uid()}],
            "source": "e2e-cache"})
        cid = self.assertJson(r, 201)["customer_id"]
        self.assertIsNone(r.headers.get("CRM-Write-LSN"))
        r = get("/v1/customers/%s" % cid)
        self.assertJson(r, 200)
        self.assertIsNone(r.headers.get("CRM-Read-From"))

    def test_unprepared_mode_serves_every_kind_of_call(self):
        # --db-prepared 0 (for PgBouncer < 1.21): the same answers.
        port = self.routed.port
        email = "unprep-%s@example.com" % uid()
        cid = self.assertJson(post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": email}], "source": "e2e-cache"},
            port=port), 201)["customer_id"]
        body = self.assertJson(post("/v1/interactions:batch", {
            "items": [interaction(cid), interaction(cid)]}, port=port), 200)
        self.assertEqual(body["created"], 2)
        found = self.assertJson(get("/v1/customers?email=" + email, port=port), 200)
        self.assertEqual(found["customer_id"], cid)
        self.assertEqual(found, fresh_profile(cid))


if __name__ == "__main__":
    harness.main()
