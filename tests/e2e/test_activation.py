#!/usr/bin/env python3
"""End-to-end tests of activation (docs/activation.md): the change feed
(GET /v1/events) and webhooks (/v1/webhooks) delivered to a real receiver
on loopback, written here with its own Standard Webhooks signature check
(hmac + base64 from the specification, not the server's code).

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_activation.py [TestClass[.test_method] ...]

The suite's server permits 127.0.0.1 as a webhook destination and retries
fast (--webhook-retry-base-ms 200, max 1000, horizon 8 s, poll 100 ms), so
a receiver that is down for a while sees every event once it is back. It
runs no scheduled moments run (--moments-period 0): moment.due events come
from the runs the tests ask for (POST /v1/moments:run), for dates away from
today. The database need not be empty: every check looks at the test's own
customers.
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import random
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, patch, post, query, request, uid  # noqa: E402

HORIZON = 8
SERVER_ARGS = ("--webhook-allow-hosts", "127.0.0.1", "--webhook-retry-base-ms", "200",
               "--webhook-retry-max-ms", "1000", "--webhook-retry-horizon", str(HORIZON),
               "--webhook-poll-ms", "100", "--webhook-timeout", "3", "--webhook-lease", "6",
               "--webhook-workers", "2", "--moments-period", "0")
WAIT = 30.0  # generous bound for anything asynchronous

# The types every customer change of do_everything writes; segment.entered /
# segment.exited (live membership, tests/e2e/test_membership.py) come only
# from segments that select the customer, and are left out of these checks.
SEGMENT_TYPES = {"segment.entered", "segment.exited"}
ALL_TYPES = ["customer.created", "customer.merged", "customer.unmerged", "customer.erased",
             "identifier.added", "traits.changed", "interaction.created", "consent.changed",
             "preferences.changed", "value.tier_changed", "customer.stage_changed"]


def setUpModule():
    harness.SERVER = harness.extra_server(*SERVER_ARGS)


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# A webhook receiver with its own signature check (Standard Webhooks 1.0)

def verify_signature(secret, msg_id, timestamp, body, header):
    """True when one of the space-separated v1 signatures in header is the
    HMAC-SHA256 of "{id}.{timestamp}.{body}" with the base64-decoded secret."""
    if not secret.startswith("whsec_"):
        return False
    key = base64.b64decode(secret[len("whsec_"):])
    signed = ("%s.%s." % (msg_id, timestamp)).encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for part in header.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST. mode: 'ok' (204),
    'fail' (500). secret: the webhook's, for the signature check."""

    def __init__(self, port=0):
        self.records = []
        self.lock = threading.Lock()
        self.mode = "ok"
        self.secret = None
        self.requests = 0
        self.hung = 0
        self.connections = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections.append(self.connection)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with receiver.lock:
                    receiver.requests += 1
                    mode = receiver.mode
                if mode == "hang":  # hold the request (a receiver that is slow to answer)
                    with receiver.lock:
                        receiver.hung += 1
                    deadline = time.monotonic() + 10
                    while receiver.mode == "hang" and time.monotonic() < deadline:
                        time.sleep(0.05)
                    mode = "fail"
                if mode == "ok":
                    msg_id = self.headers.get("webhook-id", "")
                    ts = self.headers.get("webhook-timestamp", "")
                    sig = self.headers.get("webhook-signature", "")
                    ok = (receiver.secret is not None and re.fullmatch(r"\d+", ts) is not None
                          and abs(int(ts) - time.time()) < 300
                          and verify_signature(receiver.secret, msg_id, ts, body, sig))
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        doc = None
                    with receiver.lock:
                        receiver.records.append({"id": msg_id, "verified": ok, "body": doc,
                                                 "ct": self.headers.get("Content-Type")})
                    self.send_response(204)
                else:
                    self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def stop(self):
        """Stop listening and drop every open (kept-alive) connection, as a
        receiver that goes down does."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for c in self.connections:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def bodies(self):
        with self.lock:
            return [r["body"] for r in self.records]

    def wait_for(self, predicate, timeout=WAIT):
        """Wait until predicate(records) is true; returns the records."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                recs = list(self.records)
            if predicate(recs):
                return recs
            if time.monotonic() > deadline:
                raise AssertionError("receiver: condition not met within %.0f s; got %d "
                                     "records: %r" % (timeout, len(recs),
                                                      [(r["body"] or {}).get("type")
                                                       for r in recs][-40:]))
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# helpers

def must(r, status):
    if r.status != status:
        raise AssertionError("expected %d, got %d: %r" % (status, r.status, r.body))
    return r.body


def new_customer(traits=None):
    email = "act-%s@example.com" % uid()
    r = harness.resolve([{"kind": "email", "value": email}], traits=traits)
    if r.status not in (200, 201):
        raise AssertionError("resolve: %d %r" % (r.status, r.body))
    return r.body["customer_id"], email


def feed_page(after=None, types=None, limit=None, **kw):
    params = {}
    if after is not None:
        params["after"] = after
    if types is not None:
        params["types"] = types
    if limit is not None:
        params["limit"] = str(limit)
    return get(query("/v1/events", params), **kw)


def feed_tail():
    """The cursor at the current end of the feed."""
    cursor = None
    while True:
        body = must(feed_page(after=cursor, limit=1000), 200)
        cursor = body["next_cursor"]
        if not body["items"]:
            return cursor


def feed_since(cursor, types=None, limit=1000, until=None):
    """Every event after cursor (until the feed is exhausted): (items, last cursor)."""
    items = []
    while True:
        body = must(feed_page(after=cursor, types=types, limit=limit), 200)
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if not body["items"]:
            return items, cursor


