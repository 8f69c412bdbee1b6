#!/usr/bin/env python3
"""End-to-end tests of the CRM HTTP API against docs/api.md.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_api.py [TestClass[.test_method] ...]

Every test uses fresh, uuid-based identifiers, so the tests do not need a clean
database and can run in any order.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (email_id, get, ingest, interaction, patch, phone_id, post, query,  # noqa: E402
                     random_digits, request, resolve, uid)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

def new_email(prefix="e2e"):
    return "%s-%s@example.com" % (prefix, uid())


def new_phone():
    """A fresh phone number, returned as (normalised E.164, 8 random digits)."""
    d = random_digits(8)
    return "+336" + d, d


def ext_id(value, namespace="shopify"):
    return {"kind": "external", "namespace": namespace, "value": value}


def psql(q):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                    os.environ["CRM_DATABASE_URL"], "-c", q],
                   check=True, capture_output=True, text=True, timeout=60)


def profile(customer_id):
    return get("/v1/customers/%s" % customer_id)


def timeline(customer_id, **params):
    return get(query("/v1/customers/%s/interactions" % customer_id, params))


def run_concurrently(n, fn):
    """Run fn(i) in n threads released together by a barrier; return results by i."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as e:  # recorded and asserted by the caller
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


class ApiTestCase(harness.CrmTestCase):
    def assertMoney(self, actual, expected, ctx=None):
        """Per-currency sums: same currencies, values equal to 1e-6."""
        self.assertIsInstance(actual, dict, ctx)
        self.assertEqual(sorted(actual), sorted(expected), ctx or actual)
        for cur, value in expected.items():
            self.assertIsInstance(actual[cur], (int, float), actual)
            self.assertAlmostEqual(actual[cur], value, places=6, msg="%s %r" % (cur, actual))

    def assertTraits(self, actual, expected):
        """Trait values equal. An empty `attributes` object is treated like an
        absent one (the contract does not say which of the two is returned)."""
        self.assertIsInstance(actual, dict)
        if actual.get("attributes") == {}:
            actual = {k: v for k, v in actual.items() if k != "attributes"}
        self.assertEqual(actual, expected)

    def create_customer(self, identifiers=None, source="e2e", traits=None):
        identifiers = identifiers or [email_id(new_email())]
        r = resolve(identifiers, source=source, traits=traits)
        body = self.assertJson(r, 201)
        self.assertIs(body["created"], True, body)
        return body["customer_id"]

    def get_profile(self, customer_id):
        return self.assertJson(profile(customer_id), 200)

    def ingest_ok(self, customer_id=None, identifiers=None, **fields):
        r = ingest(customer_id, identifiers, **fields)
        body = self.assertJson(r, 201)
        self.assertEqual(body["status"], "created", body)
        self.assertRegex(body["interaction_id"], UUID_RE)
        if customer_id is not None:
            self.assertEqual(body["customer_id"], customer_id, body)
        return body

    def all_items(self, customer_id, **params):
        body = self.assertJson(timeline(customer_id, limit=500, **params), 200)
        self.assertIsNone(body["next_cursor"], body)
        return body["items"]

    def metrics(self):
        r = get("/metrics", key=None)
        self.assertStatus(r, 200)
        self.assertTrue(r.content_type.startswith("text/plain"), r.content_type)
        text = r.body.decode() if isinstance(r.body, bytes) else r.body
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


# ---------------------------------------------------------------------------
# 1. health / ready

class HealthTests(ApiTestCase):
    def test_health(self):
        r = get("/health")
        self.assertEqual(self.assertJson(r, 200), {"status": "ok"})

    def test_ready(self):
        r = get("/ready")
        self.assertEqual(self.assertJson(r, 200), {"status": "ready"})

    def test_conninfo_settings_win_over_the_defaults(self):
        # The server's connection defaults (connect_timeout 5, application_name
        # crm-server, keepalives_idle 30) apply only where the conninfo says
        # nothing: a multi-host conninfo's own connect_timeout, keepalives and
        # tcp_user_timeout decide how fast a dead host is given up (tests/ha).
        name = "crm-e2e-" + uid()[:8]
        url = os.environ["CRM_DATABASE_URL"]
        if "://" in url:
            url += ("&" if "?" in url else "?") + "application_name=" + name
        else:
            url += " application_name=" + name
        server = harness.extra_server("--db", url)
        try:
            self.assertJson(get("/ready", port=server.port), 200)
            n = harness.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                            % harness.lit(name))
            self.assertGreater(int(n), 0)
            n = harness.sql("SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name = 'crm-server'")
            self.assertGreater(int(n), 0, "the suite's server keeps the default name")
        finally:
            server.stop()

    def test_request_id_and_access_log(self):
        # X-Request-Id is echoed when it is 1..64 printable ASCII characters
        # without quotes or backslashes, else replaced by a generated UUID;
        # every request is one JSON line on stdout with that id. The log is
        # written in blocks: a quiet server's lines still appear within a
        # moment, and the last ones at shutdown.
        server = harness.extra_server()
        try:
            given = "req-" + uid()
            r = get("/health", port=server.port, headers={"X-Request-Id": given})
            self.assertEqual(r.headers.get("X-Request-Id"), given)
            r = get("/health", port=server.port)
            self.assertRegex(r.headers.get("X-Request-Id"), UUID_RE)
            generated = r.headers.get("X-Request-Id")
            for bad in ('has"quote', "x" * 65, "has space"):
                r = get("/health", port=server.port, headers={"X-Request-Id": bad})
                self.assertRegex(r.headers.get("X-Request-Id"), UUID_RE, bad)
            r = get("/v1/customers/" + str(uuid.uuid4()), port=server.port,
                    headers={"X-Request-Id": given + "-404"})
            self.assertEqual(r.status, 404)
            deadline = time.time() + 5
            while True:
                lines = self.access_lines(server)
                if given + "-404" in lines:
                    break
                self.assertLess(time.time(), deadline, "access log lines did not appear")
                time.sleep(0.05)
            first = lines[given]
            self.assertEqual((first["route"], first["status"], first["completed"]),
                             ("health", 200, True))
            self.assertEqual(first["client"], "127.0.0.1")
            self.assertIsInstance(first["ms"], (int, float))
            self.assertIn(generated, lines)
            self.assertEqual((lines[given + "-404"]["route"], lines[given + "-404"]["status"]),
                             ("customer_get", 404))
            self.assertRegex(lines[given + "-404"]["key_id"], UUID_RE)
            last = "last-" + uid()
            get("/health", port=server.port, headers={"X-Request-Id": last})
        finally:
            self.assertEqual(server.stop(), 0, server.log_tail())
        self.assertIn(last, self.access_lines(server))

    def access_lines(self, server):
        """The server's access-log lines so far, by request id."""
        lines = {}
        with open(server.log_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith('{"request_id"'):
                    doc = json.loads(line)
                    lines[doc["request_id"]] = doc
        return lines

    def test_metrics_count_requests_ingest_and_pool(self):
        before = self.metrics()
        cid = self.create_customer()
        first = interaction(cid)
        self.assertJson(post("/v1/interactions", first), 201)
        self.assertJson(post("/v1/interactions", first), 200)  # duplicate
        body = self.assertJson(post("/v1/interactions:batch", {
            "items": [interaction(cid), first, interaction(cid, channel="fax")]}), 200)
        self.assertEqual((body["created"], body["duplicates"], body["failed"]), (1, 1, 1))
        self.assertJson(get("/health"), 200)
        after = self.metrics()

        def delta(name):
            return after.get(name, 0) - before.get(name, 0)
        self.assertEqual(delta('crm_ingest_interactions_total{result="created"}'), 2)
        self.assertEqual(delta('crm_ingest_interactions_total{result="duplicate"}'), 2)
        self.assertEqual(delta('crm_ingest_interactions_total{result="failed"}'), 1)
        self.assertGreaterEqual(delta('crm_http_requests_total{route="health",status="2xx"}'), 1)
        self.assertEqual(delta('crm_http_requests_total{route="interaction_create",status="2xx"}'),
                         2)
        self.assertEqual(delta("crm_ingest_batch_fallbacks_total"), 0)
        self.assertGreaterEqual(after['crm_db_pool_connections{state="open"}'], 1)
        self.assertIn("crm_db_pool_waiting", after)
        self.assertIn("crm_audit_rows_queued", after)
        # latency histograms by route: two POSTs, one batch, cumulative buckets
        self.assertEqual(delta('crm_http_request_duration_seconds_count{route="interaction_create"}'),
                         2)
        self.assertEqual(delta('crm_http_request_duration_seconds_count{route="interaction_batch"}'),
                         1)
        for route in ("interaction_create", "interaction_batch", "health"):
            buckets = sorted(((float(k.split('le="')[1].rstrip('"}')), v) for k, v in after.items()
                              if k.startswith('crm_http_request_duration_seconds_bucket{route="%s",'
                                              % route)))
            self.assertEqual(len(buckets), 15, route)
            self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets), route)
            self.assertEqual(buckets[-1][1],
                             after['crm_http_request_duration_seconds_count{route="%s"}' % route])
            self.assertGreater(after['crm_http_request_duration_seconds_sum{route="%s"}' % route], 0)
        self.assertNotIn('crm_http_request_duration_seconds_count{route="value_recompute"}', after)

    def test_pool_connections_opened_ahead_of_use(self):
        # The server opens all of its primary pool's connections in the
        # background after start-up; requests alone would open only as many
        # as ran at once (one at a time here).
        deadline = time.time() + 15
        while True:
            opened = self.metrics()['crm_db_pool_connections{state="open"}']
            if opened == harness.POOL_SIZE or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(opened, harness.POOL_SIZE)

# ---------------------------------------------------------------------------
# 2. resolve