def feed_wait(cursor, predicate, types=None, timeout=WAIT):
    """Read the feed after cursor until predicate(items) holds (events of a
    transaction still running elsewhere show up once it ends)."""
    deadline = time.monotonic() + timeout
    items = []
    while True:
        new, cursor = feed_since(cursor, types=types)
        items.extend(new)
        if predicate(items):
            return items
        if time.monotonic() > deadline:
            raise AssertionError("feed: condition not met; %d items" % len(items))
        time.sleep(0.1)


def make_key(role):
    return must(post("/v1/admin/keys", {"name": "act-" + uid(), "role": role,
                                        **({"namespace": "actp"} if role == "partner" else {})}),
                201)["api_key"]


def drop_webhook(webhook_id):
    """Delete a test's webhook whatever happened, so that a failed test does
    not leave an endpoint behind that every later event fans out to."""
    try:
        request("DELETE", "/v1/webhooks/%s" % webhook_id)
    except OSError:
        pass


def delivered_item(webhook_id, timeout=WAIT):
    """The webhook's latest delivery once it is recorded as delivered: the
    receiver logs a request before it answers, the server records the
    outcome after the answer, so the test waits for that record."""
    deadline = time.monotonic() + timeout
    while True:
        d = must(get("/v1/webhooks/%s/deliveries" % webhook_id), 200)["items"][0]
        if d["status"] == "delivered" or time.monotonic() > deadline:
            return d
        time.sleep(0.05)


def create_webhook(url, **fields):
    body = {"url": url}
    body.update(fields)
    return post("/v1/webhooks", body)


def do_everything():
    """One customer through every event type in scope; returns (ids, email)."""
    a, email = new_customer({"first_name": "Ann", "attributes": {"shoe": 38}})
    b, _ = new_customer()
    must(harness.ingest(customer_id=a, channel="store", type="purchase", amount=50,
                        currency="EUR", payload={"note": "secret-note-" + uid()}), 201)
    must(patch("/v1/customers/%s/traits" % a, {"source": "crm", "traits": {"last_name": "Lee"}}),
         200)
    must(post("/v1/customers/%s/consents" % a, {"purpose": "marketing", "channel": "email",
                                                 "status": "granted", "source": "web"}), 201)
    must(patch("/v1/customers/%s/preferences" % a, {"source": "web",
                                                     "preferences": {"language": "fr"}}), 200)
    must(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b, "reason": "same"}), 200)
    must(post("/v1/admin/unmerge", {"customer_id": b, "reason": "not the same"}), 200)
    test_value.make_fit_population()  # a live run needs data BG/NBD can fit
    must(post("/v1/value:recompute", {}), 200)
    return a, b, email


# ---------------------------------------------------------------------------

class FeedTests(harness.CrmTestCase):

    def test_every_type_in_order_with_a_cursor(self):
        start = feed_tail()
        a, b, _ = do_everything()
        must(request("DELETE", "/v1/customers/%s" % b), 200)
        mine = lambda items: [e for e in items if e["customer_id"] in (a, b)  # noqa: E731
                              and e["type"] not in SEGMENT_TYPES]
        items = mine(feed_wait(start, lambda it: {e["type"] for e in mine(it)} >= set(ALL_TYPES)))
        self.assertEqual({e["type"] for e in items}, set(ALL_TYPES))
        for e in items:
            self.assertRegex(e["id"], r"^evt_\d+$")
            self.assertEqual(e["schema_version"], 1)
            self.assertTimestamp(e["occurred_at"])
            self.assertIsInstance(e["data"], dict)
        inter = [e for e in items if e["type"] == "interaction.created"][0]
        self.assertEqual((inter["data"]["channel"], inter["data"]["type"]), ("store", "purchase"))
        tier = [e for e in items if e["type"] == "value.tier_changed" and e["customer_id"] == a]
        self.assertTrue(tier and tier[0]["data"]["to"], tier)
        # The same events page by page, with a small limit, in the same order.
        paged, cursor = [], start
        while True:
            body = must(feed_page(after=cursor, limit=3), 200)
            self.assertLessEqual(len(body["items"]), 3)
            paged.extend(body["items"])
            if not body["items"]:
                # the same position, with the time of the answer
                self.assertEqual(body["next_cursor"].rsplit("-", 1)[0], cursor.rsplit("-", 1)[0])
                self.assertGreaterEqual(int(body["next_cursor"].rsplit("-", 1)[1]),
                                        int(cursor.rsplit("-", 1)[1]))
                break
            cursor = body["next_cursor"]
        self.assertEqual([e["id"] for e in mine(paged)], [e["id"] for e in items])
        # Causal order within the customer: created before its identifier, the
        # merge before the unmerge, the erasure last.
        order = [e["type"] for e in items if e["customer_id"] == b]
        self.assertLess(order.index("customer.created"), order.index("identifier.added"))
        self.assertEqual(order[-1], "customer.erased")
        order_a = [e["type"] for e in items if e["customer_id"] == a]
        self.assertLess(order_a.index("customer.merged"), len(order_a))

    def test_types_filter(self):
        start = feed_tail()
        a, _ = new_customer({"first_name": "Tia"})
        must(harness.ingest(customer_id=a), 201)
        items = feed_wait(start, lambda it: any(e["customer_id"] == a for e in it),
                          types="interaction.created,traits.changed")
        self.assertTrue(all(e["type"] in ("interaction.created", "traits.changed")
                            for e in items), items)
        mine = {e["type"] for e in items if e["customer_id"] == a}
        items = feed_wait(start, lambda it: {e["type"] for e in it if e["customer_id"] == a}
                          >= {"interaction.created", "traits.changed"},
                          types="interaction.created,traits.changed")
        mine = {e["type"] for e in items if e["customer_id"] == a}
        self.assertEqual(mine, {"interaction.created", "traits.changed"})
        self.assertProblem(feed_page(types="segment.changed"), 400, "invalid-query")
        self.assertProblem(feed_page(types=""), 400, "invalid-query")

    def test_batch_ingest_writes_its_events(self):
        """A batch (one set-based statement) writes an interaction event per
        item and the events of the customers it creates."""
        start = feed_tail()
        emails = ["batch-%s@example.com" % uid() for _ in range(3)]
        items = [harness.interaction(identifiers=[{"kind": "email", "value": e}],
                                     channel="web", type="page_view") for e in emails]
        body = must(post("/v1/interactions:batch", {"items": items}), 200)
        self.assertEqual(body["created"], 3, body)
        ids = {r["interaction_id"] for r in body["results"]}
        got = feed_wait(start, lambda it: ids <= {e["data"].get("interaction_id") for e in it})
        added = {e["data"].get("value") for e in got if e["type"] == "identifier.added"}
        self.assertTrue(set(emails) <= added, added)
        created = {e["customer_id"] for e in got if e["type"] == "customer.created"}
        owners = {e["customer_id"] for e in got if e["data"].get("interaction_id") in ids}
        self.assertEqual(len(owners), 3)
        self.assertTrue(owners <= created)

    def test_cursor_too_old_is_410_and_garbage_400(self):
        old = "1-1-%d" % (time.time() - 8 * 86400)
        self.assertProblem(feed_page(after=old), 410, "cursor-expired")
        recent = "1-1-%d" % (time.time() - 3600)
        self.assertJson(feed_page(after=recent), 200)
        for bad in ("abc", "1-1", "1-1-1-1", "x-1-1", "1;--1-1"):
            self.assertProblem(feed_page(after=bad), 400, "invalid-query")
        self.assertProblem(feed_page(limit=0), 400, "invalid-query")
        self.assertProblem(feed_page(limit=1001), 400, "invalid-query")
        self.assertProblem(get("/v1/events?cursor=1"), 400, "invalid-query")

    def test_retention_of_a_shorter_server(self):
        """With --event-retention 2, a cursor of an event 3 s old answers 410."""
        start = feed_tail()
        a, _ = new_customer()
        items = feed_wait(start, lambda it: any(e["customer_id"] == a for e in it))
        body = must(feed_page(after=start, limit=1), 200)
        cursor = body["next_cursor"]
        short = harness.extra_server("--event-retention", "2", "--webhook-workers", "0")
        try:
            time.sleep(3.2)
            self.assertProblem(feed_page(after=cursor, port=short.port), 410, "cursor-expired")
        finally:
            short.stop()
        self.assertTrue(items)

    def test_erasure_scrubs_personal_data_from_retained_events(self):
        start = feed_tail()
        secret_name = "Zelda" + uid()
        a, email = new_customer({"first_name": secret_name})
        note = "private-note-" + uid()
        must(harness.ingest(customer_id=a, payload={"note": note}), 201)
        must(patch("/v1/customers/%s/preferences" % a,
                   {"source": "web", "preferences": {"custom": {"nick": secret_name}}}), 200)
        before = feed_wait(start, lambda it: sum(e["customer_id"] == a for e in it) >= 5)
        text = json.dumps([e for e in before if e["customer_id"] == a])
        for s in (email, secret_name, note):
            self.assertIn(s, text)  # the feed did carry them
        must(request("DELETE", "/v1/customers/%s" % a), 200)
        after = feed_wait(start, lambda it: any(e["type"] == "customer.erased"
                                                and e["customer_id"] == a for e in it))
        text = json.dumps([e for e in after if e["customer_id"] == a])
        for s in (email, secret_name, note):
            self.assertNotIn(s, text)
        self.assertIn("identifier.added", text)  # the events stay, without the data

    def test_roles(self):
        for role, status in (("marketing", 200), ("admin", 200), ("front_office", 403),
                             ("call_center", 403), ("partner", 403)):
            r = feed_page(limit=1, key=make_key(role))
            self.assertEqual(r.status, status, (role, r.body))
        r = get("/v1/webhooks", key=make_key("marketing"))
        self.assertProblem(r, 403, "forbidden")
        self.assertProblem(feed_page(key=None), 401, "unauthorized")