class ResolveTests(ApiTestCase):
    def test_create_then_find_same_customer(self):
        u = uid()
        r = resolve([email_id(" Ann-%s@Example.COM " % u)], source="web-shop",
                    traits={"first_name": "Ann", "birthday": "1990-04-01",
                            "address": {"city": "Lyon"},
                            "attributes": {"segment_hint": "vip"}})
        body = self.assertJson(r, 201)
        cid = body["customer_id"]
        self.assertRegex(cid, UUID_RE)
        self.assertIs(body["created"], True)
        self.assertEqual(body["merged_ids"], [])
        cust = body["customer"]
        self.assertEqual(cust["customer_id"], cid)
        self.assertTimestamp(cust["created_at"])
        self.assertTimestamp(cust["updated_at"])
        self.assertEqual(cust["merged_ids"], [])
        self.assertEqual(len(cust["identifiers"]), 1, cust)
        ident = cust["identifiers"][0]
        self.assertEqual(ident["kind"], "email")
        self.assertEqual(ident["value"], "ann-%s@example.com" % u)
        self.assertEqual(ident["source"], "web-shop")
        self.assertNotIn("namespace", ident, "namespace only when non-empty")
        self.assertTimestamp(ident["created_at"])
        self.assertTraits(cust["traits"], {"first_name": "Ann", "birthday": "1990-04-01",
                                          "address": {"city": "Lyon"},
                                          "attributes": {"segment_hint": "vip"}})
        for key in ("first_name", "birthday", "address", "attributes.segment_hint"):
            self.assertEqual(cust["trait_sources"][key]["source"], "web-shop", key)
            self.assertTimestamp(cust["trait_sources"][key]["updated_at"], key)
        agg = cust["aggregates"]
        self.assertIsNone(agg["first_seen"])
        self.assertIsNone(agg["last_seen"])
        self.assertEqual(agg["interaction_count"], 0)

        # Same identifier (already normalised) -> 200, same customer.
        r2 = resolve([email_id("ann-%s@example.com" % u)], source="other")
        body2 = self.assertJson(r2, 200)
        self.assertEqual(body2["customer_id"], cid)
        self.assertIs(body2["created"], False)
        self.assertEqual(body2["merged_ids"], [])
        self.assertEqual(body2["customer"]["customer_id"], cid)

        # Lookup with the normalised and with the raw spelling.
        for v in ("ann-%s@example.com" % u, " ANN-%s@example.COM " % u):
            r3 = get(query("/v1/customers", {"email": v}))
            self.assertEqual(self.assertJson(r3, 200)["customer_id"], cid, v)

    def test_new_identifier_attached_to_matched_customer(self):
        email = new_email()
        cid = self.create_customer([email_id(email)], source="src-1")
        device = "Dev-" + uid()
        r = resolve([email_id(email), {"kind": "device", "value": "  %s " % device}],
                    source="src-2")
        body = self.assertJson(r, 200)
        self.assertEqual(body["customer_id"], cid)
        self.assertIs(body["created"], False)
        idents = {(i["kind"], i["value"]): i for i in body["customer"]["identifiers"]}
        self.assertEqual(set(idents), {("email", email), ("device", device)})
        self.assertEqual(idents[("email", email)]["source"], "src-1")
        self.assertEqual(idents[("device", device)]["source"], "src-2")
        r2 = get(query("/v1/customers", {"device": device}))
        self.assertEqual(self.assertJson(r2, 200)["customer_id"], cid)

    def test_phone_normalisation(self):
        norm, d = new_phone()  # +336 + 8 digits
        spaced = "+33 6 %s-%s-%s.%s" % (d[0:2], d[2:4], d[4:6], d[6:8])
        r = resolve([phone_id(spaced)])
        body = self.assertJson(r, 201)
        cid = body["customer_id"]
        self.assertEqual([(i["kind"], i["value"]) for i in body["customer"]["identifiers"]],
                         [("phone", norm)])
        r2 = resolve([phone_id("00336" + d)])
        body2 = self.assertJson(r2, 200)
        self.assertEqual(body2["customer_id"], cid)
        self.assertIs(body2["created"], False)
        r3 = resolve([phone_id("+33.6.%s-%s" % (d[:4], d[4:]))])
        self.assertEqual(self.assertJson(r3, 200)["customer_id"], cid)
        r4 = get(query("/v1/customers", {"phone": norm}))
        self.assertEqual(self.assertJson(r4, 200)["customer_id"], cid)

    def test_external_and_loyalty_normalisation(self):
        value = "C-%s" % uid().upper()
        card = uid()[:10]
        r = resolve([ext_id("  %s " % value, namespace="Shopify"),
                     {"kind": "loyalty_card", "namespace": "club", "value": " %s-%s %s " %
                      (card[:4], card[4:7], card[7:])}])
        body = self.assertJson(r, 201)
        cid = body["customer_id"]
        got = {(i["kind"], i.get("namespace"), i["value"]) for i in body["customer"]["identifiers"]}
        self.assertEqual(got, {("external", "shopify", value),
                               ("loyalty_card", "club", card.upper())})
        # Same external value, different case -> a different identifier (case kept).
        r2 = resolve([ext_id(value.lower(), namespace="shopify")])
        body2 = self.assertJson(r2, 201)
        self.assertNotEqual(body2["customer_id"], cid)
        # Same value in another namespace -> a different identifier.
        r3 = resolve([ext_id(value, namespace="magento")])
        self.assertNotEqual(self.assertJson(r3, 201)["customer_id"], cid)
        # Exact identifier again -> same customer.
        r4 = resolve([ext_id(value, namespace="shopify")])
        self.assertEqual(self.assertJson(r4, 200)["customer_id"], cid)

    def test_identifiers_ordered_by_namespace_then_value(self):
        u = uid()
        # One external id per namespace: the default identifier limit.
        r = resolve([email_id("zed-%s@example.com" % u), ext_id("a-" + u, "zeta"),
                     email_id("abe-%s@example.com" % u), ext_id("z-" + u, "alpha"),
                     ext_id("b-" + u, "beta")])
        body = self.assertJson(r, 201)
        idents = body["customer"]["identifiers"]
        emails = [i["value"] for i in idents if i["kind"] == "email"]
        exts = [(i["namespace"], i["value"]) for i in idents if i["kind"] == "external"]
        self.assertEqual(emails, ["abe-%s@example.com" % u, "zed-%s@example.com" % u])
        self.assertEqual(exts, [("alpha", "z-" + u), ("beta", "b-" + u), ("zeta", "a-" + u)])
        kinds = [i["kind"] for i in idents]
        # identifiers of one kind are contiguous (ordered by kind first)
        self.assertEqual(kinds, sorted(kinds, key=kinds.index), kinds)

    def test_external_requires_namespace(self):
        value = "X-" + uid()
        r = resolve([{"kind": "external", "value": value}])
        doc = self.assertProblem(r, 422, "validation-failed", instance="/v1/customers:resolve")
        self.assertTrue(any(e["pointer"].startswith("/identifiers/0") for e in doc["errors"]),
                        doc)

    def test_identifier_validation(self):
        cases = [
            ("email without @", [email_id("nobody.example.com")], "/identifiers/0"),
            ("email two @", [email_id("a@b@example.com")], "/identifiers/0"),
            ("email domain without dot", [email_id("a-%s@localhost" % uid())], "/identifiers/0"),
            ("email with namespace", [{"kind": "email", "namespace": "x",
                                       "value": new_email()}], "/identifiers/0"),
            ("phone with letters", [phone_id("+33 6 12 AB 56 78")], "/identifiers/0"),
            ("phone too short", [phone_id("+1234567")], "/identifiers/0"),
            ("phone too long", [phone_id("+1234567890123456")], "/identifiers/0"),
            ("bad namespace", [ext_id("v-" + uid(), "shop ify")], "/identifiers/0"),
            ("unknown kind", [{"kind": "fax", "value": "123"}], "/identifiers/0"),
            ("second one bad", [email_id(new_email()), {"kind": "device", "value": "  "}],
             "/identifiers/1"),
        ]
        for name, idents, prefix in cases:
            with self.subTest(name):
                doc = self.assertProblem(resolve(idents), 422, "validation-failed")
                self.assertTrue(any(e["pointer"].startswith(prefix) for e in doc["errors"]),
                                doc)

    def test_request_validation(self):
        e = email_id(new_email())
        cases = [
            ("no identifiers", {"source": "e2e"}, "/identifiers"),
            ("empty identifiers", {"identifiers": [], "source": "e2e"}, "/identifiers"),
            ("21 identifiers", {"identifiers": [email_id(new_email()) for _ in range(21)],
                                "source": "e2e"}, "/identifiers"),
            ("no source", {"identifiers": [e]}, "/source"),
            ("empty source", {"identifiers": [e], "source": ""}, "/source"),
            ("source too long", {"identifiers": [e], "source": "s" * 65}, "/source"),
            ("unknown top-level field", {"identifiers": [e], "source": "e2e", "trait": {}},
             "/trait"),
            ("traits not an object", {"identifiers": [e], "source": "e2e", "traits": []},
             "/traits"),
        ]
        for name, body, pointer in cases:
            with self.subTest(name):
                doc = self.assertProblem(post("/v1/customers:resolve", body), 422,
                                         "validation-failed")
                self.assertTrue(any(x["pointer"].startswith(pointer) for x in doc["errors"]),
                                doc)
        # none of the identifiers above may have been stored
        self.assertProblem(get(query("/v1/customers", {"email": e["value"]})), 404, "not-found")

    def test_twenty_identifiers_allowed(self):
        # 20 is the request maximum; devices (limit 20 per customer) fit.
        idents = [{"kind": "device", "value": "dev-" + uid()} for _ in range(20)]
        body = self.assertJson(resolve(idents), 201)
        self.assertEqual(len(body["customer"]["identifiers"]), 20)
        self.assertEqual(body["conflicts"], [])


# ---------------------------------------------------------------------------
# 3. concurrent resolve

class ConcurrentResolveTests(ApiTestCase):
    def test_64_concurrent_resolves_create_one_customer(self):
        email = new_email("race")
        n = 64
        results = run_concurrently(n, lambda i: resolve([email_id(email)], source="race-%d" % i))
        errors = [r for r in results if not isinstance(r, harness.Response)]
        self.assertEqual(errors, [], "requests raised")
        statuses = [r.status for r in results]
        self.assertTrue(all(s in (200, 201) for s in statuses),
                        [self.desc(r) for r in results if r.status not in (200, 201)][:3])
        self.assertEqual(statuses.count(201), 1, sorted(statuses))
        ids = {r.body["customer_id"] for r in results}
        self.assertEqual(len(ids), 1, ids)
        created = [r.body["created"] for r in results]
        self.assertEqual(created.count(True), 1)
        cid = ids.pop()
        prof = self.get_profile(cid)
        self.assertEqual([(i["kind"], i["value"]) for i in prof["identifiers"]],
                         [("email", email)])
        self.assertEqual(prof["merged_ids"], [])


# ---------------------------------------------------------------------------
# 4. merge