class WebhookTests(harness.CrmTestCase):

    def setUp(self):
        self.receivers = []
        self.hooks = []

    def tearDown(self):
        for h in self.hooks:
            request("DELETE", "/v1/webhooks/%s" % h)
        for r in self.receivers:
            r.stop()

    def receiver(self):
        r = Receiver()
        self.receivers.append(r)
        return r

    def hook(self, receiver, **fields):
        body = self.assertJson(create_webhook(receiver.url, **fields), 201)
        self.hooks.append(body["webhook_id"])
        receiver.secret = body["secret"]
        return body

    def test_crud_and_secret_shown_once(self):
        rec = self.receiver()
        r = create_webhook(rec.url, event_types=["customer.created"], description="crm test")
        body = self.assertJson(r, 201)
        self.hooks.append(body["webhook_id"])
        self.assertRegex(body["secret"], r"^whsec_[A-Za-z0-9+/]{32}$")
        self.assertEqual(len(base64.b64decode(body["secret"][6:])), 24)
        self.assertEqual(r.headers.get("Content-Location"), "/v1/webhooks/" + body["webhook_id"])
        self.assertEqual(body["event_types"], ["customer.created"])
        self.assertTrue(body["enabled"])
        got = self.assertJson(get("/v1/webhooks/" + body["webhook_id"]), 200)
        self.assertNotIn("secret", got)
        self.assertEqual(got["url"], rec.url)
        listed = self.assertJson(get("/v1/webhooks"), 200)["items"]
        self.assertIn(body["webhook_id"], [w["webhook_id"] for w in listed])
        self.assertTrue(all("secret" not in w for w in listed))
        p = self.assertJson(patch("/v1/webhooks/" + body["webhook_id"],
                                  {"enabled": False, "event_types": None}), 200)
        self.assertFalse(p["enabled"])
        self.assertIsNone(p["event_types"])
        self.assertProblem(patch("/v1/webhooks/" + body["webhook_id"], {"secret": "x"}), 422,
                           "validation-failed", pointers=["/secret"])
        self.assertProblem(create_webhook(rec.url, event_types=["segment.changed"]), 422,
                           "validation-failed", pointers=["/event_types"])
        self.assertJson(request("DELETE", "/v1/webhooks/" + body["webhook_id"]), 200)
        self.assertProblem(get("/v1/webhooks/" + body["webhook_id"]), 404, "not-found")
        self.assertProblem(request("DELETE", "/v1/webhooks/" + body["webhook_id"]), 404,
                           "not-found")

    def test_url_validation(self):
        for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
                    "http://192.168.1.10/", "ftp://example.com/", "http://user:pw@127.0.0.1/",
                    "not a url", "http://[fe80::1]/"):
            r = create_webhook(url)
            self.assertProblem(r, 422, "validation-failed", pointers=["/url"])
        # Without an allow-list, loopback is refused too (localhost resolves to it).
        plain = harness.extra_server("--webhook-workers", "0")
        try:
            for url in ("http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/",
                        "http://10.0.0.1/", "http://169.254.1.1/"):
                r = request("POST", "/v1/webhooks", json_body={"url": url}, port=plain.port)
                self.assertProblem(r, 422, "validation-failed", pointers=["/url"])
                self.assertIn("address", r.body["errors"][0]["detail"])
        finally:
            plain.stop()

    def test_every_event_type_arrives_signed(self):
        rec = self.receiver()
        self.hook(rec)
        a, b, _ = do_everything()
        must(request("DELETE", "/v1/customers/%s" % b), 200)

        def mine(recs):
            return [r for r in recs if r["body"] and r["body"]["customer_id"] in (a, b)
                    and r["body"]["type"] not in SEGMENT_TYPES]
        recs = rec.wait_for(lambda rs: {r["body"]["type"] for r in mine(rs)} >= set(ALL_TYPES))
        for r in mine(recs):
            self.assertTrue(r["verified"], r)
            self.assertEqual(r["id"], r["body"]["id"])
            self.assertTrue(r["ct"].startswith("application/json"))
        # A signature check written from the spec rejects a tampered body.
        self.assertFalse(verify_signature(rec.secret, "evt_1", "1", b"{}", "v1,AAAA"))

    def test_receiver_down_then_back_loses_nothing_and_keeps_order(self):
        rec = self.receiver()
        hook = self.hook(rec, event_types=["interaction.created", "traits.changed"])
        rec.mode = "fail"
        a, _ = new_customer()
        c, _ = new_customer()
        expected = set()
        for i in range(10):
            for cid in (a, c):
                body = must(harness.ingest(customer_id=cid, external_id="down-%s" % uid()), 201)
                expected.add(body["interaction_id"])
            if i == 4:
                must(patch("/v1/customers/%s/traits" % a,
                           {"source": "crm", "traits": {"last_name": "n%d" % i}}), 200)
        rec.wait_for(lambda rs: rec.requests >= 6)  # failing attempts were made
        # Down hard: the port refuses connections for a while, then comes back.
        port = rec.port
        rec.stop()
        self.receivers.remove(rec)
        time.sleep(1.0)
        back = Receiver(port=port)
        self.receivers.append(back)
        back.secret = rec.secret
        recs = back.wait_for(lambda rs: expected <= {
            r["body"]["data"].get("interaction_id") for r in rs if r["body"]})
        self.assertTrue(all(r["verified"] for r in recs))
        # Order per customer: a customer's events arrive in feed order.
        for cid in (a, c):
            seqs = [int(r["body"]["id"][4:]) for r in recs if r["body"]["customer_id"] == cid]
            firsts = []
            for s in seqs:
                if s not in firsts:
                    firsts.append(s)
            self.assertEqual(firsts, sorted(firsts), cid)
        deliveries = self.assertJson(get(query("/v1/webhooks/%s/deliveries" % hook["webhook_id"],
                                               {"limit": "1000"})), 200)["items"]
        self.assertEqual(len(deliveries), 21)
        deadline = time.monotonic() + WAIT
        while any(d["status"] != "delivered" for d in deliveries) and time.monotonic() < deadline:
            time.sleep(0.2)
            deliveries = self.assertJson(get(query(
                "/v1/webhooks/%s/deliveries" % hook["webhook_id"], {"limit": "1000"})), 200)["items"]
        self.assertEqual({d["status"] for d in deliveries}, {"delivered"})
        self.assertTrue(any(d["attempts"] > 1 for d in deliveries), deliveries)
        metrics = get("/metrics", key=None).body.decode()
        m = re.search(r'crm_webhook_deliveries_total\{outcome="delivered"\} (\d+)', metrics)
        self.assertTrue(m and int(m.group(1)) >= 21, metrics[-800:])
        m = re.search(r'crm_webhook_deliveries_total\{outcome="retry"\} (\d+)', metrics)
        self.assertTrue(m and int(m.group(1)) >= 1)
        self.assertIn("crm_webhook_queue_depth", metrics)
        self.assertIn("crm_webhook_oldest_undelivered_seconds", metrics)

    def test_dead_letter_and_replay(self):
        rec = self.receiver()
        hook = self.hook(rec, event_types=["customer.created"])
        rec.mode = "fail"
        a, _ = new_customer()
        path = "/v1/webhooks/%s/deliveries" % hook["webhook_id"]
        deadline = time.monotonic() + HORIZON + WAIT
        while True:
            items = self.assertJson(get(path), 200)["items"]
            if items and items[0]["status"] == "dead":
                break
            self.assertLess(time.monotonic(), deadline, items)
            time.sleep(0.3)
        d = items[0]
        self.assertEqual(d["customer_id"], a)
        self.assertGreater(d["attempts"], 1)
        self.assertEqual(d["last_status"], 500)
        self.assertIsNone(d["next_attempt_at"])
        self.assertEqual(self.assertJson(get(query(path, {"status": "dead"})), 200)["items"][0]
                         ["delivery_id"], d["delivery_id"])
        rec.mode = "ok"
        r = post(path + ":replay", {"delivery_id": d["delivery_id"]})
        self.assertEqual(self.assertJson(r, 202)["status"], "pending")
        recs = rec.wait_for(lambda rs: any(x["body"] and x["body"]["customer_id"] == a
                                           for x in rs))
        self.assertTrue(recs[0]["verified"])
        self.assertProblem(post(path + ":replay", {"delivery_id": 999999999}), 404, "not-found")
        self.assertProblem(post(path + ":replay", {"delivery_id": "x"}), 422, "validation-failed")

    def test_a_slow_receiver_does_not_hold_up_the_others(self):
        """Each worker keeps several attempts in flight: while deliveries to
        one receiver hang, the same events reach a healthy receiver. The
        suite's server is replaced for this test by one with a single worker
        and a 20 s attempt timeout, so a worker sending one attempt at a time
        could deliver the healthy receiver's events only after the hanging
        attempts had ended and been recorded."""
        args = list(SERVER_ARGS)
        args[args.index("--webhook-workers") + 1] = "1"
        args[args.index("--webhook-timeout") + 1] = "20"
        args[args.index("--webhook-lease") + 1] = "60"  # longer than an attempt
        harness.SERVER.stop()
        harness.SERVER = harness.extra_server(*args)
        slow, fast = self.receiver(), self.receiver()
        slow_hook = self.hook(slow, event_types=["customer.created"])["webhook_id"]
        self.hook(fast, event_types=["customer.created"])
        slow.mode = "hang"
        try:
            ids = [new_customer()[0] for _ in range(4)]
            fast.wait_for(lambda rs: set(ids) <= {r["body"]["customer_id"] for r in rs},
                          timeout=WAIT)
            # every slow attempt still hangs: none has an outcome recorded
            recorded = harness.sql("SELECT count(*) FROM crm.webhook_deliveries WHERE "
                                   "webhook_id = %s AND last_attempt_at IS NOT NULL"
                                   % harness.lit(slow_hook))
            self.assertGreaterEqual(slow.hung, 2)
            self.assertEqual(recorded, "0")
        finally:
            slow.mode = "ok"
            harness.SERVER.stop()
            harness.SERVER = harness.extra_server(*SERVER_ARGS)

    def test_disabled_webhook_receives_nothing(self):
        on, off = self.receiver(), self.receiver()
        self.hook(on, event_types=["customer.created"])
        self.hook(off, event_types=["customer.created"], enabled=False)
        a, _ = new_customer()
        on.wait_for(lambda rs: any(r["body"]["customer_id"] == a for r in rs))
        time.sleep(0.5)
        self.assertEqual(off.requests, 0)


# ---------------------------------------------------------------------------
# Moments as events (docs/customize.md, "Moments as events"): the suite's
# servers run with --moments-period 0, so moment.due events come only from
# the runs the tests ask for (POST /v1/moments:run), except in
# test_scheduled_run_on_two_instances.

def utc_today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def run_day(offset=None):
    """A run date within the allowed year around today, far enough from
    today that no scheduled run writes its moments while the test runs."""
    if offset is None:
        offset = random.randint(20, 320)
    return utc_today() + datetime.timedelta(days=offset)


def born(day, year=1990):
    """A birthday with day's month and day (never 29 February: run dates stay
    within a year of today and 2027 is no leap year)."""
    return "%04d-%02d-%02d" % (year, day.month, day.day)


def run_moments(day, **kw):
    return post("/v1/moments:run", {"date": day.isoformat()}, **kw)


def grant(cid, purpose="marketing", channel="email", status="granted"):
    must(post("/v1/customers/%s/consents" % cid,
              {"purpose": purpose, "channel": channel, "status": status, "source": "e2e",
               "occurred_at": "2026-01-01T00:00:00Z"}), 201)


def moment_events(start, cids, wait_for=None):
    """The moment.due events after start of the customers cids; with
    wait_for, read until that customer has one (the events of a run are
    written in one transaction, so the others' are there too)."""
    pred = (lambda it: any(e["customer_id"] == wait_for for e in it)) if wait_for else None
    items = feed_wait(start, pred, types="moment.due") if pred else \
        feed_since(start, types="moment.due")[0]
    return [e for e in items if e["customer_id"] in cids]