class MergeTests(ApiTestCase):
    def test_merge_two_customers(self):
        email_a = new_email("a")
        phone_b, _ = new_phone()
        a = self.create_customer([email_id(email_a)], source="src-a",
                                 traits={"first_name": "Alice", "last_name": "A-last",
                                         "attributes": {"tier": "gold", "a_only": "yes"}})
        time.sleep(0.02)
        b = self.create_customer([phone_id(phone_b)], source="src-b",
                                 traits={"last_name": "B-last", "gender": "b-gender",
                                         "attributes": {"tier": "platinum", "b_only": 2}})
        time.sleep(0.02)
        # A's gender is written after B's -> A's value must win for gender.
        r = patch("/v1/customers/%s/traits" % a, {"source": "src-a-patch",
                                                   "traits": {"gender": "a-gender"}})
        self.assertJson(r, 200)

        ia = [self.ingest_ok(a, channel="web", type="purchase", amount=10.5, currency="EUR",
                             occurred_at="2026-01-02T10:00:00Z")["interaction_id"],
              self.ingest_ok(a, channel="store", type="visit",
                             occurred_at="2026-01-05T10:00:00Z")["interaction_id"]]
        ib = [self.ingest_ok(b, channel="web", type="purchase", amount=20.25, currency="EUR",
                             occurred_at="2026-01-01T09:00:00Z")["interaction_id"],
              self.ingest_ok(b, channel="app", type="purchase", amount=5, currency="USD",
                             occurred_at="2026-01-03T10:00:00Z")["interaction_id"],
              self.ingest_ok(b, channel="phone", type="complaint", cost=1.5, currency="EUR",
                             occurred_at="2026-01-07T11:30:00Z")["interaction_id"]]

        # B's identifier listed first: the survivor must still be the oldest (A).
        r = resolve([phone_id(phone_b), email_id(email_a)], source="merge-src")
        body = self.assertJson(r, 200)
        self.assertEqual(body["customer_id"], a)
        self.assertIs(body["created"], False)
        self.assertEqual(body["merged_ids"], [b])

        surv = body["customer"]
        self.assertEqual(surv["customer_id"], a)
        self.assertEqual(surv["merged_ids"], [b])
        self.assertEqual({(i["kind"], i["value"]) for i in surv["identifiers"]},
                         {("email", email_a), ("phone", phone_b)})
        src = {i["kind"]: i["source"] for i in surv["identifiers"]}
        self.assertEqual(src, {"email": "src-a", "phone": "src-b"})
        self.assertTraits(surv["traits"], {
            "first_name": "Alice", "last_name": "B-last", "gender": "a-gender",
            "attributes": {"tier": "platinum", "a_only": "yes", "b_only": 2}})
        ts = surv["trait_sources"]
        self.assertEqual(ts["first_name"]["source"], "src-a")
        self.assertEqual(ts["last_name"]["source"], "src-b")
        self.assertEqual(ts["gender"]["source"], "src-a-patch")
        self.assertEqual(ts["attributes.tier"]["source"], "src-b")
        self.assertEqual(ts["attributes.a_only"]["source"], "src-a")
        self.assertEqual(ts["attributes.b_only"]["source"], "src-b")

        agg = surv["aggregates"]
        self.assertEqual(agg["interaction_count"], 5)
        self.assertMoney(agg["revenue"], {"EUR": 30.75, "USD": 5})
        self.assertMoney(agg["cost"], {"EUR": 1.5})
        self.assertEqual(agg["complaints"], 1)
        self.assertEqual(agg["by_channel"], {"web": 2, "store": 1, "app": 1, "phone": 1})
        self.assertEqual(agg["by_type"], {"purchase": 3, "visit": 1, "complaint": 1})
        self.assertEqual(agg["first_seen"], "2026-01-01T09:00:00.000000Z")
        self.assertEqual(agg["last_seen"], "2026-01-07T11:30:00.000000Z")

        # The survivor's own profile: no redirect markers.
        pa = self.get_profile(a)
        self.assertEqual(pa["customer_id"], a)
        self.assertIsNone(pa.get("requested_id"))
        self.assertIsNone(pa.get("merged_into"))
        self.assertEqual(pa["merged_ids"], [b])
        self.assertEqual(pa["aggregates"]["interaction_count"], 5)

        # The absorbed id resolves to the survivor.
        rb = profile(b)
        pb = self.assertJson(rb, 200)
        self.assertEqual(pb["customer_id"], a)
        self.assertEqual(pb["requested_id"], b)
        self.assertEqual(pb["merged_into"], a)
        self.assertEqual(rb.headers.get("Content-Location"), "/v1/customers/%s" % a)
        self.assertEqual(pb["aggregates"]["interaction_count"], 5)

        # Timeline holds all interactions of both, all owned by A; B's timeline follows.
        items = self.all_items(a)
        self.assertEqual(sorted(i["interaction_id"] for i in items), sorted(ia + ib))
        self.assertTrue(all(i["customer_id"] == a for i in items), items)
        tb = self.assertJson(timeline(b, limit=500), 200)
        self.assertEqual(tb["customer_id"], a)
        self.assertEqual(sorted(i["interaction_id"] for i in tb["items"]), sorted(ia + ib))

        # Lookups by either identifier land on A.
        for params in ({"email": email_a}, {"phone": phone_b}):
            self.assertEqual(self.assertJson(get(query("/v1/customers", params)), 200)
                             ["customer_id"], a, params)
        # Resolving B's identifier alone: A, nothing merged any more.
        body2 = self.assertJson(resolve([phone_id(phone_b)]), 200)
        self.assertEqual((body2["customer_id"], body2["merged_ids"]), (a, []))

        # An interaction posted to B's id lands on A.
        late = self.assertJson(ingest(b, channel="sms", type="inquiry",
                                      occurred_at="2026-01-08T00:00:00Z"), 201)
        self.assertEqual(late["customer_id"], a)
        items = self.all_items(a)
        self.assertEqual(len(items), 6)
        self.assertEqual(items[0]["interaction_id"], late["interaction_id"])
        self.assertEqual(items[0]["customer_id"], a)
        pa2 = self.get_profile(a)
        self.assertEqual(pa2["aggregates"]["interaction_count"], 6)
        self.assertEqual(pa2["aggregates"]["last_seen"], "2026-01-08T00:00:00.000000Z")

        # Traits patched through B's id land on A.
        rp = patch("/v1/customers/%s/traits" % b, {"source": "via-b",
                                                   "traits": {"first_name": "Alicia"}})
        self.assertEqual(self.assertJson(rp, 200)["customer_id"], a)
        self.assertEqual(self.get_profile(a)["traits"]["first_name"], "Alicia")

    def test_three_way_merge_into_oldest_via_interaction(self):
        e1, e2, e3 = new_email("m1"), new_email("m2"), new_email("m3")
        c1 = self.create_customer([email_id(e1)])
        time.sleep(0.02)
        c2 = self.create_customer([email_id(e2)])
        time.sleep(0.02)
        c3 = self.create_customer([email_id(e3)])
        self.ingest_ok(c2, type="purchase", amount=1, currency="EUR")
        self.ingest_ok(c3, type="purchase", amount=2, currency="EUR")
        # Merge triggered by an interaction carrying identifiers.
        body = self.assertJson(ingest(identifiers=[email_id(e3), email_id(e2), email_id(e1)],
                                      type="purchase", amount=4, currency="EUR"), 201)
        self.assertEqual(body["status"], "created")
        self.assertEqual(body["customer_id"], c1)
        prof = self.get_profile(c1)
        self.assertEqual(sorted(prof["merged_ids"]), sorted([c2, c3]))
        self.assertEqual(prof["aggregates"]["interaction_count"], 3)
        self.assertMoney(prof["aggregates"]["revenue"], {"EUR": 7})
        self.assertEqual({i["value"] for i in prof["identifiers"]}, {e1, e2, e3})
        for absorbed in (c2, c3):
            r = profile(absorbed)
            p = self.assertJson(r, 200)
            self.assertEqual((p["customer_id"], p["requested_id"], p["merged_into"]),
                             (c1, absorbed, c1))
            self.assertEqual(r.headers.get("Content-Location"), "/v1/customers/%s" % c1)


# ---------------------------------------------------------------------------
# 5. idempotent ingest

class IngestTests(ApiTestCase):
    def test_duplicate_is_stored_once(self):
        cid = self.create_customer()
        ext = "receipt-" + uid()
        body = interaction(cid, source="pos-eu", external_id=ext, channel="store",
                           type="purchase", amount=12.5, currency="EUR",
                           occurred_at="2026-11-20T15:04:05Z")
        first = self.assertJson(post("/v1/interactions", body), 201)
        self.assertEqual(first["status"], "created")
        self.assertEqual(first["customer_id"], cid)
        iid = first["interaction_id"]
        self.assertRegex(iid, UUID_RE)

        again = self.assertJson(post("/v1/interactions", body), 200)
        self.assertEqual(again, {"status": "duplicate", "interaction_id": iid,
                                 "customer_id": cid})
        # Same key with a different body: still a duplicate, nothing stored.
        changed = dict(body, amount=999, channel="web")
        again2 = self.assertJson(post("/v1/interactions", changed), 200)
        self.assertEqual((again2["status"], again2["interaction_id"]), ("duplicate", iid))

        agg = self.get_profile(cid)["aggregates"]
        self.assertEqual(agg["interaction_count"], 1)
        self.assertMoney(agg["revenue"], {"EUR": 12.5})
        self.assertEqual(agg["by_channel"], {"store": 1})
        items = self.all_items(cid)
        self.assertEqual([i["interaction_id"] for i in items], [iid])
        self.assertAlmostEqual(items[0]["amount"], 12.5)

        # The key is the (source, external_id) pair: another source is a new interaction.
        other = self.assertJson(post("/v1/interactions", dict(body, source="pos-us")), 201)
        self.assertNotEqual(other["interaction_id"], iid)
        self.assertEqual(self.get_profile(cid)["aggregates"]["interaction_count"], 2)

    def test_duplicate_answer_commits_a_wal_record(self):
        # A duplicate is answered only after a commit that wrote WAL of its
        # own (a transactional logical message): PostgreSQL makes such a
        # commit wait for a synchronous standby like any write, so the row it
        # reports cannot be one that a failover loses (tests/ha). Seen in the
        # WAL with pg_walinspect: one message per duplicate answer (five
        # single ones, one all-duplicate batch), each in a committed
        # transaction.
        if harness.sql("SELECT count(*) FROM pg_available_extensions "
                       "WHERE name = 'pg_walinspect'") != "1":
            self.skipTest("pg_walinspect not available")
        psql("CREATE EXTENSION IF NOT EXISTS pg_walinspect WITH SCHEMA public")
        try:
            cid = self.create_customer()
            body = interaction(cid, external_id="durable-" + uid())
            self.assertJson(post("/v1/interactions", body), 201)
            start = harness.sql("SELECT pg_current_wal_flush_lsn()")
            for _ in range(5):
                self.assertEqual(self.assertJson(post("/v1/interactions", body), 200)["status"],
                                 "duplicate")
            res = self.assertJson(post("/v1/interactions:batch", {"items": [body, body]}), 200)
            self.assertEqual((res["created"], res["duplicates"]), (0, 2), res)
            end = harness.sql("SELECT pg_current_wal_flush_lsn()")
            self.assertNotEqual(start, end, "the duplicate answers wrote no WAL")
            n = harness.sql(
                "WITH r AS (SELECT * FROM public.pg_get_wal_records_info('%s', '%s')) "
                "SELECT count(DISTINCT m.xid::text) FROM r m JOIN r c ON c.xid = m.xid "
                "AND c.resource_manager = 'Transaction' AND c.record_type = 'COMMIT' "
                "WHERE m.resource_manager = 'LogicalMessage' "
                "AND m.description LIKE '%%crm.duplicate%%'" % (start, end))
            self.assertEqual(n, "6")
        finally:
            psql("DROP EXTENSION IF EXISTS pg_walinspect")

    def test_concurrent_identical_posts_create_one(self):
        cid = self.create_customer()
        body = interaction(cid, external_id="conc-" + uid(), type="purchase", amount=3,
                           currency="EUR")
        results = run_concurrently(10, lambda i: post("/v1/interactions", body))
        self.assertEqual([r for r in results if not isinstance(r, harness.Response)], [])
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200] * 9 + [201], [self.desc(r) for r in results][:3])
        self.assertEqual(sorted(r.body["status"] for r in results),
                         ["created"] + ["duplicate"] * 9)
        self.assertEqual(len({r.body["interaction_id"] for r in results}), 1)
        agg = self.get_profile(cid)["aggregates"]
        self.assertEqual(agg["interaction_count"], 1)
        self.assertMoney(agg["revenue"], {"EUR": 3})
        self.assertEqual(len(self.all_items(cid)), 1)

    def test_ingest_by_identifiers(self):
        email = new_email()
        # Unknown identifier -> customer created in the same transaction.
        b1 = self.assertJson(ingest(identifiers=[email_id(" %s " % email.upper())]), 201)
        self.assertEqual(b1["status"], "created")
        cid = b1["customer_id"]
        self.assertRegex(cid, UUID_RE)
        prof = self.get_profile(cid)
        self.assertEqual([(i["kind"], i["value"]) for i in prof["identifiers"]],
                         [("email", email)])
        # Known identifier -> same customer.
        b2 = self.assertJson(ingest(identifiers=[email_id(email)]), 201)
        self.assertEqual(b2["customer_id"], cid)
        self.assertEqual(self.get_profile(cid)["aggregates"]["interaction_count"], 2)

    def test_content_type_with_charset_accepted(self):
        cid = self.create_customer()
        r = post("/v1/interactions", interaction(cid),
                 content_type="application/json; charset=utf-8")
        self.assertEqual(self.assertJson(r, 201)["status"], "created")

    def test_interaction_item_fields(self):
        cid = self.create_customer()
        ext = "full-" + uid()
        b = self.ingest_ok(cid, source="pos-eu", external_id=ext, channel="store",
                           type="purchase", occurred_at="2026-11-20T16:04:05+01:00",
                           amount="59.90", currency="EUR", cost=4.1,
                           tags=["Premium_Support", "running", "RUNNING"],
                           payload={"sku": "X1", "n": [1, 2, {"k": None}]})
        bare = self.ingest_ok(cid, occurred_at="2026-11-19T00:00:00Z")
        items = self.all_items(cid)
        self.assertEqual([i["interaction_id"] for i in items],
                         [b["interaction_id"], bare["interaction_id"]])
        it = items[0]
        self.assertEqual(it["customer_id"], cid)
        self.assertEqual((it["source"], it["external_id"]), ("pos-eu", ext))
        self.assertEqual((it["channel"], it["type"]), ("store", "purchase"))
        self.assertEqual(it["occurred_at"], "2026-11-20T15:04:05.000000Z")
        self.assertTimestamp(it["received_at"])
        self.assertIsInstance(it["amount"], (int, float))
        self.assertAlmostEqual(it["amount"], 59.9)
        self.assertEqual(it["currency"], "EUR")
        self.assertAlmostEqual(it["cost"], 4.1)
        self.assertEqual(sorted(it["tags"]), ["premium_support", "running"])
        self.assertEqual(it["payload"], {"sku": "X1", "n": [1, 2, {"k": None}]})
        it2 = items[1]
        self.assertIsNone(it2["amount"])
        self.assertIsNone(it2["currency"])
        self.assertIsNone(it2["cost"])
        self.assertEqual(it2["tags"], [])
        self.assertEqual(it2["payload"], {})
        self.assertEqual(it2["occurred_at"], "2026-11-19T00:00:00.000000Z")


# ---------------------------------------------------------------------------
# 6. batch

class BatchTests(ApiTestCase):
    def test_partial_failure(self):
        cid = self.create_customer()
        new_mail = new_email("batch")
        good = interaction(cid, external_id="b0-" + uid(), channel="web", type="page_view",
                           occurred_at="2026-05-01T10:00:00Z")
        bad = interaction(cid, channel="fax")
        dup = dict(good)
        good_ids = interaction(identifiers=[email_id(new_mail)], type="purchase",
                               amount=7.5, currency="EUR", occurred_at="2026-05-02T10:00:00Z")
        missing = interaction(str(uuid.uuid4()))
        r = post("/v1/interactions:batch", {"items": [good, bad, dup, good_ids, missing]})
        body = self.assertJson(r, 200)
        self.assertEqual((body["created"], body["duplicates"], body["failed"]), (2, 1, 2), body)
        res = body["results"]
        self.assertEqual([x["index"] for x in res], [0, 1, 2, 3, 4])
        self.assertEqual([x["status"] for x in res],
                         ["created", "failed", "duplicate", "created", "failed"])
        self.assertEqual(res[0]["customer_id"], cid)
        self.assertRegex(res[0]["interaction_id"], UUID_RE)
        self.assertEqual(res[2]["interaction_id"], res[0]["interaction_id"])
        self.assertEqual(res[2]["customer_id"], cid)
        p1 = res[1]["problem"]
        self.assertProblemDoc(p1, 422, "validation-failed")
        # pointers are into the whole batch body (openapi.yaml BatchItemFailed)
        self.assertIn("/items/1/channel", [e["pointer"] for e in p1["errors"]], p1)
        self.assertIsNone(res[1].get("interaction_id"))
        self.assertProblemDoc(res[4]["problem"], 404, "not-found")

        self.assertEqual([i["interaction_id"] for i in self.all_items(cid)],
                         [res[0]["interaction_id"]])
        new_cid = res[3]["customer_id"]
        self.assertRegex(new_cid, UUID_RE)
        self.assertNotEqual(new_cid, cid)
        found = self.assertJson(get(query("/v1/customers", {"email": new_mail})), 200)
        self.assertEqual(found["customer_id"], new_cid)
        self.assertEqual([i["interaction_id"] for i in self.all_items(new_cid)],
                         [res[3]["interaction_id"]])
        self.assertMoney(found["aggregates"]["revenue"], {"EUR": 7.5})

        # Re-sending the whole batch: the good ones are duplicates now.
        body2 = self.assertJson(post("/v1/interactions:batch", {"items": [good, good_ids]}), 200)
        self.assertEqual((body2["created"], body2["duplicates"], body2["failed"]), (0, 2, 0))
        self.assertEqual([x["interaction_id"] for x in body2["results"]],
                         [res[0]["interaction_id"], res[3]["interaction_id"]])

    def test_items_resolve_in_order_and_merge(self):
        # Item 0 creates a customer by email, item 1 finds it by the same
        # email, item 2 creates another by phone, item 3 links both (merge):
        # every interaction ends up on the survivor, with aggregates and needs
        # counted once each, as if the items had been posted one by one.
        mail, phone = new_email("bord"), new_phone()[0]
        items = [
            interaction(identifiers=[email_id(mail)], type="purchase", amount=10,
                        currency="EUR", tags=["gifts"], occurred_at="2026-03-01T10:00:00Z"),
            interaction(identifiers=[email_id(mail)], type="purchase", amount=5,
                        currency="EUR", tags=["gifts", "premium_support"],
                        occurred_at="2026-03-02T10:00:00Z"),
            interaction(identifiers=[phone_id(phone)], type="complaint", channel="phone",
                        tags=["premium_support"], occurred_at="2026-03-03T10:00:00Z"),
            interaction(identifiers=[email_id(mail), phone_id(phone)], type="page_view",
                        occurred_at="2026-03-04T10:00:00Z"),
        ]
        body = self.assertJson(post("/v1/interactions:batch", {"items": items}), 200)
        self.assertEqual((body["created"], body["duplicates"], body["failed"]), (4, 0, 0), body)
        res = body["results"]
        # Results name the customer that holds the interaction after the
        # whole batch: the merge's survivor.
        survivor = res[3]["customer_id"]
        self.assertEqual({r["customer_id"] for r in res}, {survivor})
        doc = self.assertJson(profile(survivor), 200)
        self.assertEqual(len(doc["merged_ids"]), 1)
        self.assertEqual(sorted(i["kind"] for i in doc["identifiers"]), ["email", "phone"])
        agg = doc["aggregates"]
        self.assertEqual(agg["interaction_count"], 4)
        self.assertEqual(agg["by_type"], {"purchase": 2, "complaint": 1, "page_view": 1})
        self.assertEqual(agg["complaints"], 1)
        self.assertMoney(agg["revenue"], {"EUR": 15})
        self.assertEqual(agg["first_seen"], "2026-03-01T10:00:00.000000Z")
        self.assertEqual(agg["last_seen"], "2026-03-04T10:00:00.000000Z")
        self.assertEqual({n["need"]: n["count"] for n in doc["needs"]},
                         {"gifts": 2, "premium_support": 2})
        self.assertEqual(sorted(i["interaction_id"] for i in self.all_items(survivor)),
                         sorted(r["interaction_id"] for r in res))
        # Known identifiers now (the set-based path): both land on the survivor.
        body = self.assertJson(post("/v1/interactions:batch", {"items": [
            interaction(identifiers=[email_id(mail)]), interaction(identifiers=[phone_id(phone)]),
            interaction(identifiers=[email_id(mail), phone_id(phone)])]}), 200)
        self.assertEqual(body["created"], 3, body)
        self.assertEqual({r["customer_id"] for r in body["results"]}, {survivor})
        self.assertEqual(self.assertJson(profile(survivor), 200)["aggregates"]["interaction_count"],
                         7)

    def test_batch_stores_fields_as_a_single_post_does(self):
        # The batch's text for the database is written by hand (jsontext),
        # the single POST's by jansson: awkward text must come out the same.
        odd = 'q"uote \\ back/slash \u00e9\u20ac\U0001F600 tab\tnl\n\u0001'
        cid_mail, shop_id = new_email("bfield"), 'sh"op\u00e9\\-' + uid()
        def item(external_id, **kw):
            return interaction(
                identifiers=[email_id(cid_mail), ext_id(shop_id, namespace="Shop_X")],
                source='src "%s\\' % uid(), external_id=external_id, type="purchase",
                amount="12.3400", cost=1.5, currency="EUR", tags=["Gift\u00e9", "x\"y"],
                payload={"note": odd, "nested": [1, 2.5, None, True, {"k": odd}], odd: "key"},
                **kw)
        fallbacks = self.metrics()["crm_ingest_batch_fallbacks_total"]
        single = item("one " + odd)
        created = self.assertJson(post("/v1/interactions", single), 201)
        batch_item = item("two " + odd)
        body = self.assertJson(post("/v1/interactions:batch", {"items": [batch_item]}), 200)
        self.assertEqual(body["created"], 1, body)
        # Stored by crm.ingest_batch itself, not by the item-by-item fallback
        # that a malformed batch text would end in.
        self.assertEqual(self.metrics()["crm_ingest_batch_fallbacks_total"], fallbacks)
        cid = created["customer_id"]
        self.assertEqual(body["results"][0]["customer_id"], cid)
        stored = {i["external_id"]: i for i in self.all_items(cid)}
        a, b = stored["one " + odd], stored["two " + odd]
        for field in ("channel", "type", "occurred_at", "amount", "currency", "cost", "payload"):
            self.assertEqual(a[field], b[field], field)
        self.assertEqual(sorted(a["tags"]), sorted(b["tags"]))
        self.assertEqual(b["source"], batch_item["source"])
        self.assertEqual(b["payload"]["note"], odd)
        self.assertEqual(b["payload"][odd], "key")
        self.assertEqual(b["amount"], 12.34)
        # The batch item's identifiers found the single POST's customer.
        idents = self.assertJson(profile(cid), 200)["identifiers"]
        self.assertIn(shop_id, [i["value"] for i in idents if i.get("namespace") == "shop_x"])

    def test_repeats_within_a_batch(self):
        cid = self.create_customer()
        first = interaction(cid, type="purchase", amount=3, currency="EUR")
        missing = interaction(str(uuid.uuid4()))
        items = [first, dict(first), missing, dict(missing), dict(first, amount=99)]
        body = self.assertJson(post("/v1/interactions:batch", {"items": items}), 200)
        self.assertEqual((body["created"], body["duplicates"], body["failed"]), (1, 2, 2), body)
        res = body["results"]
        self.assertEqual([x["status"] for x in res],
                         ["created", "duplicate", "failed", "failed", "duplicate"])
        self.assertEqual(res[1]["interaction_id"], res[0]["interaction_id"])
        self.assertEqual(res[4]["interaction_id"], res[0]["interaction_id"])
        self.assertProblemDoc(res[3]["problem"], 404, "not-found")
        doc = self.assertJson(profile(cid), 200)
        self.assertEqual(doc["aggregates"]["interaction_count"], 1)
        self.assertMoney(doc["aggregates"]["revenue"], {"EUR": 3})

    def test_concurrent_batches_to_one_customer(self):
        cid = self.create_customer()
        per_batch, batches = 25, 6

        def send(i):
            items = [interaction(cid, type="purchase", amount=1, currency="EUR",
                                 tags=["t%d" % (k % 3)]) for k in range(per_batch)]
            return post("/v1/interactions:batch", {"items": items})

        results = run_concurrently(batches, send)
        for r in results:
            self.assertEqual(self.assertJson(r, 200)["created"], per_batch)
        doc = self.assertJson(profile(cid), 200)
        self.assertEqual(doc["aggregates"]["interaction_count"], per_batch * batches)
        self.assertMoney(doc["aggregates"]["revenue"], {"EUR": per_batch * batches})
        self.assertEqual(sum(n["count"] for n in doc["needs"]), per_batch * batches)

    def test_one_failing_item_does_not_fail_the_others(self):
        # A trigger that rejects one external_id makes the set-based batch
        # statement fail; the server then stores item by item.
        marker = "poison-" + uid()
        psql("CREATE OR REPLACE FUNCTION public.e2e_poison() RETURNS trigger LANGUAGE plpgsql "
             "AS $$BEGIN IF NEW.external_id LIKE 'poison-%' THEN "
             "RAISE EXCEPTION 'poisoned item'; END IF; RETURN NEW; END $$")
        psql("CREATE TRIGGER e2e_poison BEFORE INSERT ON crm.interactions "
             "FOR EACH ROW EXECUTE FUNCTION public.e2e_poison()")
        try:
            cid = self.create_customer()
            items = [interaction(cid), interaction(cid, external_id=marker), interaction(cid)]
            body = self.assertJson(post("/v1/interactions:batch", {"items": items}), 200)
        finally:
            psql("DROP TRIGGER e2e_poison ON crm.interactions")
        self.assertEqual((body["created"], body["duplicates"], body["failed"]), (2, 0, 1), body)
        self.assertProblemDoc(body["results"][1]["problem"], 500, "internal-error")
        self.assertEqual(self.assertJson(profile(cid), 200)["aggregates"]["interaction_count"], 2)

    def test_bad_envelopes(self):
        cases = [("empty items", {"items": []}, "/items"),
                 ("missing items", {}, "/items"),
                 ("items not an array", {"items": {"a": 1}}, "/items"),
                 ("unknown field", {"items": [interaction(str(uuid.uuid4()))], "x": 1}, "/x")]
        for name, body, pointer in cases:
            with self.subTest(name):
                self.assertProblem(post("/v1/interactions:batch", body), 422,
                                   "validation-failed", instance="/v1/interactions:batch",
                                   pointers=[pointer])
        self.assertProblem(post("/v1/interactions:batch", raw=b"[1,2]"), 400, "malformed-json")