class MomentEventTests(harness.CrmTestCase):

    def test_birthday_fires_once_whatever_the_runs(self):
        day = run_day()
        start = feed_tail()
        a, _ = new_customer({"birthday": born(day)})
        grant(a)
        first = must(run_moments(day), 200)
        self.assertEqual(first["date"], day.isoformat())
        self.assertGreaterEqual(first["events"], 1)
        again = must(run_moments(day), 200)
        self.assertEqual(again, {"date": day.isoformat(), "events": 0})
        mine = moment_events(start, {a}, wait_for=a)
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["data"], {"kind": "birthday", "date": day.isoformat(),
                                           "years": day.year - 1990, "purpose": "marketing"})
        self.assertEqual(harness.sql("SELECT count(*) FROM crm.moment_ledger WHERE customer_id = "
                                     + harness.lit(a)), "1")

    def test_two_runs_racing_write_one_event(self):
        day = run_day()
        start = feed_tail()
        a, _ = new_customer({"birthday": born(day, 1985)})
        grant(a, channel="any")
        results = []

        def one():
            results.append(run_moments(day))
        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [200, 200], [r.body for r in results])
        counts = sorted(r.body["events"] for r in results)
        self.assertEqual(counts[0], 0, counts)  # the other run wrote them all
        self.assertGreaterEqual(counts[1], 1, counts)
        mine = moment_events(start, {a}, wait_for=a)
        self.assertEqual(len(mine), 1, mine)

    def test_no_consent_no_event_until_it_is_given(self):
        day = run_day()
        start = feed_tail()
        control, _ = new_customer({"birthday": born(day)})
        grant(control)
        none, _ = new_customer({"birthday": born(day)})
        withdrawn, _ = new_customer({"birthday": born(day)})
        grant(withdrawn, channel="any")
        grant(withdrawn, channel="any", status="withdrawn")
        service_only, _ = new_customer({"birthday": born(day)})
        grant(service_only, purpose="service")  # a birthday needs marketing
        must(run_moments(day), 200)
        mine = moment_events(start, {control, none, withdrawn, service_only}, wait_for=control)
        self.assertEqual([e["customer_id"] for e in mine], [control])
        # no ledger row for them: consent given later the same day still counts
        self.assertEqual(harness.sql("SELECT count(*) FROM crm.moment_ledger WHERE customer_id IN "
                                     "(%s, %s)" % (harness.lit(none), harness.lit(withdrawn))), "0")
        grant(none, channel="sms")
        must(run_moments(day), 200)
        mine = moment_events(start, {control, none, withdrawn, service_only}, wait_for=none)
        self.assertEqual(sorted(e["customer_id"] for e in mine), sorted([control, none]))

    def test_warranty_fires_on_its_lead_date(self):
        day = run_day()
        expiry = day + datetime.timedelta(days=30)  # the warranty kind's lead
        start = feed_tail()
        a, _ = new_customer()
        grant(a, purpose="service")
        bought = must(harness.ingest(customer_id=a, channel="store", type="purchase", amount=300,
                                     currency="EUR",
                                     payload={"sku": "TV-1", "warranty_until": expiry.isoformat()}),
                      201)["interaction_id"]
        must(harness.ingest(customer_id=a, channel="store", type="purchase", amount=10,
                            currency="EUR",
                            payload={"warranty_until": (expiry + datetime.timedelta(days=1))
                                     .isoformat()}), 201)  # the next day: not this run
        marketing_only, _ = new_customer()
        grant(marketing_only)  # a warranty needs service consent
        must(harness.ingest(customer_id=marketing_only, channel="store", type="purchase",
                            amount=5, currency="EUR",
                            payload={"warranty_until": expiry.isoformat()}), 201)
        must(run_moments(expiry), 200)  # the expiry day itself is not the lead date
        must(run_moments(day), 200)
        mine = moment_events(start, {a, marketing_only}, wait_for=a)
        self.assertEqual(len(mine), 1, mine)
        self.assertEqual(mine[0]["data"], {"kind": "warranty", "date": expiry.isoformat(),
                                           "interaction_id": bought, "product": "TV-1",
                                           "purpose": "service"})

    def test_every_warranty_of_a_customer_fires(self):
        day = run_day()
        expiry = day + datetime.timedelta(days=30)
        start = feed_tail()
        a, _ = new_customer()
        grant(a, purpose="service")
        bought = sorted(must(harness.ingest(customer_id=a, channel="store", type="purchase",
                                            payload=dict(item, warranty_until=expiry.isoformat())),
                             201)["interaction_id"]
                        for item in ({"sku": "TV-1"}, {"product": "Soundbar"}, {}))
        must(run_moments(day), 200)
        mine = moment_events(start, {a}, wait_for=a)
        self.assertEqual(sorted(e["data"]["interaction_id"] for e in mine), bought)
        self.assertEqual(sorted(e["data"].get("product") or "" for e in mine),
                         ["", "Soundbar", "TV-1"])
        self.assertEqual(must(run_moments(day), 200)["events"], 0)

    def declare_wedding(self):
        before = must(get("/v1/settings/moments"), 200)["kinds"]
        restore = [{k: v for k, v in kind.items() if k != "builtin"} for kind in before]
        self.addCleanup(lambda: must(request("PUT", "/v1/settings/moments",
                                             {"kinds": restore}), 200))
        must(request("PUT", "/v1/settings/moments", {"kinds": [
            {"kind": "wedding_anniversary", "trait": "attributes.wedding_date",
             "purpose": "marketing", "lead_days": 2}]}), 200)

    def test_personal_date_fires_across_merge_unmerge_and_erasure(self):
        self.declare_wedding()
        day = run_day()
        wedding = day + datetime.timedelta(days=2)  # the declared lead
        start = feed_tail()
        s, _ = new_customer({"attributes": {"wedding_date": born(wedding, 2016)}})
        b, _ = new_customer({"attributes": {"wedding_date": born(wedding, 2016)}})
        grant(s)
        grant(b)
        must(post("/v1/admin/merges", {"survivor_id": s, "absorbed_id": b, "reason": "same"}),
             200)
        gone, _ = new_customer({"attributes": {"wedding_date": born(wedding, 2001)}})
        grant(gone)
        must(request("DELETE", "/v1/customers/%s" % gone), 200)
        must(run_moments(wedding), 200)  # the date itself is not the lead date
        must(run_moments(day), 200)
        mine = moment_events(start, {s, b, gone}, wait_for=s)
        self.assertEqual([(e["customer_id"], e["data"]) for e in mine], [
            (s, {"kind": "wedding_anniversary", "date": wedding.isoformat(),
                 "years": wedding.year - 2016, "purpose": "marketing"})])
        # the unmerged customer gets its own moment back; the survivor's is not repeated
        must(post("/v1/admin/unmerge", {"customer_id": b, "reason": "not the same"}), 200)
        must(run_moments(day), 200)
        mine = moment_events(start, {s, b, gone}, wait_for=b)
        self.assertEqual(sorted(e["customer_id"] for e in mine), sorted([s, b]))
        # erasure scrubs the event and the ledger row
        must(request("DELETE", "/v1/customers/%s" % b), 200)
        self.assertEqual(harness.sql("SELECT count(*) FROM crm.moment_ledger WHERE customer_id = "
                                     + harness.lit(b)), "0")
        self.assertEqual([e["data"] for e in moment_events(start, {b})], [{"erased": True}])

    def test_merged_customers_moment_fires_once_for_the_survivor(self):
        day = run_day()
        start = feed_tail()
        # merged before the run: one event, on the survivor
        s, _ = new_customer({"birthday": born(day)})
        b, _ = new_customer({"birthday": born(day)})
        grant(s)
        grant(b)
        must(post("/v1/admin/merges", {"survivor_id": s, "absorbed_id": b, "reason": "same"}),
             200)
        # fired before the merge: the survivor, which has the absorbed one's
        # birthday and consent now, does not fire it again
        s2, _ = new_customer()
        b2, _ = new_customer({"birthday": born(day)})
        grant(b2)
        must(run_moments(day), 200)
        must(post("/v1/admin/merges", {"survivor_id": s2, "absorbed_id": b2, "reason": "same"}),
             200)
        self.assertEqual(must(get("/v1/customers/%s" % s2), 200)["traits"]["birthday"], born(day))
        must(run_moments(day), 200)
        mine = moment_events(start, {s, b, s2, b2}, wait_for=b2)
        self.assertEqual(sorted(e["customer_id"] for e in mine), sorted([s, b2]), mine)

    def test_moment_due_reaches_a_subscribed_webhook(self):
        day = run_day()
        rec = Receiver()
        body = must(create_webhook(rec.url, event_types=["moment.due"]), 201)
        rec.secret = body["secret"]
        try:
            a, _ = new_customer({"birthday": born(day, 2001)})
            grant(a)
            must(harness.ingest(customer_id=a), 201)  # not subscribed: not sent
            must(run_moments(day), 200)
            recs = rec.wait_for(lambda rs: any(r["body"] and r["body"]["customer_id"] == a
                                               for r in rs))
            mine = [r for r in recs if r["body"]["customer_id"] == a]
            self.assertEqual(len(mine), 1)
            self.assertTrue(mine[0]["verified"])
            self.assertEqual(mine[0]["body"]["type"], "moment.due")
            self.assertEqual(mine[0]["body"]["data"]["years"], day.year - 2001)
            self.assertEqual({r["body"]["type"] for r in recs}, {"moment.due"})
        finally:
            drop_webhook(body["webhook_id"])
            rec.stop()

    def test_erasure_removes_the_ledger_and_scrubs_the_event(self):
        day = run_day()
        start = feed_tail()
        a, _ = new_customer({"birthday": born(day, 1977)})
        grant(a)
        must(run_moments(day), 200)
        moment_events(start, {a}, wait_for=a)
        export = must(get("/v1/customers/%s/export" % a), 200)
        self.assertEqual([(m["kind"], m["date"]) for m in export["moments"]],
                         [("birthday", day.isoformat())])
        must(request("DELETE", "/v1/customers/%s" % a), 200)
        self.assertEqual(harness.sql("SELECT count(*) FROM crm.moment_ledger WHERE customer_id = "
                                     + harness.lit(a)), "0")
        mine = moment_events(start, {a})
        self.assertEqual([e["data"] for e in mine], [{"erased": True}])
        # erased: no event on a later run of the day
        must(run_moments(day), 200)
        self.assertEqual(len(moment_events(start, {a})), 1)

    def test_validation_and_roles(self):
        today = utc_today()
        for body, pointer in (({}, "/date"), ({"date": "2026-02-30"}, "/date"),
                              ({"date": 20261207}, "/date"),
                              ({"date": today.isoformat(), "extra": 1}, "/extra"),
                              ({"date": (today + datetime.timedelta(days=367)).isoformat()},
                               "/date"),
                              ({"date": (today - datetime.timedelta(days=367)).isoformat()},
                               "/date")):
            self.assertProblem(post("/v1/moments:run", body), 422, "validation-failed",
                               pointers=(pointer,))
        for role in ("marketing", "front_office", "call_center", "partner"):
            self.assertProblem(run_moments(today, key=make_key(role)), 403, "forbidden")
        self.assertProblem(get("/v1/moments:run"), 405, "method-not-allowed")

    def test_scheduled_run_on_two_instances(self):
        """Two instances running the scheduled run every second: today's
        birthday fires once."""
        start = feed_tail()
        a, _ = new_customer({"birthday": born(utc_today(), 1995)})
        grant(a)
        args = list(SERVER_ARGS)
        args[args.index("--moments-period") + 1] = "1"
        servers = [harness.extra_server(*args) for _ in range(2)]
        try:
            moment_events(start, {a}, wait_for=a)
            time.sleep(3)  # a few more runs on both
            mine = moment_events(start, {a})
            self.assertEqual(len(mine), 1, mine)
            self.assertEqual(mine[0]["data"]["date"], utc_today().isoformat())
        finally:
            for s in servers:
                self.assertEqual(s.stop(), 0)