# ---------------------------------------------------------------------------
# 7. timeline pagination

class TimelineTests(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        # 25 interactions: minutes 0..23 plus a second one at minute 14, so that
        # newest-first positions 9 and 10 share an occurred_at (tie across the
        # first page boundary with limit=10).
        r = resolve([email_id(new_email("tl"))])
        if r.status != 201:
            raise AssertionError("setup resolve failed: %r" % (r,))
        cls.cid = r.body["customer_id"]
        cls.expected = []  # (occurred_at, interaction_id, channel, type)
        minutes = list(range(24)) + [14]
        for n, minute in enumerate(minutes):
            channel = "web" if n % 2 == 0 else "store"
            typ = "purchase" if n % 5 == 0 else "page_view"
            occurred = "2026-06-01T10:%02d:00Z" % minute
            body = interaction(cls.cid, channel=channel, type=typ, occurred_at=occurred)
            if typ == "purchase":
                body.update(amount=1, currency="EUR")
            r = post("/v1/interactions", body)
            if r.status != 201:
                raise AssertionError("setup ingest failed: %r" % (r,))
            cls.expected.append(("2026-06-01T10:%02d:00.000000Z" % minute,
                                 r.body["interaction_id"], channel, typ))
        # newest first by occurred_at, then interaction_id (both descending)
        cls.expected.sort(key=lambda x: (x[0], x[1]), reverse=True)

    def pages(self, limit, **params):
        ids, pages, cursor = [], [], None
        for _ in range(100):
            q = dict(params, limit=limit)
            if cursor is not None:
                q["cursor"] = cursor
            body = self.assertJson(timeline(self.cid, **q), 200)
            self.assertEqual(body["customer_id"], self.cid)
            pages.append(len(body["items"]))
            ids.extend(i["interaction_id"] for i in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return ids, pages
            self.assertIsInstance(cursor, str)
            self.assertTrue(cursor)
        self.fail("pagination did not terminate")

    def test_pages_of_ten(self):
        self.assertEqual(self.expected[9][0], self.expected[10][0])  # tie across boundary
        ids, pages = self.pages(10)
        self.assertEqual(pages, [10, 10, 5])
        self.assertEqual(len(ids), len(set(ids)), "duplicates across pages")
        self.assertEqual(ids, [e[1] for e in self.expected])

    def test_small_pages_and_default_limit(self):
        ids, pages = self.pages(3)
        self.assertEqual(pages, [3] * 8 + [1])
        self.assertEqual(ids, [e[1] for e in self.expected])
        body = self.assertJson(timeline(self.cid), 200)  # default limit 50
        self.assertEqual([i["interaction_id"] for i in body["items"]],
                         [e[1] for e in self.expected])
        self.assertIsNone(body["next_cursor"])
        self.assertEqual([i["occurred_at"] for i in body["items"]],
                         [e[0] for e in self.expected])

    def test_filters(self):
        web = [e[1] for e in self.expected if e[2] == "web"]
        self.assertEqual(self.all_items_ids(channel="web"), web)
        ids, _ = self.pages(4, channel="web")
        self.assertEqual(ids, web)
        purchases = [e[1] for e in self.expected if e[3] == "purchase"]
        self.assertEqual(self.all_items_ids(type="purchase"), purchases)
        both = [e[1] for e in self.expected if e[2] == "store" and e[3] == "purchase"]
        self.assertEqual(self.all_items_ids(channel="store", type="purchase"), both)
        # since inclusive, until exclusive: minutes 5..9
        window = [e[1] for e in self.expected
                  if "2026-06-01T10:05:00" <= e[0] < "2026-06-01T10:10:00"]
        self.assertEqual(len(window), 5)
        self.assertEqual(self.all_items_ids(since="2026-06-01T10:05:00Z",
                                            until="2026-06-01T10:10:00Z"), window)
        # same window expressed with an offset
        self.assertEqual(self.all_items_ids(since="2026-06-01T12:05:00+02:00",
                                            until="2026-06-01T12:10:00+02:00"), window)
        self.assertEqual(self.all_items_ids(since="2026-06-01T10:14:00Z",
                                            until="2026-06-01T10:15:00Z"),
                         [e[1] for e in self.expected if e[0].startswith("2026-06-01T10:14")])
        self.assertEqual(len(self.all_items_ids(since="2026-06-01T10:14:00Z",
                                                until="2026-06-01T10:15:00Z")), 2)
        self.assertEqual(self.all_items_ids(since="2027-01-01T00:00:00Z"), [])

    def all_items_ids(self, **params):
        return [i["interaction_id"] for i in self.all_items(self.cid, **params)]

    def test_bad_queries(self):
        path = "/v1/customers/%s/interactions" % self.cid
        cases = [{"cursor": "not-a-cursor"}, {"cursor": "!!!"},
                 {"limit": "0"}, {"limit": "501"}, {"limit": "-1"}, {"limit": "abc"},
                 {"since": "yesterday"}, {"until": "2026-13-01T00:00:00Z"},
                 {"channel": "fax"}, {"type": "wave"}]
        for params in cases:
            with self.subTest(params):
                self.assertProblem(get(query(path, params)), 400, "invalid-query")
        for limit in ("1", "500"):
            self.assertJson(get(query(path, {"limit": limit})), 200)

    def test_unknown_customer(self):
        self.assertProblem(timeline(str(uuid.uuid4())), 404, "not-found")
        self.assertProblem(get("/v1/customers/not-a-uuid/interactions"), 400, "invalid-uuid")


# ---------------------------------------------------------------------------
# 8. profile aggregates

class AggregateTests(ApiTestCase):
    def test_aggregates(self):
        cid = self.create_customer()
        rows = [
            dict(channel="store", type="purchase", amount=100.25, currency="EUR", cost=2.5,
                 occurred_at="2026-03-01T10:00:00+01:00"),
            dict(channel="web", type="purchase", amount=40, currency="USD",
                 occurred_at="2026-03-05T12:00:00Z"),
            dict(channel="web", type="purchase", amount="19.50", currency="EUR",
                 occurred_at="2026-03-03T00:00:00Z"),
            dict(channel="store", type="return", amount=30, currency="EUR",
                 occurred_at="2026-03-06T08:00:00Z"),
            dict(channel="phone", type="complaint", cost=7.25, currency="EUR",
                 occurred_at="2026-03-07T09:30:00.123456Z"),
            dict(channel="email", type="feedback",
                 occurred_at="2026-02-28T23:59:59-01:00"),
        ]
        for row in rows:
            self.ingest_ok(cid, **row)
        agg = self.get_profile(cid)["aggregates"]
        self.assertEqual(agg["interaction_count"], 6)
        self.assertMoney(agg["revenue"], {"EUR": 119.75, "USD": 40})
        self.assertEqual(agg["returns"]["count"], 1)
        self.assertMoney(agg["returns"]["amount"], {"EUR": 30})
        self.assertEqual(agg["complaints"], 1)
        self.assertMoney(agg["cost"], {"EUR": 9.75})
        self.assertEqual(agg["by_channel"], {"store": 2, "web": 2, "phone": 1, "email": 1})
        self.assertEqual(agg["by_type"], {"purchase": 3, "return": 1, "complaint": 1,
                                          "feedback": 1})
        self.assertEqual(agg["first_seen"], "2026-03-01T00:59:59.000000Z")
        self.assertEqual(agg["last_seen"], "2026-03-07T09:30:00.123456Z")

    def test_empty_aggregates(self):
        cid = self.create_customer()
        agg = self.get_profile(cid)["aggregates"]
        self.assertIsNone(agg["first_seen"])
        self.assertIsNone(agg["last_seen"])
        self.assertEqual(agg["interaction_count"], 0)
        self.assertEqual(agg["complaints"], 0)
        self.assertEqual(agg["returns"]["count"], 0)
        for key in ("by_channel", "by_type", "revenue", "cost"):
            self.assertEqual({k: v for k, v in agg[key].items() if v}, {}, key)


# ---------------------------------------------------------------------------
# 9. traits

class TraitTests(ApiTestCase):
    def path(self, cid):
        return "/v1/customers/%s/traits" % cid

    def test_set_and_remove(self):
        cid = self.create_customer(source="src1", traits={
            "first_name": "Ann", "last_name": "Lee", "address": {"city": "Lyon"},
            "attributes": {"a": 1, "b": "x"}})
        r = patch(self.path(cid), {"source": "crm-ui", "traits": {
            "last_name": None, "gender": "f", "birthday": "2000-02-29",
            "attributes": {"b": None, "c": [1, 2]}}})
        prof = self.assertJson(r, 200)
        self.assertEqual(prof["customer_id"], cid)
        expected = {"first_name": "Ann", "gender": "f", "birthday": "2000-02-29",
                    "address": {"city": "Lyon"}, "attributes": {"a": 1, "c": [1, 2]}}
        self.assertTraits(prof["traits"], expected)
        ts = prof["trait_sources"]
        self.assertEqual(ts["first_name"]["source"], "src1")
        self.assertEqual(ts["address"]["source"], "src1")
        self.assertEqual(ts["attributes.a"]["source"], "src1")
        self.assertEqual(ts["gender"]["source"], "crm-ui")
        self.assertEqual(ts["birthday"]["source"], "crm-ui")
        self.assertEqual(ts["attributes.c"]["source"], "crm-ui")
        for v in ts.values():
            self.assertTimestamp(v["updated_at"])
        self.assertGreater(ts["gender"]["updated_at"], ts["first_name"]["updated_at"])
        self.assertTraits(self.get_profile(cid)["traits"], expected)

        # Last writer wins per field.
        r2 = patch(self.path(cid), {"source": "crm-2", "traits": {"first_name": "Anne"}})
        prof2 = self.assertJson(r2, 200)
        self.assertTraits(prof2["traits"], dict(expected, first_name="Anne"))
        self.assertEqual(prof2["trait_sources"]["first_name"]["source"], "crm-2")
        self.assertEqual(prof2["trait_sources"]["gender"]["source"], "crm-ui")

        # Resolve with traits also updates them.
        email = prof2["identifiers"][0]["value"]
        body = self.assertJson(resolve([email_id(email)], source="shop",
                                       traits={"attributes": {"a": None}}), 200)
        self.assertEqual(body["customer"]["traits"]["attributes"], {"c": [1, 2]})

    def test_invalid_traits_change_nothing(self):
        cid = self.create_customer(traits={"first_name": "Ann"})
        cases = [
            ("unknown key", {"favourite_colour": "red"}, "/traits/favourite_colour"),
            ("impossible birthday", {"birthday": "1990-02-30"}, "/traits/birthday"),
            ("birthday format", {"birthday": "01/04/1990"}, "/traits/birthday"),
            ("first_name too long", {"first_name": "x" * 201}, "/traits/first_name"),
            ("first_name not a string", {"first_name": 5}, "/traits/first_name"),
            ("gender too long", {"gender": "g" * 51}, "/traits/gender"),
            ("empty first_name", {"first_name": ""}, "/traits/first_name"),
            ("empty gender", {"gender": ""}, "/traits/gender"),
            ("birthday year 1899", {"birthday": "1899-12-31"}, "/traits/birthday"),
            ("address not an object", {"address": "Lyon"}, "/traits/address"),
            ("attributes not an object", {"attributes": [1]}, "/traits/attributes"),
            ("valid + invalid", {"first_name": "Changed", "birthday": "1990-02-30"},
             "/traits/birthday"),
        ]
        for name, traits, pointer in cases:
            with self.subTest(name):
                r = patch(self.path(cid), {"source": "crm-ui", "traits": traits})
                self.assertProblem(r, 422, "validation-failed", instance=self.path(cid),
                                   pointers=[pointer])
        r = patch(self.path(cid), {"source": "crm-ui", "traits": {"attributes": {"k" * 65: 1}}})
        doc = self.assertProblem(r, 422, "validation-failed")
        self.assertTrue(any(e["pointer"].startswith("/traits/attributes") for e in doc["errors"]),
                        doc)
        self.assertTraits(self.get_profile(cid)["traits"], {"first_name": "Ann"})
        self.assertProblem(patch(self.path(cid), {"traits": {"gender": "f"}}), 422,
                           "validation-failed", pointers=["/source"])
        self.assertTraits(self.get_profile(cid)["traits"], {"first_name": "Ann"})

    def test_length_limits_count_characters(self):
        cid = self.create_customer()
        traits = {"first_name": "é" * 200, "gender": "ü" * 50, "birthday": "2999-12-31",
                  "attributes": {"k" * 64: True}}
        prof = self.assertJson(patch(self.path(cid), {"source": "s" * 64, "traits": traits}), 200)
        self.assertTraits(prof["traits"], traits)
        self.assertEqual(prof["trait_sources"]["first_name"]["source"], "s" * 64)

    def test_unknown_and_bad_ids(self):
        body = {"source": "crm-ui", "traits": {"gender": "f"}}
        self.assertProblem(patch(self.path(uuid.uuid4()), body), 404, "not-found")
        self.assertProblem(patch(self.path("1234"), body), 400, "invalid-uuid")


# ---------------------------------------------------------------------------
# 10. lookup

class LookupTests(ApiTestCase):
    def test_lookup_kinds(self):
        ext = "Cust-" + uid()
        email = new_email("lk")
        device = "dev-" + uid()
        card = uid()[:8]
        cid = self.create_customer([ext_id(ext, "shopify"), email_id(email),
                                    {"kind": "device", "value": device},
                                    {"kind": "loyalty_card", "value": "lc-%s 99" % card}])
        found = [
            {"kind": "external", "namespace": "shopify", "value": ext},
            {"kind": "external", "namespace": "SHOPIFY", "value": " %s " % ext},
            {"kind": "email", "value": email},
            {"email": email.upper()},
            {"device": device},
            {"loyalty_card": "LC%s99" % card.upper()},
            {"loyalty_card": "lc %s-99" % card},
            {"kind": "loyalty_card", "value": "LC%s99" % card.upper()},
        ]
        for params in found:
            with self.subTest(params):
                prof = self.assertJson(get(query("/v1/customers", params)), 200)
                self.assertEqual(prof["customer_id"], cid)
        prof = self.get_profile(cid)
        by_kind = {i["kind"]: i for i in prof["identifiers"]}
        self.assertEqual(by_kind["external"]["namespace"], "shopify")
        self.assertEqual(by_kind["external"]["value"], ext)
        self.assertNotIn("namespace", by_kind["email"])
        self.assertNotIn("namespace", by_kind["loyalty_card"])
        self.assertEqual(by_kind["loyalty_card"]["value"], "LC%s99" % card.upper())

        not_found = [
            {"kind": "external", "namespace": "shopify", "value": ext.lower()},
            {"kind": "external", "namespace": "magento", "value": ext},
            {"email": new_email("nobody")},
            {"device": device.upper()},
            {"phone": new_phone()[0]},
        ]
        for params in not_found:
            with self.subTest(params):
                self.assertProblem(get(query("/v1/customers", params)), 404, "not-found")

    def test_bad_lookups(self):
        cases = [
            {"kind": "fax", "value": "123"},
            {},
            {"kind": "email"},
            {"email": "not-an-email"},
            {"phone": "call me"},
            {"kind": "external", "value": "no-namespace"},
        ]
        for params in cases:
            with self.subTest(params):
                self.assertProblem(get(query("/v1/customers", params)), 400, "invalid-query")


# ---------------------------------------------------------------------------
# 11. errors

class QueryStrictnessTests(ApiTestCase):
    """Query strings (issue 13, item 9): a parameter the route does not read,
    a repeated one, or a NUL in a name or value is a 400 naming it, never a
    silently unfiltered or truncated answer."""

    def test_unknown_parameter_is_400_naming_it(self):
        cid = self.create_customer()
        cases = [
            ("/v1/customers/%s/interactions?typ=complaint" % cid, "typ"),
            ("/v1/customers/%s?limit=5" % cid, "limit"),
            ("/v1/customers?email=a@ex.org&emial=b@ex.org", "emial"),
            ("/v1/kpis?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&segment=x", "segment"),
            ("/v1/moments?kind=birthday&dayz=3", "dayz"),
            ("/v1/segments?verbose", "verbose"),
            ("/health?probe=1", "probe"),
        ]
        for path, name in cases:
            with self.subTest(path=path):
                doc = self.assertProblem(get(path), 400, "invalid-query")
                self.assertIn("'%s'" % name, doc["detail"])
        # The valid spelling of the first one still answers.
        self.assertJson(get("/v1/customers/%s/interactions?type=complaint" % cid), 200)

    def test_repeated_parameter_is_400(self):
        cid = self.create_customer()
        doc = self.assertProblem(get("/v1/customers/%s/interactions?limit=1&limit=500" % cid),
                                 400, "invalid-query")
        self.assertIn("'limit'", doc["detail"])

    def test_nul_in_value_or_name_is_400(self):
        doc = self.assertProblem(get("/v1/moments?kind=birthday%00"), 400, "invalid-query")
        self.assertIn("'kind'", doc["detail"])
        self.assertIn("NUL", doc["detail"])
        doc = self.assertProblem(get("/v1/moments?kind%00x=birthday"), 400, "invalid-query")
        self.assertIn("NUL", doc["detail"])
        email = new_email()
        self.create_customer([email_id(email)])
        self.assertProblem(get("/v1/customers?email=" + email + "%00.evil"), 400,
                           "invalid-query")

    def test_plus_in_phone_hints_at_percent_2b(self):
        phone, _ = new_phone()
        self.create_customer([phone_id(phone)])
        doc = self.assertProblem(get("/v1/customers?phone=" + phone), 400, "invalid-query")
        self.assertIn("%2B", doc["detail"])
        self.assertJson(get("/v1/customers?phone=" + phone.replace("+", "%2B")), 200)


class ErrorTests(ApiTestCase):
    def test_malformed_json(self):
        for raw in (b'{"source": ', b"{'a': 1}", b"", b'{"a": 1} trailing'):
            with self.subTest(raw=raw):
                self.assertProblem(post("/v1/interactions", raw=raw), 400, "malformed-json",
                                   instance="/v1/interactions")

    def test_non_object_json(self):
        for raw in (b"[]", b'[{"source": "x"}]', b'"text"', b"42", b"null"):
            with self.subTest(raw=raw):
                self.assertProblem(post("/v1/interactions", raw=raw), 400, "malformed-json")
        self.assertProblem(post("/v1/customers:resolve", raw=b"[]"), 400, "malformed-json")

    def test_wrong_types(self):
        cid = self.create_customer()
        self.assertProblem(ingest(cid, amount="abc", currency="EUR"), 422,
                           "validation-failed", pointers=["/amount"])
        self.assertProblem(ingest(cid, channel=5), 422, "validation-failed",
                           pointers=["/channel"])
        self.assertProblem(ingest(cid, tags="running"), 422, "validation-failed",
                           pointers=["/tags"])
        self.assertProblem(ingest(cid, payload=[1]), 422, "validation-failed",
                           pointers=["/payload"])
        self.assertProblem(ingest(cid, occurred_at=1700000000), 422, "validation-failed",
                           pointers=["/occurred_at"])

    def test_all_field_errors_reported(self):
        doc = self.assertProblem(ingest(self.create_customer(), amount="abc", currency="EUR",
                                        channel=5), 422, "validation-failed",
                                 pointers=["/amount", "/channel"])
        self.assertEqual(len(doc["errors"]), 2, doc)

    def test_field_validation(self):
        cid = self.create_customer()
        cases = [
            ("unknown channel", dict(channel="fax"), "/channel"),
            ("unknown type", dict(type="wave"), "/type"),
            ("unknown field", dict(ocurred_at="2026-11-20T15:04:05Z"), "/ocurred_at"),
            ("amount without currency", dict(amount=5), "/currency"),
            ("cost without currency", dict(cost=5), "/currency"),
            ("negative amount", dict(amount=-1, currency="EUR"), "/amount"),
            ("amount too big", dict(amount=1e12, currency="EUR"), "/amount"),
            ("lower-case currency", dict(amount=1, currency="eur"), "/currency"),
            ("no offset", dict(occurred_at="2026-11-20T15:04:05"), "/occurred_at"),
            ("year 1899", dict(occurred_at="1899-12-31T23:59:59Z"), "/occurred_at"),
            ("year 3000", dict(occurred_at="3000-01-01T00:00:00Z"), "/occurred_at"),
            ("bad date", dict(occurred_at="2026-02-30T00:00:00Z"), "/occurred_at"),
            ("33 tags", dict(tags=["t%d" % i for i in range(33)]), "/tags"),
            ("empty tag", dict(tags=["ok", ""]), "/tags/1"),
            ("tag too long", dict(tags=["t" * 65]), "/tags/0"),
            ("tag over 64 bytes", dict(tags=["ok", "é" * 33]), "/tags/1"),
            ("amount 5 fraction digits", dict(amount="1.23456", currency="EUR"), "/amount"),
            ("amount 13 integer digits", dict(amount="1000000000000", currency="EUR"),
             "/amount"),
            ("amount not decimal", dict(amount="1e3", currency="EUR"), "/amount"),
            ("amount null, cost without currency", dict(amount=None, cost=1), "/currency"),
            ("empty external_id", dict(external_id=""), "/external_id"),
            ("external_id too long", dict(external_id="e" * 257), "/external_id"),
            ("source too long", dict(source="s" * 65), "/source"),
            ("customer_id not a uuid", dict(customer_id="abc"), "/customer_id"),
        ]
        for name, fields, pointer in cases:
            with self.subTest(name):
                body = dict(interaction(cid), **fields)
                self.assertProblem(post("/v1/interactions", body), 422, "validation-failed",
                                   instance="/v1/interactions", pointers=[pointer])
        for field in ("occurred_at", "source", "external_id", "channel", "type"):
            with self.subTest(missing=field):
                body = interaction(cid)
                del body[field]
                self.assertProblem(post("/v1/interactions", body), 422, "validation-failed",
                                   pointers=["/" + field])
        self.assertEqual(self.get_profile(cid)["aggregates"]["interaction_count"], 0)
        # Boundaries that are allowed.
        self.ingest_ok(cid, tags=["t%d" % i for i in range(32)],
                       occurred_at="1900-01-01T00:00:00Z", amount=0, currency="EUR")
        self.ingest_ok(cid, occurred_at="2999-12-31T23:59:59Z", amount=999999999999.99,
                       currency="EUR")
        self.ingest_ok(cid, tags=["é" * 32], amount="999999999999.9999", currency="EUR")
        # null means the same as leaving the field out
        nulls = self.ingest_ok(cid, amount=None, cost=None, currency=None)
        # numbers are stored rounded to 4 decimals
        rounded = self.ingest_ok(cid, amount=1.23456, cost=0.00004, currency="USD")
        items = {i["interaction_id"]: i for i in self.all_items(cid)}
        it = items[nulls["interaction_id"]]
        self.assertEqual((it["amount"], it["cost"], it["currency"]), (None, None, None))
        it = items[rounded["interaction_id"]]
        self.assertAlmostEqual(it["amount"], 1.2346, places=9)
        self.assertAlmostEqual(it["cost"], 0.0, places=9)
        self.assertEqual(it["currency"], "USD")

    def test_customer_reference_rules(self):
        cid = self.create_customer()
        email = new_email()
        both = interaction(cid, identifiers=[email_id(email)])
        self.assertProblem(post("/v1/interactions", both), 422, "validation-failed")
        self.assertProblem(ingest(), 422, "validation-failed")  # neither
        self.assertProblem(get(query("/v1/customers", {"email": email})), 404, "not-found")

    def test_oversized_body(self):
        cid = str(uuid.uuid4())
        body = interaction(cid, payload={"blob": "x" * 70000})
        self.assertProblem(post("/v1/interactions", body), 413, "payload-too-large")
        self.assertProblem(post("/v1/interactions:batch",
                                {"items": [interaction(cid, payload={"b": "y" * 40000}),
                                           interaction(cid, payload={"b": "y" * 40000})]}),
                           413, "payload-too-large")
        # server is still fine afterwards
        self.assertJson(get("/health"), 200)

    def test_body_limit_boundary(self):
        cid = self.create_customer()

        def sized(n):
            body = interaction(cid, payload={"pad": ""})
            base = len(json.dumps(body, ensure_ascii=False).encode())
            body["payload"]["pad"] = "p" * (n - base)
            raw = json.dumps(body, ensure_ascii=False).encode()
            self.assertEqual(len(raw), n)
            return raw

        self.assertProblem(post("/v1/interactions", raw=sized(harness.BODY_LIMIT + 1)),
                           413, "payload-too-large")
        r = post("/v1/interactions", raw=sized(harness.BODY_LIMIT))
        self.assertEqual(self.assertJson(r, 201)["status"], "created")

    def test_unknown_customer(self):
        unknown = str(uuid.uuid4())
        self.assertProblem(profile(unknown), 404, "not-found",
                           instance="/v1/customers/%s" % unknown)
        self.assertProblem(ingest(unknown), 404, "not-found", instance="/v1/interactions")

    def test_bad_uuid_in_path(self):
        for bad in ("not-a-uuid", "1234", "0f8fad5b-d9cb-469f-a165-70867728950",
                    "0f8fad5b-d9cb-469f-a165-70867728950ez"):
            with self.subTest(bad):
                self.assertProblem(get("/v1/customers/" + bad), 400, "invalid-uuid")

    def test_invalid_utf8(self):
        raw = b'{"identifiers": [{"kind": "email", "value": "a\xff\xfe@example.com"}], ' \
              b'"source": "e2e"}'
        self.assertProblem(post("/v1/customers:resolve", raw=raw), 400, "invalid-utf8")
        cid = self.create_customer()
        raw2 = ('{"customer_id": "%s", "source": "e2e", "external_id": "u-%s", '
                '"channel": "web", "type": "visit", "occurred_at": "2026-01-01T00:00:00Z", '
                '"payload": {"note": "' % (cid, uid())).encode() + b'caf\xc3' + b'"}}'
        self.assertProblem(post("/v1/interactions", raw=raw2), 400, "invalid-utf8")
        self.assertEqual(self.get_profile(cid)["aggregates"]["interaction_count"], 0)
        self.assertProblem(get("/v1/customers?email=%FF%FE%40example.com"), 400,
                           "invalid-utf8")

    def test_valid_utf8_round_trip(self):
        cid = self.create_customer(traits={"first_name": "Zoë", "last_name": "日本"})
        self.assertTraits(self.get_profile(cid)["traits"], {"first_name": "Zoë",
                                                           "last_name": "日本"})

    def test_wrong_content_type(self):
        cid = self.create_customer()
        body = interaction(cid)
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            with self.subTest(ctype):
                r = post("/v1/interactions", body, content_type=ctype)
                self.assertProblem(r, 415, "unsupported-media-type")
        r = patch("/v1/customers/%s/traits" % cid, {"source": "x", "traits": {}},
                  content_type="text/plain")
        self.assertProblem(r, 415, "unsupported-media-type")
        self.assertEqual(self.all_items(cid), [])

    def test_unknown_route(self):
        for method, path in (("GET", "/v1/nope"), ("GET", "/"), ("POST", "/v2/interactions"),
                             ("GET", "/v1/customers/%s/nope" % uuid.uuid4())):
            with self.subTest(path=path):
                kw = {"json_body": {}} if method == "POST" else {}
                self.assertProblem(request(method, path, **kw), 404, "not-found")

    def test_method_not_allowed(self):
        cid = str(uuid.uuid4())
        cases = [("DELETE", "/v1/interactions", "POST"),
                 ("GET", "/v1/interactions", "POST"),
                 ("GET", "/v1/customers:resolve", "POST"),
                 ("PUT", "/v1/customers/%s" % cid, "GET"),  # DELETE erases (admin)
                 ("POST", "/v1/customers/%s/interactions" % cid, "GET"),
                 ("GET", "/v1/customers/%s/traits" % cid, "PATCH"),
                 ("POST", "/health", "GET")]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                kw = {"json_body": {}} if method == "POST" else {}
                r = request(method, path, **kw)
                self.assertProblem(r, 405, "method-not-allowed")
                allow = {m.strip().upper() for m in (r.headers.get("Allow") or "").split(",")}
                self.assertIn(allowed, allow, "Allow: %r" % r.headers.get("Allow"))
                self.assertNotIn(method, allow, "Allow: %r" % r.headers.get("Allow"))

    def test_no_partial_writes_on_resolve(self):
        good = new_email("partial")
        device = "dev-" + uid()
        r = resolve([email_id(good), {"kind": "device", "value": device},
                     email_id("broken-%s" % uid())])
        doc = self.assertProblem(r, 422, "validation-failed")
        self.assertTrue(any(e["pointer"].startswith("/identifiers/2") for e in doc["errors"]),
                        doc)
        self.assertProblem(get(query("/v1/customers", {"email": good})), 404, "not-found")
        self.assertProblem(get(query("/v1/customers", {"device": device})), 404, "not-found")
        # Invalid traits also reject the whole request.
        r2 = resolve([email_id(good)], traits={"birthday": "1990-02-30"})
        self.assertProblem(r2, 422, "validation-failed", pointers=["/traits/birthday"])
        self.assertProblem(get(query("/v1/customers", {"email": good})), 404, "not-found")
        # ... and an invalid interaction does not create its customer.
        self.assertProblem(ingest(identifiers=[email_id(good)], channel="fax"), 422,
                           "validation-failed", pointers=["/channel"])
        self.assertProblem(get(query("/v1/customers", {"email": good})), 404, "not-found")


# ---------------------------------------------------------------------------
# HTTP threading: worker threads, long routes on the long-route threads

KPI_PATH = query("/v1/kpis", {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"})


class ThreadingTests(ApiTestCase):
    def test_a_blocked_long_route_does_not_hold_up_its_worker(self):
        # One worker thread serves every connection and one long-route thread
        # runs the long routes. Two KPI requests (a long route): the first
        # waits on a lock held by another session, the second waits in the
        # server's queue, not in the database. Meanwhile the one worker must
        # answer a health check, /metrics and a profile read; both KPI
        # requests complete once the lock is gone.
        server = self.extra_server("--http-threads", "1", "--http-long-threads", "1")
        cid = self.create_customer()
        self.assertJson(get("/v1/customers/" + cid, port=server.port), 200)
        locker = self.lock_interactions()
        threads, results = self.start_kpis(server, 2)
        self.assertJson(get("/health", port=server.port, timeout=3), 200)
        self.assertEqual(self.assertJson(get("/v1/customers/" + cid, port=server.port,
                                             timeout=3), 200)["customer_id"], cid)
        # the queued request holds no database session
        self.assertEqual(harness.sql("SELECT count(*) FROM pg_stat_activity"
                                     " WHERE query LIKE '%kpis%' AND state = 'active'"
                                     " AND pid <> pg_backend_pid()"), "1")
        self.assertTrue(all(t.is_alive() for t in threads), "the KPI requests should wait")
        self.release(locker)
        self.assert_kpis_answered(threads, results)
        r = get("/metrics", key=None, port=server.port)
        self.assertIn("\ncrm_http_long_requests 0\n", r.body.decode())

    def test_sigterm_waits_for_a_running_long_request(self):
        # SIGTERM while a KPI request (a long route) waits on a lock: the
        # server keeps running until it is done, answers it, then exits 0.
        server = self.extra_server("--http-threads", "1", "--http-long-threads", "1")
        locker = self.lock_interactions()
        threads, results = self.start_kpis(server, 1)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(server.proc.poll(), "the server must wait for the KPI request")
        self.release(locker)
        threads[0].join(timeout=60)
        self.assertIn("customers", self.assertJson(results[0], 200))
        self.assertEqual(server.proc.wait(timeout=30), 0, server.log_tail())

    def assert_kpis_answered(self, threads, results):
        """start_kpis' requests all end with a KPI document."""
        for t in threads:
            t.join(timeout=60)
            self.assertFalse(t.is_alive())
        for r in results:
            self.assertIn("customers", self.assertJson(r, 200))

    def test_sigterm_past_the_drain_timeout_cancels_statements(self):
        # --drain-timeout 1, and a KPI request and a value run (which has no
        # statement timeout) blocked on a lock that is never released: one
        # second after SIGTERM their statements are cancelled (their
        # transactions roll back), both are answered 503, and the server
        # exits 1 (requests were still running at the drain timeout).
        server = harness.extra_server("--http-threads", "1", "--http-long-threads", "2",
                                      "--drain-timeout", "1")
        self.addCleanup(server.stop)
        self.lock_interactions()
        threads, results = self.start_kpis(server, 1)
        run = {}
        value_run = threading.Thread(target=lambda: run.setdefault(
            "r", post("/v1/value:recompute", {}, port=server.port, timeout=60)))
        value_run.start()
        self.wait_for("SELECT count(*) - 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND pid <> pg_backend_pid()")
        started = time.time()
        server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(server.proc.wait(timeout=20), 1, server.log_tail())
        self.assertLess(time.time() - started, 8)
        threads[0].join(timeout=10)
        value_run.join(timeout=10)
        self.assertProblem(results[0], 503, "service-unavailable")
        self.assertProblem(run["r"], 503, "service-unavailable")
        self.assertIn("requests still running after 1 s; their statements were cancelled",
                      server.log_tail())

    def start_kpis(self, server, count):
        """count KPI requests (a long route) on threads, while crm.interactions
        is locked: the first waits on the lock in the database, the others in
        the server's queue. Returns (threads, results)."""
        results = [None] * count

        def kpis(i):
            results[i] = get(KPI_PATH, port=server.port, timeout=60)
        threads = [threading.Thread(target=kpis, args=(i,)) for i in range(count)]
        threads[0].start()
        self.wait_for_kpis_on_lock()
        for t in threads[1:]:
            t.start()
        deadline = time.time() + 10
        while "\ncrm_http_long_requests %d\n" % count not in get(
                "/metrics", key=None, port=server.port).body.decode():
            self.assertLess(time.time(), deadline, "the KPI requests were not queued")
            time.sleep(0.05)
        return threads, results

    def test_a_full_long_route_queue_answers_503(self):
        # One long-route thread, room for one waiting request: with one KPI
        # request running (blocked on a lock) and one waiting, a third is
        # refused at once with 503 and Retry-After; the other two complete.
        server = self.extra_server("--http-threads", "1", "--http-long-threads", "1",
                                   "--http-long-queue", "1")
        locker = self.lock_interactions()
        threads, results = self.start_kpis(server, 2)
        r = get(KPI_PATH, port=server.port, timeout=5)
        self.assertProblem(r, 503, "service-unavailable")
        self.assertEqual(r.headers.get("Retry-After"), "1")
        metrics = get("/metrics", key=None, port=server.port).body.decode()
        self.assertIn("\ncrm_http_long_refused_total 1\n", metrics)
        self.assertIn("\ncrm_http_long_requests 2\n", metrics)
        self.release(locker)
        self.assert_kpis_answered(threads, results)

    def test_sigterm_refuses_queued_long_requests(self):
        # SIGTERM with one KPI request running (blocked on a lock) and one
        # waiting in the queue: the waiting one is answered 503 at once (it
        # had not started; the client may retry elsewhere), the running one
        # completes, then the server exits 0.
        server = self.extra_server("--http-threads", "1", "--http-long-threads", "1")
        locker = self.lock_interactions()
        threads, results = self.start_kpis(server, 2)
        server.proc.send_signal(signal.SIGTERM)
        threads[1].join(timeout=10)
        self.assertFalse(threads[1].is_alive(), "the queued request should be answered")
        self.assertProblem(results[1], 503, "service-unavailable")
        self.assertEqual(results[1].headers.get("Retry-After"), "1")
        self.assertTrue(threads[0].is_alive(), "the running request waits for the lock")
        self.assertIsNone(server.proc.poll(), "the server must wait for the running request")
        self.release(locker)
        threads[0].join(timeout=60)
        self.assertIn("customers", self.assertJson(results[0], 200))
        self.assertEqual(server.proc.wait(timeout=30), 0, server.log_tail())

    def test_export_pages_are_fetched_off_the_worker(self):
        # A segment export of 60,000 customers (60 pages, 7 MB: more than the
        # kernel lets the server send ahead of a client that does not read).
        # Its first page is fetched by the handler; the client then reads
        # slowly, through a small receive buffer, while the table the page
        # query reads is locked: a later page's query waits on the lock on a
        # long-route thread, and the one HTTP worker keeps answering.
        server = self.extra_server("--http-threads", "1", "--http-long-threads", "1")
        count = 60000
        marker = "export-" + uid()
        # Set up in SQL: the API would take a minute under the sanitizers.
        harness.sql("WITH c AS (INSERT INTO crm.customers (customer_id) SELECT gen_random_uuid()"
                    " FROM generate_series(1, %d) RETURNING customer_id)"
                    " INSERT INTO crm.customer_needs (customer_id, need, n, first_at, last_at)"
                    " SELECT customer_id, '%s', 1, now(), now() FROM c" % (count, marker))
        self.addCleanup(self.drop_need_customers, marker)
        seg = self.assertJson(post("/v1/segments", {"name": marker,
                                                    "rule": {"need": marker}}), 201)
        self.addCleanup(harness.request, "DELETE", "/v1/segments/" + seg["segment_id"])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((harness.HOST, server.port))
        conn = http.client.HTTPConnection(harness.HOST, server.port, timeout=60)
        conn.sock = sock
        conn.request("GET", "/v1/segments/%s/export" % seg["segment_id"],
                     headers={"Authorization": "Bearer " + harness.ADMIN_KEY})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        head = resp.read(1000)
        locker = self.lock_interactions("crm.customer_needs")
        rest = {}
        reader = threading.Thread(target=lambda: rest.setdefault("body", resp.read()))
        reader.start()
        self.wait_for("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND query LIKE '%customer_needs%' AND pid <> pg_backend_pid()")
        self.assertJson(get("/health", port=server.port, timeout=3), 200)
        metrics = get("/metrics", key=None, port=server.port, timeout=3).body.decode()
        self.assertIn("\ncrm_http_long_requests 1\n", metrics)
        self.assertTrue(reader.is_alive(), "the export should wait for its next page")
        self.release(locker)
        reader.join(timeout=60)
        self.assertFalse(reader.is_alive())
        conn.close()
        text = (head + rest["body"]).decode()
        self.assertTrue(text.endswith("\n"))
        ids = [json.loads(line)["customer_id"] for line in text.split("\n")[:-1]]
        self.assertEqual(len(ids), count)
        self.assertEqual(len(set(ids)), count)

    def test_one_thread_per_connection_still_serves(self):
        server = self.extra_server("--http-threads", "0")
        cid = self.create_customer()
        self.assertEqual(self.assertJson(get("/v1/customers/" + cid, port=server.port),
                                         200)["customer_id"], cid)
        r = get(KPI_PATH, port=server.port)
        self.assertIn("customers", self.assertJson(r, 200))

    def test_https_with_worker_threads(self):
        # A self-signed certificate for 127.0.0.1; the client verifies it.
        # Served by the default worker threads, a long route included (its
        # connection is suspended and resumed under TLS).
        tmp = tempfile.mkdtemp(prefix="crm-e2e-tls-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        context = ssl.create_default_context(cafile=cert)
        server = self.extra_server("--tls-cert", cert, "--tls-key", key, tls_context=context)
        cid = self.create_customer()
        r = get("/v1/customers/" + cid, port=server.port, tls_context=context)
        self.assertEqual(self.assertJson(r, 200)["customer_id"], cid)
        r = get(KPI_PATH, port=server.port, tls_context=context)
        self.assertIn("customers", self.assertJson(r, 200))
        # plain HTTP on the HTTPS port gets no HTTP answer
        with self.assertRaises((OSError, http.client.HTTPException)):
            get("/health", port=server.port, timeout=3)

    def extra_server(self, *args, **kw):
        """harness.extra_server, stopped when the test ends (it must exit 0)."""
        server = harness.extra_server(*args, **kw)
        self.addCleanup(lambda: self.assertEqual(server.stop(), 0, server.log_tail()))
        return server

    def lock_interactions(self, table="crm.interactions"):
        """A psql session holding table (by default crm.interactions: KPI
        requests wait on it) in ACCESS EXCLUSIVE mode; returns once the lock
        is granted."""
        locker = subprocess.Popen(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", os.environ["CRM_DATABASE_URL"]],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        locker.stdin.write("BEGIN;\nLOCK TABLE %s IN ACCESS EXCLUSIVE MODE;\n" % table)
        locker.stdin.flush()
        self.addCleanup(self.end_session, locker)
        self.wait_for("SELECT count(*) FROM pg_locks WHERE relation = '%s'::regclass"
                      " AND mode = 'AccessExclusiveLock' AND granted" % table)
        return locker

    def drop_need_customers(self, need):
        """Remove the customers a test made in SQL with this need (the other
        suites count customers)."""
        ids = "SELECT customer_id FROM crm.customer_needs WHERE need = '%s'" % need
        # Without the foreign-key checks (session_replication_role): these
        # rows are referenced by nothing else, and checking each of 60,000
        # deletes against every table that refers to customers took the
        # 60 s psql timeout on a loaded machine.
        harness.sql("SET session_replication_role = replica; CREATE TEMP TABLE gone AS %s;"
                    " DELETE FROM crm.customer_needs WHERE need = '%s';"
                    " DELETE FROM crm.profile_cache WHERE customer_id IN (SELECT * FROM gone);"
                    " DELETE FROM crm.customers WHERE customer_id IN (SELECT * FROM gone)"
                    % (ids, need))

    def end_session(self, locker):
        """A lock session the test did not release (it failed first)."""
        if locker.poll() is None:
            locker.kill()
            locker.wait()

    def release(self, locker):
        """End lock_interactions' transaction and session."""
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(timeout=30)

    def wait_for_kpis_on_lock(self):
        self.wait_for("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                      " AND query LIKE '%kpis%'")

    def wait_for(self, count_sql):
        """Poll until count_sql returns a count above zero (10 s at most)."""
        deadline = time.time() + 10
        while int(harness.sql(count_sql)) == 0:
            self.assertLess(time.time(), deadline, "timed out waiting for: " + count_sql)
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(harness.main())