class TwoInstanceTests(harness.CrmTestCase):

    def instance_holding_the_attempt(self, rec, webhook_id, other):
        """Wait until the hanging receiver has an attempt, then return the
        instance (the suite's server or other) whose lease covers it."""
        deadline = time.monotonic() + WAIT
        while rec.hung == 0:
            self.assertLess(time.monotonic(), deadline, "no attempt arrived")
            time.sleep(0.02)
        owner = harness.sql("SELECT lease_owner FROM crm.webhook_deliveries "
                            "WHERE webhook_id = %s" % harness.lit(webhook_id))
        pid = int(owner.split(":")[1])
        victim = other if other.proc.pid == pid else harness.SERVER
        self.assertEqual(victim.proc.pid, pid, owner)
        return victim

    def test_delivery_of_a_crashed_instance_is_retried_after_its_lease(self):
        """An instance is killed (SIGKILL) while a delivery it claimed is in
        flight: once its lease (6 s) has passed, another instance delivers it."""
        rec = Receiver()
        other = harness.extra_server(*SERVER_ARGS)
        body = self.assertJson(create_webhook(rec.url, event_types=["customer.created"]), 201)
        rec.secret = body["secret"]
        rec.mode = "hang"
        try:
            a, _ = new_customer()
            victim = self.instance_holding_the_attempt(rec, body["webhook_id"], other)
            victim.proc.kill()
            victim.proc.wait()
            killed_at = time.monotonic()
            rec.mode = "ok"
            if victim is harness.SERVER:  # the suite's own server: start it again
                harness.SERVER = harness.extra_server(*SERVER_ARGS)
            recs = rec.wait_for(lambda rs: any(r["body"] and r["body"]["customer_id"] == a
                                               for r in rs))
            self.assertTrue(recs[0]["verified"])
            self.assertGreater(time.monotonic() - killed_at, 3.0)  # not before the lease ended
            d = delivered_item(body["webhook_id"])
            self.assertEqual(d["status"], "delivered", d)
            self.assertGreaterEqual(d["attempts"], 2)  # the crashed one counted
        finally:
            rec.mode = "ok"
            drop_webhook(body["webhook_id"])
            if other.proc is not None:
                other.stop()
            rec.stop()

    def test_sigterm_with_a_delivery_in_flight(self):
        """SIGTERM while a worker waits on a slow receiver: the instance exits
        0 once the attempt has timed out (--webhook-timeout 3), the attempt is
        recorded, and the other instance delivers the event."""
        rec = Receiver()
        other = harness.extra_server(*SERVER_ARGS)
        body = self.assertJson(create_webhook(rec.url, event_types=["customer.created"]), 201)
        rec.secret = body["secret"]
        rec.mode = "hang"
        try:
            a, _ = new_customer()
            victim = self.instance_holding_the_attempt(rec, body["webhook_id"], other)
            started = time.monotonic()
            rc = victim.stop()
            took = time.monotonic() - started
            rec.mode = "ok"
            if victim is harness.SERVER:
                harness.SERVER = harness.extra_server(*SERVER_ARGS)
            self.assertEqual(rc, 0, victim.log_tail())
            self.assertLess(took, 9.0)
            recs = rec.wait_for(lambda rs: any(r["body"] and r["body"]["customer_id"] == a
                                               for r in rs))
            self.assertTrue(recs[0]["verified"])
            d = delivered_item(body["webhook_id"])
            self.assertEqual(d["status"], "delivered", d)
            self.assertGreaterEqual(d["attempts"], 2, d)  # the one cut short counted
        finally:
            rec.mode = "ok"
            drop_webhook(body["webhook_id"])
            if other.proc is not None:
                other.stop()
            rec.stop()

    def test_two_instances_deliver_every_event(self):
        rec = Receiver()
        other = harness.extra_server(*SERVER_ARGS)
        try:
            body = self.assertJson(create_webhook(rec.url, event_types=["interaction.created"]),
                                   201)
            rec.secret = body["secret"]
            a, _ = new_customer()
            expected = set()
            for i in range(40):
                expected.add(must(harness.ingest(customer_id=a), 201)["interaction_id"])
            recs = rec.wait_for(lambda rs: expected <= {
                r["body"]["data"]["interaction_id"] for r in rs if r["body"]})
            ids = [r["id"] for r in recs]
            dup = len(ids) - len(set(ids))
            sys.stderr.write("two instances: %d deliveries, %d duplicates\n" % (len(ids), dup))
            self.assertTrue(all(r["verified"] for r in recs))
            self.assertEqual(dup, 0)
        finally:
            drop_webhook(body["webhook_id"])
            self.assertEqual(other.stop(), 0)
            rec.stop()


if __name__ == "__main__":
    sys.exit(harness.main())
