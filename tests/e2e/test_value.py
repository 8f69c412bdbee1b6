#!/usr/bin/env python3
"""End-to-end tests of the value layer (docs/value.md): value recompute,
needs, segments (rules, pages, export, preview) and KPIs.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_value.py [TestClass[.test_method] ...]

The value recompute works on the whole database, which other test files
share. So every test asserts only on customers it created: each class marks
its customers with a unique trait attribute `run_marker` (a uuid) and selects
them with a rule on it. Interaction dates are in the past (2025) and runs use
an explicit `as_of`, so that the expected values are fixed; only the rules
with `within_last_days` / `within_days` use dates relative to now.
"""

import datetime
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import email_id, get, patch, post, query, request, uid  # noqa: E402

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NDJSON_CT = "application/x-ndjson"
SOURCE = "e2e-value"
TIERS = {"bz", "prospect", "mvc", "mgc", "standard"}
BUYER_TIERS = {"mvc", "mgc", "standard"}
INJECTION = "x'; DROP TABLE crm.customers; --"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


def setUpModule():
    harness.start_server()
    # A population of buyers spread over 2024-2025, so that the BG/NBD and
    # Gamma-Gamma fits of every run with an as_of in 2025 have enough data
    # (the database may otherwise hold only a handful of 2025 buyers).
    make_fit_population()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers (plain functions, usable from setUpClass)

def new_email(prefix="val"):
    return "%s-%s@example.com" % (prefix, uid())


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def days_ago(n, hour_offset=0):
    now = datetime.datetime.now(datetime.timezone.utc)
    return iso(now - datetime.timedelta(days=n, hours=hour_offset))


def ts_out(t):
    """'2025-01-10T10:00:00Z' as the server writes it: '2025-01-10T10:00:00.000000Z'."""
    assert t.endswith("Z") and len(t) == 20, t
    return t[:-1] + ".000000Z"


def day_out(t):
    """Start (UTC) of the day of '2025-01-10T10:00:00Z', as the server writes it."""
    return t[:10] + "T00:00:00.000000Z"


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def describe(r):
    return "HTTP %d %s: %r" % (r.status, r.content_type, r.body)


def must(r, status):
    check(r.status == status, "expected HTTP %d, got %s" % (status, describe(r)))
    return r.body


def create_customer(traits=None, identifiers=None, marker=None):
    """Create a fresh customer (resolve answers 201); returns its id."""
    traits = dict(traits or {})
    if marker is not None:
        attrs = dict(traits.get("attributes") or {})
        attrs["run_marker"] = marker
        traits["attributes"] = attrs
    body = {"identifiers": identifiers or [email_id(new_email())], "source": SOURCE}
    if traits:
        body["traits"] = traits
    doc = must(post("/v1/customers:resolve", body), 201)
    check(doc.get("created") is True, doc)
    return doc["customer_id"]


def ev(type_, at, amount=None, cost=None, currency=None, channel="web", tags=None):
    """One interaction (without customer / idempotency key)."""
    d = {"type": type_, "occurred_at": at, "channel": channel}
    if amount is not None:
        d["amount"] = amount
    if cost is not None:
        d["cost"] = cost
    if amount is not None or cost is not None:
        d["currency"] = currency or "EUR"
    if tags is not None:
        d["tags"] = tags
    return d


def ingest_events(customer_id, events):
    if not events:
        return
    items = []
    for e in events:
        item = {"customer_id": customer_id, "source": SOURCE, "external_id": "v-" + uid()}
        item.update(e)
        items.append(item)
    doc = must(post("/v1/interactions:batch", {"items": items}), 200)
    check(doc.get("created") == len(items), "batch did not create every item: %r" % doc)


def recompute(as_of=None, live=None):
    """A value run. A dated run is made live here (it replaces the live
    values the profile shows) unless live=False: most tests read the
    profile after a run dated for their data."""
    body = {} if as_of is None else {"as_of": as_of, "live": True if live is None else live}
    return must(post("/v1/value:recompute", body), 200)


def profile_of(customer_id):
    return must(get("/v1/customers/%s" % customer_id), 200)


def value_of(customer_id):
    return profile_of(customer_id)["value"]


def marker_rule(marker):
    return {"field": "traits.attributes.run_marker", "op": "eq", "value": marker}


def preview(rule, limit=1000):
    return post("/v1/segments:preview", {"rule": rule, "limit": limit})


def preview_ids(rule):
    """Ids matching `rule` (at most 1000; the callers' rules select a few)."""
    doc = must(preview(rule), 200)
    ids = [it["customer_id"] for it in doc["items"]]
    check(doc.get("count") == len(ids), "count %r but %d items: %r" % (doc.get("count"), len(ids), doc))
    check(len(set(ids)) == len(ids), "duplicate items: %r" % ids)
    return set(ids)


def create_segment(rule, name=None, description=None):
    body = {"name": name or "e2e-value-%s" % uid(), "rule": rule}
    if description is not None:
        body["description"] = description
    return must(post("/v1/segments", body), 201)


def delete_segment(segment_id):
    request("DELETE", "/v1/segments/%s" % segment_id)


def get_raw(path):
    """GET without the harness's JSON parsing: (status, headers, body bytes)."""
    headers = {"Accept": "*/*"}
    key = getattr(harness, "ADMIN_KEY", None)
    if key:
        headers["Authorization"] = "Bearer " + key
    conn = http.client.HTTPConnection(harness.HOST, harness.SERVER.port,
                                      timeout=harness.REQUEST_TIMEOUT)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


FIT_POPULATION_DONE = False


def buyer_histories(seed, start, end, customers=40):
    """Deterministic purchase histories with heterogeneous purchase rates and
    lifetimes (what BG/NBD models), between `start` and `end`: a list of
    lists of (time, amount)."""
    rnd = random.Random(seed)
    histories = []
    for _ in range(customers):
        t = start + datetime.timedelta(days=rnd.randrange(0, 120))
        rate_days = rnd.choice([7, 14, 30, 60, 120])
        death = t + datetime.timedelta(days=rnd.choice([10, 30, 90, 200, 400]))
        events = []
        while t < death and t < end:
            events.append((t, rnd.randrange(10, 200)))
            t += datetime.timedelta(days=max(1, int(rnd.expovariate(1 / rate_days))))
        histories.append(events)
    return histories


def make_fit_population():
    """Buyers in 2024 - 2025-05, so that every fit with an as_of in 2025
    has enough data, whatever else the database holds."""
    global FIT_POPULATION_DONE
    if FIT_POPULATION_DONE:
        return
    marker = "fitpop-" + uid()
    start = datetime.datetime(2024, 1, 15, 11, 0, 0, tzinfo=datetime.timezone.utc)
    end = datetime.datetime(2025, 5, 15, 0, 0, 0, tzinfo=datetime.timezone.utc)
    for history in buyer_histories(42, start, end):
        cid = create_customer(marker=marker)
        ingest_events(cid, [ev("purchase", iso(t), amount=a) for t, a in history])
    FIT_POPULATION_DONE = True


class ValueTestCase(harness.CrmTestCase):
    def finite(self, value, ctx=None):
        """value is a finite JSON number; returns it."""
        self.assertIsInstance(value, (int, float), ctx)
        self.assertNotIsInstance(value, bool, ctx)
        self.assertTrue(math.isfinite(value), ctx)
        return value

    def assertNum(self, actual, expected, places=6, ctx=None):
        self.assertIsInstance(actual, (int, float), ctx)
        self.assertNotIsInstance(actual, bool, ctx)
        self.assertAlmostEqual(actual, expected, places=places, msg=ctx)


# ---------------------------------------------------------------------------
# 1. historic value, model outputs, RFM and tiers after a recompute

class ValueTests(ValueTestCase):
    AS_OF = "2025-12-31T00:00:00Z"

    @classmethod
    def setUpClass(cls):
        m = cls.marker = "value-" + uid()
        c = cls.ids = {}
        # A: a regular customer. Two purchases on 2025-01-10 are one purchase
        # day; a USD purchase and a purchase without amount do not count.
        c["A"] = create_customer(marker=m)
        ingest_events(c["A"], [
            ev("purchase", "2025-01-10T10:00:00Z", amount=100, cost=10, channel="store"),
            ev("purchase", "2025-01-10T15:00:00Z", amount=50),
            ev("purchase", "2025-03-05T09:00:00Z", amount="80.50", cost=5.5),
            ev("purchase", "2025-04-01T10:00:00Z", amount=999, cost=3, currency="USD"),
            ev("purchase", "2025-05-01T10:00:00Z"),
            ev("purchase", "2025-06-20T12:00:00Z", amount=40),
            ev("return", "2025-06-25T10:00:00Z", amount=20),
            ev("visit", "2025-07-01T10:00:00Z", cost=1.25, channel="store"),
        ])
        # B: returns / revenue = 0.5 exactly -> bz (margin is still positive).
        c["B"] = create_customer(marker=m)
        ingest_events(c["B"], [
            ev("purchase", "2025-02-01T10:00:00Z", amount=100),
            ev("return", "2025-02-10T10:00:00Z", amount=50),
        ])
        # C: cost above revenue -> margin < 0 -> bz.
        c["C"] = create_customer(marker=m)
        ingest_events(c["C"], [
            ev("purchase", "2025-03-01T10:00:00Z", amount=30, cost=45),
        ])
        # D: only a visit -> prospect.
        c["D"] = create_customer(marker=m)
        ingest_events(c["D"], [ev("visit", "2025-04-01T10:00:00Z", channel="store")])
        # E: frequent buyer, six purchase days, the most recent of the group.
        c["E"] = create_customer(marker=m)
        ingest_events(c["E"], [
            ev("purchase", "2025-%02d-15T10:00:00Z" % month, amount=25)
            for month in (1, 3, 5, 7, 9, 11)
        ])
        # F: one big, old purchase.
        c["F"] = create_customer(marker=m)
        ingest_events(c["F"], [ev("purchase", "2024-03-01T10:00:00Z", amount=500)])
        # R: a returner below the threshold (returns / revenue = 0.49).
        c["R"] = create_customer(marker=m)
        ingest_events(c["R"], [
            ev("purchase", "2025-02-01T10:00:00Z", amount=100),
            ev("purchase", "2025-08-01T10:00:00Z", amount=100),
            ev("return", "2025-08-05T10:00:00Z", amount=98),
        ])

        cls.value_run = recompute(cls.AS_OF)
        # Snapshot the profiles now: later tests run other recomputes.
        cls.values = {k: value_of(cid) for k, cid in c.items()}

    def v(self, key):
        value = self.values[key]
        self.assertIsInstance(value, dict, "no value section for %s: %r" % (key, value))
        return value

    def test_historic_value_regular_customer(self):
        v = self.v("A")
        self.assertNum(v["revenue"], 270.5)       # 100 + 50 + 80.50 + 40 (EUR only)
        self.assertNum(v["returns"], 20)
        self.assertNum(v["cost"], 16.75)          # 10 + 5.5 + 1.25 (the USD cost does not count)
        self.assertNum(v["margin"], 233.75)       # 270.5 - 20 - 16.75
        self.assertEqual(v["currency"], "EUR")
        self.assertEqual(v["purchase_days"], 3)   # 01-10 (twice), 03-05, 06-20
        self.assertIn(v["tier"], BUYER_TIERS, v)

    def test_first_and_last_purchase(self):
        # openapi.yaml: "Start of the first/last purchase day".
        self.assertEqual(self.v("A")["first_purchase_at"], day_out("2025-01-10T10:00:00Z"))
        self.assertEqual(self.v("A")["last_purchase_at"], day_out("2025-06-20T12:00:00Z"))
        self.assertEqual(self.v("F")["first_purchase_at"], day_out("2024-03-01T10:00:00Z"))
        self.assertEqual(self.v("F")["last_purchase_at"], day_out("2024-03-01T10:00:00Z"))
        self.assertEqual(self.v("E")["first_purchase_at"], day_out("2025-01-15T10:00:00Z"))
        self.assertEqual(self.v("E")["last_purchase_at"], day_out("2025-11-15T10:00:00Z"))
        self.assertEqual(self.v("E")["purchase_days"], 6)
        self.assertNum(self.v("E")["revenue"], 150)

    def test_bz_heavy_returner(self):
        v = self.v("B")
        self.assertNum(v["revenue"], 100)
        self.assertNum(v["returns"], 50)
        self.assertNum(v["cost"], 0)
        self.assertNum(v["margin"], 50)
        self.assertEqual(v["purchase_days"], 1)
        self.assertEqual(v["tier"], "bz", v)    # 50 / 100 >= 0.5
        # Just below the threshold is not bz.
        r = self.v("R")
        self.assertNum(r["margin"], 102)
        self.assertEqual(r["purchase_days"], 2)
        self.assertIn(r["tier"], BUYER_TIERS, r)

    def test_bz_negative_margin(self):
        v = self.v("C")
        self.assertNum(v["revenue"], 30)
        self.assertNum(v["returns"], 0)
        self.assertNum(v["cost"], 45)
        self.assertNum(v["margin"], -15)
        self.assertEqual(v["tier"], "bz", v)

    def test_prospect(self):
        v = self.v("D")
        self.assertEqual(v["tier"], "prospect", v)
        self.assertEqual(v["purchase_days"], 0)
        self.assertNum(v["revenue"], 0)
        self.assertNum(v["margin"], 0)
        self.assertNum(v["clv"], 0)
        self.assertIsNone(v["first_purchase_at"])
        self.assertIsNone(v["last_purchase_at"])
        self.assertIsNone(v["rfm"])
        # "Customers without purchases get clv 0 and no model outputs."
        self.assertIsNone(v["p_alive"])
        self.assertIsNone(v["churn_risk"])
        self.assertIsNone(v["expected_purchases"])
        self.assertIsNone(v["expected_spend"])

    def test_run_reference(self):
        run_id = self.value_run["run_id"]
        self.assertIsInstance(run_id, int)
        for key, v in ((k, self.v(k)) for k in self.ids):
            with self.subTest(customer=key):
                self.assertEqual(v["model"]["run_id"], run_id, v)
                self.assertEqual(v["model"]["as_of"], ts_out(self.AS_OF), v)
                self.assertIsInstance(v["model"]["name"], str)
                self.assertTrue(v["model"]["name"])
                self.assertTimestamp(v["computed_at"])
                self.assertEqual(v["currency"], "EUR")
                self.assertNum(v["horizon_weeks"], 52)

    def test_model_outputs(self):
        self.assertIn("bgnbd", self.value_run["params"], self.value_run)
        for key in ("A", "B", "C", "E", "F", "R"):
            v = self.v(key)
            with self.subTest(customer=key):
                for f in ("p_alive", "churn_risk", "expected_purchases", "expected_spend", "clv"):
                    self.finite(v[f], "%s: %r" % (f, v))
                self.assertGreaterEqual(v["p_alive"], 0.0)
                self.assertLessEqual(v["p_alive"], 1.0)
                self.assertAlmostEqual(v["churn_risk"], 1 - v["p_alive"], places=9, msg=v)
                self.assertGreaterEqual(v["clv"], 0)
                self.assertGreaterEqual(v["expected_purchases"], 0)
                self.assertGreater(v["expected_spend"], 0)
                # clv = expected_purchases x expected_spend x clv_margin (1.0)
                self.assertAlmostEqual(v["clv"], v["expected_purchases"] * v["expected_spend"],
                                       delta=1e-3, msg=v)
        # Buyers without repeat purchases all get the population mean spend.
        spends = [self.v(k)["expected_spend"] for k in ("B", "C", "F")]
        self.assertAlmostEqual(spends[0], spends[1], places=6, msg=spends)
        self.assertAlmostEqual(spends[0], spends[2], places=6, msg=spends)

    def test_rfm_scores(self):
        buyers = ("A", "B", "C", "E", "F", "R")
        for key in buyers:
            rfm = self.v(key)["rfm"]
            with self.subTest(customer=key):
                self.assertIsInstance(rfm, dict, rfm)
                for s in ("r", "f", "m"):
                    self.assertIn(rfm[s], (1, 2, 3, 4, 5), rfm)
                self.assertEqual(rfm["score"], "%d%d%d" % (rfm["r"], rfm["f"], rfm["m"]))
        # Quintiles are monotonic: a strictly better input never scores lower.
        r = {k: self.v(k)["rfm"]["r"] for k in buyers}
        f = {k: self.v(k)["rfm"]["f"] for k in buyers}
        m = {k: self.v(k)["rfm"]["m"] for k in buyers}
        # last purchase: E 11-15 > R 08-01 > A 06-20 > C 03-01 > B 02-01 > F 2024-03-01
        order = ["F", "B", "C", "A", "R", "E"]
        self.assertEqual([r[k] for k in order], sorted(r[k] for k in order), r)
        # purchase days: E 6 > A 3 > R 2 > F, B, C 1
        for lo, hi in (("A", "E"), ("R", "A"), ("F", "R"), ("B", "R"), ("C", "R")):
            self.assertLessEqual(f[lo], f[hi], f)
        # revenue: F 500 > A 270.5 > R 200 > E 150 > B 100 > C 30
        order = ["C", "B", "E", "R", "A", "F"]
        self.assertEqual([m[k] for k in order], sorted(m[k] for k in order), m)

    def test_tier_rules_hold(self):
        for key in ("A", "E", "F", "R"):
            v = self.v(key)
            with self.subTest(customer=key):
                self.assertIn(v["tier"], BUYER_TIERS, v)
                self.finite(v["clv"], v)
                if v["tier"] == "mvc":
                    self.assertGreater(v["clv"], 0, v)
                if v["tier"] == "mgc":
                    self.assertGreaterEqual(v["p_alive"], 0.5, v)

    def test_as_of_excludes_later_interactions(self):
        # openapi.yaml: "only purchases up to it count" / "only interactions up to it count".
        cid = create_customer(marker=self.marker)
        ingest_events(cid, [
            ev("purchase", "2025-01-05T10:00:00Z", amount=60),
            ev("purchase", "2025-02-05T10:00:00Z", amount=40, cost=4),
            ev("purchase", "2025-08-01T10:00:00Z", amount=25, cost=2),
            ev("return", "2025-08-02T10:00:00Z", amount=20),
        ])
        run = recompute("2025-06-30T00:00:00Z")
        v = value_of(cid)
        self.assertEqual(v["model"]["run_id"], run["run_id"])
        self.assertEqual(v["purchase_days"], 2, v)
        self.assertEqual(v["last_purchase_at"], "2025-02-05T00:00:00.000000Z", v)
        self.assertNum(v["revenue"], 100, ctx=v)
        self.assertNum(v["returns"], 0, ctx=v)
        self.assertNum(v["cost"], 4, ctx=v)
        self.assertNum(v["margin"], 96, ctx=v)
        # As of the end of the year everything counts.
        recompute(self.AS_OF)
        v = value_of(cid)
        self.assertEqual(v["purchase_days"], 3, v)
        self.assertNum(v["revenue"], 125, ctx=v)
        self.assertNum(v["returns"], 20, ctx=v)
        self.assertNum(v["margin"], 99, ctx=v)

    def test_merged_customer_value(self):
        e1, e2 = new_email(), new_email()
        a = create_customer(identifiers=[email_id(e1)], marker=self.marker)
        b = create_customer(identifiers=[email_id(e2)], marker=self.marker)
        ingest_events(a, [ev("purchase", "2025-04-01T10:00:00Z", amount=10)])
        ingest_events(b, [ev("purchase", "2025-04-01T18:00:00Z", amount=15),
                          ev("purchase", "2025-05-01T10:00:00Z", amount=20)])
        doc = must(post("/v1/customers:resolve",
                        {"identifiers": [email_id(e1), email_id(e2)], "source": SOURCE}), 200)
        self.assertEqual(doc["customer_id"], a, doc)
        recompute(self.AS_OF)
        v = value_of(a)
        self.assertNum(v["revenue"], 45, ctx=v)
        self.assertEqual(v["purchase_days"], 2, v)   # 04-01 (both customers) and 05-01
        # The absorbed customer is not valued separately: its id shows the survivor.
        self.assertEqual(profile_of(b)["customer_id"], a)


# ---------------------------------------------------------------------------
# 2. the recompute endpoint and CLI

class RecomputeTests(ValueTestCase):
    AS_OF = "2025-12-31T00:00:00Z"

    def check_summary(self, s):
        for k in ("run_id", "as_of", "customers", "buyers", "customer_equity", "tiers", "params"):
            self.assertIn(k, s, s)
        self.assertIsInstance(s["run_id"], int)
        self.assertGreaterEqual(s["run_id"], 1)
        self.assertTimestamp(s["as_of"])
        self.assertIsInstance(s["customers"], int)
        self.assertIsInstance(s["buyers"], int)
        self.assertGreaterEqual(s["buyers"], 2, s)   # the fit population at least
        self.assertLessEqual(s["buyers"], s["customers"], s)
        self.finite(s["customer_equity"], s)
        self.assertGreaterEqual(s["customer_equity"], 0)
        self.assertIsInstance(s["tiers"], dict, s)
        self.assertTrue(set(s["tiers"]) <= TIERS, s["tiers"])
        self.assertEqual(sum(s["tiers"].values()), s["customers"], s)
        # Everyone without a purchase day is a prospect, unless bz.
        self.assertGreaterEqual(s["tiers"].get("prospect", 0) + s["tiers"].get("bz", 0),
                                s["customers"] - s["buyers"], s)
        bg = s["params"].get("bgnbd")
        self.assertIsInstance(bg, dict, s)
        for p in ("r", "alpha", "a", "b"):
            self.assertIsInstance(bg.get(p), (int, float), bg)
            self.assertGreater(bg[p], 0, bg)

    def test_summary_and_increasing_run_ids(self):
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-06-01T10:00:00Z", amount=12)])
        first = recompute("2025-12-31T01:00:00+01:00")
        self.check_summary(first)
        self.assertEqual(first["as_of"], "2025-12-31T00:00:00.000000Z")  # echoed, in UTC
        self.assertEqual(value_of(cid)["model"]["run_id"], first["run_id"])
        before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        second = recompute()
        after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
        self.check_summary(second)
        self.assertGreater(second["run_id"], first["run_id"])
        as_of = datetime.datetime.strptime(second["as_of"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
        self.assertTrue(before <= as_of <= after, "default as_of %s is not now" % second["as_of"])
        v = value_of(cid)
        self.assertEqual(v["model"]["run_id"], second["run_id"])
        self.assertEqual(v["model"]["as_of"], second["as_of"])

    def test_customers_counts_every_customer(self):
        s1 = recompute(self.AS_OF)
        create_customer()
        create_customer()
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-03-01T10:00:00Z", amount=5)])
        s2 = recompute(self.AS_OF)
        self.assertEqual(s2["customers"], s1["customers"] + 3, (s1, s2))
        self.assertEqual(s2["buyers"], s1["buyers"] + 1, (s1, s2))
        self.assertEqual(s2["tiers"].get("prospect", 0), s1["tiers"].get("prospect", 0) + 2,
                         (s1, s2))

    def test_fit_at_the_boundary_stays_finite(self):
        # Fourteen buyers in 2000 (nobody else in the database bought before
        # 2001, and a rerun adds the same histories again, which does not move
        # the maximum): regular purchases ending at different times. Their
        # BG/NBD likelihood is largest for a, b -> infinity (a common dropout
        # probability), a valid limit of the model. The predictions must still
        # be numbers.
        start = datetime.datetime(2000, 1, 15, 11, 0, 0, tzinfo=datetime.timezone.utc)
        ids = []
        for i in range(14):
            cid = create_customer()
            ids.append(cid)
            first = start + datetime.timedelta(days=9 * i)
            gap = datetime.timedelta(days=20 + 5 * i)
            ingest_events(cid, [ev("purchase", iso(first + k * gap),
                                   amount=15 + 10 * ((i + k) % 4) + i)
                                for k in range(1 + i % 5)])
        s = recompute("2001-01-01T00:00:00Z")
        self.finite(s["customer_equity"], s)
        for cid in ids:
            v = value_of(cid)
            with self.subTest(customer=cid):
                for f in ("p_alive", "churn_risk", "expected_purchases", "expected_spend", "clv"):
                    self.finite(v[f], "%s: %r" % (f, v))
                self.assertGreaterEqual(v["clv"], 0)
                self.assertAlmostEqual(v["clv"], v["expected_purchases"] * v["expected_spend"],
                                       delta=1e-3, msg=v)
        # Top 10 % by CLV are mvc (ties with reruns aside): never most buyers.
        self.assertLessEqual(s["tiers"].get("mvc", 0), s["buyers"] // 2, s)

    def test_concurrent_runs_are_serialised(self):
        results = [None, None]
        barrier = threading.Barrier(2)

        def worker(i):
            try:
                barrier.wait(timeout=30)
                results[i] = post("/v1/value:recompute", {"as_of": self.AS_OF})
            except BaseException as e:  # reported below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for r in results:
            self.assertNotIsInstance(r, BaseException, r)
            self.assertJson(r, 200)
        ids = sorted(r.body["run_id"] for r in results)
        self.assertNotEqual(ids[0], ids[1])
        self.assertEqual(results[0].body["customers"], results[1].body["customers"])

    def test_validation(self):
        r = post("/v1/value:recompute", {"as_of": self.AS_OF, "asof": self.AS_OF})
        self.assertProblem(r, 422, "validation-failed", pointers=["/asof"])
        r = post("/v1/value:recompute", {"a/b~c": 1})
        self.assertProblem(r, 422, "validation-failed", pointers=["/a~1b~0c"])
        for bad in ("yesterday", "2025-12-31", "2025-12-31T00:00:00", "2025-13-01T00:00:00Z",
                    "1800-01-01T00:00:00Z", "", 20251231, True, ["2025-12-31T00:00:00Z"]):
            with self.subTest(as_of=bad):
                r = post("/v1/value:recompute", {"as_of": bad})
                self.assertProblem(r, 422, "validation-failed", pointers=["/as_of"])
        self.assertProblem(post("/v1/value:recompute", raw=b"{"), 400, "malformed-json")
        self.assertProblem(post("/v1/value:recompute", ["x"]), 400, "malformed-json")
        r = post("/v1/value:recompute", raw=b"{}", content_type="text/plain")
        self.assertProblem(r, 415, "unsupported-media-type")
        r = get("/v1/value:recompute")
        self.assertProblem(r, 405, "method-not-allowed")

    def test_cli_recompute_value(self):
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-02-02T10:00:00Z", amount=33)])
        last = recompute(self.AS_OF)["run_id"]
        env = dict(os.environ)
        proc = subprocess.run(
            [os.environ["CRM_BIN"], "recompute-value", "--as-of", "2025-12-31T00:00:00Z",
             "--live", "1", "--db", os.environ["CRM_DATABASE_URL"]],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=env)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        self.assertEqual(proc.returncode, 0, "stdout %r stderr %r" % (out, err))
        summary = json.loads(out)
        self.check_summary(summary)
        self.assertGreater(summary["run_id"], last)
        self.assertEqual(summary["as_of"], "2025-12-31T00:00:00.000000Z")
        self.assertTrue(err.strip(), "no progress lines on stderr")
        v = value_of(cid)
        self.assertEqual(v["model"]["run_id"], summary["run_id"])
        self.assertNum(v["revenue"], 33)
        bad = subprocess.run(
            [os.environ["CRM_BIN"], "recompute-value", "--as-of", "not-a-time",
             "--db", os.environ["CRM_DATABASE_URL"]],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env=env)
        self.assertNotEqual(bad.returncode, 0)
        self.assertEqual(bad.stdout.strip(), b"")


# ---------------------------------------------------------------------------
# 3. needs

class ValueRunTests(ValueTestCase):
    """Runs kept as snapshots (issue 18): only a live run replaces the live
    values; a run carries its settings; inputs a model cannot describe are
    said, not fitted."""

    def test_dated_run_keeps_todays_values(self):
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-03-01T10:00:00Z", amount=40),
                            ev("purchase", "2025-05-01T10:00:00Z", amount=60)])
        live = recompute()
        self.assertTrue(live["live"], live)
        before = value_of(cid)
        self.assertEqual(before["model"]["run_id"], live["run_id"])
        self.assertNum(before["revenue"], 100)
        dated = recompute("2025-04-01T00:00:00Z", live=False)
        self.assertFalse(dated["live"], dated)
        self.assertEqual(dated["status"], "succeeded")
        after = value_of(cid)
        self.assertEqual(after["model"]["run_id"], live["run_id"])  # not the dated run
        self.assertEqual(after["revenue"], before["revenue"])
        self.assertEqual(after["tier"], before["tier"])
        # The dated run is listed with its snapshot, the live one too.
        runs = must(get("/v1/value/runs?limit=50"), 200)["items"]
        byid = {r["run_id"]: r for r in runs}
        self.assertFalse(byid[dated["run_id"]]["live"])
        self.assertTrue(byid[live["run_id"]]["live"])
        self.assertEqual(byid[dated["run_id"]]["status"], "succeeded")
        self.assertGreater(byid[dated["run_id"]]["snapshot_rows"], 0)
        self.assertEqual(byid[dated["run_id"]]["as_of"], "2025-04-01T00:00:00.000000Z")
        for k in ("started_at", "finished_at", "seconds", "customers", "buyers", "settings",
                  "params", "diagnostics"):
            self.assertIn(k, byid[dated["run_id"]], k)
        # Its snapshot holds the values as of its date: one purchase of 40.
        row = harness.sql("SELECT revenue::text || ' ' || tier FROM crm.value_snapshots "
                          "WHERE run_id = %d AND customer_id = '%s'" % (dated["run_id"], cid))
        self.assertEqual(row.split()[0].rstrip("0").rstrip("."), "40", row)
        # Without as_of a run is live by default, and live=true makes a dated run live.
        again = recompute("2025-04-01T00:00:00Z", live=True)
        self.assertTrue(again["live"])
        self.assertEqual(value_of(cid)["model"]["run_id"], again["run_id"])
        self.assertNum(value_of(cid)["revenue"], 40)
        recompute()

    def test_profile_shows_the_runs_settings(self):
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-03-01T10:00:00Z", amount=40)])
        run = recompute()
        horizon = run["settings"]["clv_horizon_weeks"]
        harness.sql("UPDATE crm.settings SET value = '39' WHERE key = 'clv_horizon_weeks'")
        try:
            v = value_of(cid)
            self.assertEqual(v["horizon_weeks"], horizon)  # the run's, not today's 39
            self.assertEqual(v["currency"], run["settings"]["base_currency"])
        finally:
            harness.sql("UPDATE crm.settings SET value = '%s' WHERE key = 'clv_horizon_weeks'"
                        % json.dumps(horizon))

    def test_a_fit_that_does_not_converge_is_not_applied(self):
        # Three buyers in 1990 (nobody else bought before 1991), each buying
        # 20 EUR every month: BG/NBD runs off to a, b -> infinity without
        # converging, and Gamma-Gamma has no spread in spend to fit.
        witness = create_customer()
        ingest_events(witness, [ev("purchase", "2025-03-01T10:00:00Z", amount=40)])
        live = recompute()
        for i in range(3):
            cid = create_customer()
            ingest_events(cid, [ev("purchase", "1990-0%d-0%dT10:00:00Z" % (k + 1, i + 1),
                                   amount=20) for k in range(3)])
        r = post("/v1/value:recompute", {"as_of": "1991-01-01T00:00:00Z", "live": True})
        self.assertProblem(r, 422, "model-not-fitted")
        self.assertIn("did not converge", r.body["detail"])
        run = r.body["run"]
        self.assertEqual(run["status"], "failed")
        self.assertTrue(run["live"])
        self.assertFalse(run["params"]["bgnbd"]["converged"])
        self.assertIn("same average spend", run["diagnostics"]["gamma_gamma_not_fitted"], run)
        self.assertNotIn("snapshot_rows", run)
        # Nothing applied: the live values still come from the last good run.
        self.assertEqual(value_of(witness)["model"]["run_id"], live["run_id"])
        listed = {x["run_id"]: x for x in must(get("/v1/value/runs?limit=20"), 200)["items"]}
        self.assertEqual(listed[run["run_id"]]["status"], "failed")
        self.assertEqual(listed[run["run_id"]]["error"], r.body["detail"])
        self.assertEqual(harness.sql("SELECT count(*) FROM crm.value_snapshots WHERE run_id = %d"
                                     % run["run_id"]), "0")

    def test_settings_by_api_apply_from_the_next_run(self):
        doc = must(get("/v1/settings/value"), 200)
        self.assertEqual(set(doc), {"base_currency", "clv_horizon_weeks", "clv_margin",
                                    "tier_mvc_fraction", "tier_mgc_fraction",
                                    "tier_mgc_min_p_alive", "tier_bz_return_ratio",
                                    "value_snapshot_retention_days", "stage_onboarding_days",
                                    "stage_at_risk_days", "stage_at_risk_churn",
                                    "stage_lapsed_days", "stage_won_back_days",
                                    "stage_during_hours"})
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-03-01T10:00:00Z", amount=40)])
        before = recompute()
        old = doc["clv_horizon_weeks"]
        try:
            changed = must(patch("/v1/settings/value", {"clv_horizon_weeks": 26}), 200)
            self.assertEqual(changed["clv_horizon_weeks"], 26)
            self.assertEqual(must(get("/v1/settings/value"), 200)["clv_horizon_weeks"], 26)
            # the profile keeps the last run's horizon until the next run
            self.assertEqual(value_of(cid)["horizon_weeks"], before["settings"]["clv_horizon_weeks"])
            run = recompute()
            self.assertEqual(run["settings"]["clv_horizon_weeks"], 26)
            self.assertEqual(value_of(cid)["horizon_weeks"], 26)
            audit = harness.sql("SELECT detail::text FROM crm.audit_log WHERE action = "
                                "'settings.value.changed' ORDER BY audit_id DESC LIMIT 1")
            self.assertEqual(json.loads(audit), {"before": {"clv_horizon_weeks": old},
                                                 "after": {"clv_horizon_weeks": 26}})
            # checked: names, kinds, ranges, and the two top tiers' shares together
            for body, pointer in (({"clv_horizon_weeks": 0}, "/clv_horizon_weeks"),
                                  ({"clv_margin": "1"}, "/clv_margin"),
                                  ({"base_currency": "eur"}, "/base_currency"),
                                  ({"discount_rate": 0.1}, "/discount_rate"),
                                  ({"tier_mvc_fraction": 0.8, "tier_mgc_fraction": 0.3},
                                   "/tier_mgc_fraction")):
                with self.subTest(body=body):
                    self.assertProblem(patch("/v1/settings/value", body), 422,
                                       "validation-failed", pointers=[pointer])
            self.assertEqual(must(get("/v1/settings/value"), 200)["tier_mvc_fraction"],
                             doc["tier_mvc_fraction"])  # nothing of a refused patch applied
        finally:
            must(patch("/v1/settings/value", {"clv_horizon_weeks": old}), 200)
            recompute()

    def test_historic_value_moves_with_the_data(self):
        cid = create_customer()
        ingest_events(cid, [ev("purchase", "2025-03-01T10:00:00Z", amount=40)])
        run = recompute()
        self.assertNum(value_of(cid)["revenue"], 40)
        # a purchase, a return and a cost count at once, without a run
        ingest_events(cid, [ev("purchase", "2025-04-01T10:00:00Z", amount=500),
                            ev("return", "2025-04-02T10:00:00Z", amount=30),
                            ev("support_call", "2025-04-03T10:00:00Z", cost=5, currency="EUR"),
                            ev("purchase", "2025-04-04T10:00:00Z", amount=70, currency="USD")])
        v = value_of(cid)
        self.assertNum(v["revenue"], 540)   # the USD purchase is not in the base currency
        self.assertNum(v["returns"], 30)
        self.assertNum(v["cost"], 5)
        self.assertNum(v["margin"], 505)
        self.assertEqual(v["model"]["run_id"], run["run_id"])  # predictions stay the run's
        # a dated live run (a back-test) shows that run's historic value throughout
        recompute("2025-03-15T00:00:00Z", live=True)
        self.assertNum(value_of(cid)["revenue"], 40)
        recompute()

    def test_scheduled_runs(self):
        last = must(get("/v1/value/runs?limit=1"), 200)["items"][0]["run_id"]
        server = harness.extra_server("--value-schedule", "2")
        try:
            deadline = time.monotonic() + 60
            while True:
                doc = must(get("/v1/value/runs?limit=5", port=server.port), 200)
                mine = [r for r in doc["items"] if r["run_id"] > last and r["live"]]
                if len(mine) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            self.assertGreaterEqual(len(mine), 2, doc)  # at start, then one period later
            self.assertEqual(mine[0]["status"], "succeeded")
            self.assertEqual(doc["schedule"]["every_seconds"], 2)
            self.assertTimestamp(doc["schedule"]["next_at"])
            self.assertIn("in_progress", doc)
            metrics = request("GET", "/metrics", port=server.port).body
            if isinstance(metrics, (bytes, bytearray)):
                metrics = metrics.decode()
            m = re.search(r'crm_value_runs_total\{status="succeeded"\} (\d+)', metrics)
            self.assertTrue(m and int(m.group(1)) >= 2, metrics[-600:])
            self.assertIn("crm_value_run_in_progress", metrics)
        finally:
            server.stop()
            harness.sql("UPDATE crm.value_schedule SET period_s = NULL, next_at = NULL")
        # no instance schedules runs any more: the list says none
        self.assertIsNone(must(get("/v1/value/runs?limit=1"), 200)["schedule"])

    def test_runs_list_pages_and_checks_its_query(self):
        recompute()
        recompute()
        first = must(get("/v1/value/runs?limit=1"), 200)
        self.assertEqual(len(first["items"]), 1)
        self.assertTrue(first["next_cursor"])
        second = must(get("/v1/value/runs?limit=1&cursor=%s" % first["next_cursor"]), 200)
        self.assertLess(second["items"][0]["run_id"], first["items"][0]["run_id"])
        for q in ("limit=0", "limit=x", "cursor=-1", "cursor=abc", "bogus=1"):
            with self.subTest(q=q):
                self.assertProblem(get("/v1/value/runs?" + q), 400, "invalid-query")

    def test_kpis_say_which_runs_they_used(self):
        recompute("2025-01-01T00:00:00Z", live=False)
        k = must(get(query("/v1/kpis", {"from": "2025-01-01T00:00:00Z",
                                        "to": "2025-12-31T00:00:00Z"})), 200)
        self.assertIn("value_runs", k)
        self.assertIsInstance(k["value_runs"]["start"], int)
        as_of = {r["run_id"]: r["as_of"] for r in must(get("/v1/value/runs?limit=200"),
                                                        200)["items"]}
        self.assertLessEqual(as_of[k["value_runs"]["start"]], "2025-01-01T00:00:00.000000Z")


class NeedsTests(ValueTestCase):
    def needs_by_name(self, customer_id):
        needs = profile_of(customer_id)["needs"]
        self.assertIsInstance(needs, list)
        by = {n["need"]: n for n in needs}
        self.assertEqual(len(by), len(needs), needs)
        counts = [n["count"] for n in needs]
        self.assertEqual(counts, sorted(counts, reverse=True), "not most frequent first: %r" % needs)
        return by

    def test_tags_and_declared_interests(self):
        cid = create_customer(traits={"attributes": {"interests": ["hiking", "yoga"]}})
        ingest_events(cid, [
            ev("page_view", "2025-01-15T10:00:00Z", tags=["Running", "yoga"]),
            ev("support_call", "2025-02-01T10:00:00Z", channel="phone",
               tags=["premium_support", "running"]),
            ev("support_call", "2025-03-01T10:00:00Z", channel="phone", tags=["Premium_Support"]),
            ev("purchase", "2025-03-10T10:00:00Z", amount=10,
               tags=["premium_support", "PREMIUM_SUPPORT"]),
            ev("visit", "2025-03-11T10:00:00Z", tags=[]),
        ])
        by = self.needs_by_name(cid)
        self.assertEqual(set(by), {"premium_support", "running", "yoga", "hiking"}, by)
        self.assertEqual(by["premium_support"],
                         {"need": "premium_support", "declared": False, "count": 3,
                          "first_at": "2025-02-01T10:00:00.000000Z",
                          "last_at": "2025-03-10T10:00:00.000000Z"})
        self.assertEqual(by["running"],
                         {"need": "running", "declared": False, "count": 2,
                          "first_at": "2025-01-15T10:00:00.000000Z",
                          "last_at": "2025-02-01T10:00:00.000000Z"})
        self.assertEqual(by["yoga"],
                         {"need": "yoga", "declared": True, "count": 1,
                          "first_at": "2025-01-15T10:00:00.000000Z",
                          "last_at": "2025-01-15T10:00:00.000000Z"})
        hiking = by["hiking"]
        self.assertIs(hiking["declared"], True, hiking)
        self.assertEqual(hiking["count"], 0, hiking)
        self.assertIsNone(hiking["first_at"], hiking)
        self.assertIsNone(hiking["last_at"], hiking)
        self.assertEqual([n["need"] for n in profile_of(cid)["needs"]][:2],
                         ["premium_support", "running"])

    def test_declared_interests_follow_the_trait(self):
        cid = create_customer(traits={"attributes": {"interests": ["hiking"]}})
        ingest_events(cid, [ev("page_view", "2025-01-15T10:00:00Z", tags=["hiking"])])
        by = self.needs_by_name(cid)
        self.assertEqual(by["hiking"]["declared"], True)
        self.assertEqual(by["hiking"]["count"], 1)
        must(patch("/v1/customers/%s/traits" % cid,
                   {"source": SOURCE, "traits": {"attributes": {"interests": ["cycling"]}}}), 200)
        by = self.needs_by_name(cid)
        self.assertEqual(set(by), {"hiking", "cycling"}, by)
        self.assertIs(by["hiking"]["declared"], False)
        self.assertEqual(by["hiking"]["count"], 1)
        self.assertIs(by["cycling"]["declared"], True)
        self.assertEqual(by["cycling"]["count"], 0)
        must(patch("/v1/customers/%s/traits" % cid,
                   {"source": SOURCE, "traits": {"attributes": {"interests": None}}}), 200)
        self.assertEqual(set(self.needs_by_name(cid)), {"hiking"})

    def test_no_needs(self):
        cid = create_customer()
        self.assertEqual(profile_of(cid)["needs"], [])
        ingest_events(cid, [ev("visit", "2025-01-15T10:00:00Z")])
        self.assertEqual(profile_of(cid)["needs"], [])

    def test_merge_adds_need_counts(self):
        ex, ey = new_email(), new_email()
        x = create_customer(identifiers=[email_id(ex)])
        y = create_customer(identifiers=[email_id(ey)])
        ingest_events(x, [
            ev("support_call", "2025-01-01T10:00:00Z", tags=["m_need"]),
            ev("support_call", "2025-02-01T10:00:00Z", tags=["m_need", "only_x"]),
        ])
        ingest_events(y, [
            ev("support_call", "2025-03-01T10:00:00Z", tags=["m_need"]),
            ev("inquiry", "2025-03-02T10:00:00Z", tags=["only_y"]),
            ev("inquiry", "2024-12-01T10:00:00Z", tags=["only_y"]),
        ])
        doc = must(post("/v1/customers:resolve",
                        {"identifiers": [email_id(ex), email_id(ey)], "source": SOURCE}), 200)
        self.assertEqual(doc["customer_id"], x, doc)
        self.assertEqual(doc["merged_ids"], [y], doc)
        by = self.needs_by_name(x)
        self.assertEqual(by["m_need"], {"need": "m_need", "declared": False, "count": 3,
                                        "first_at": "2025-01-01T10:00:00.000000Z",
                                        "last_at": "2025-03-01T10:00:00.000000Z"})
        self.assertEqual(by["only_y"], {"need": "only_y", "declared": False, "count": 2,
                                        "first_at": "2024-12-01T10:00:00.000000Z",
                                        "last_at": "2025-03-02T10:00:00.000000Z"})
        self.assertEqual(by["only_x"]["count"], 1)
        self.assertEqual(set(by), {"m_need", "only_x", "only_y"})
        # Later interactions on the survivor keep counting.
        ingest_events(x, [ev("support_call", "2025-04-01T10:00:00Z", tags=["only_y"])])
        by = self.needs_by_name(y)   # the absorbed id shows the survivor
        self.assertEqual(by["only_y"]["count"], 3)
        self.assertEqual(by["only_y"]["last_at"], "2025-04-01T10:00:00.000000Z")


# ---------------------------------------------------------------------------
# 4. segments: CRUD, member pages, count, export, preview

class SegmentTests(ValueTestCase):
    @classmethod
    def setUpClass(cls):
        cls.marker = "seg-" + uid()
        cls.rule = marker_rule(cls.marker)
        cls.ids = []
        for i in range(7):
            cid = create_customer(marker=cls.marker)
            cls.ids.append(cid)
            if i % 2 == 0:
                ingest_events(cid, [ev("purchase", "2025-0%d-10T10:00:00Z" % (i + 1),
                                       amount=10 * (i + 1))])
            if i == 5:
                ingest_events(cid, [ev("purchase", "2025-04-10T10:00:00Z", amount=5, cost=50)])
        cls.ids.sort()

    def new_segment(self, rule=None):
        seg = create_segment(rule or self.rule)
        self.addCleanup(delete_segment, seg["segment_id"])
        return seg

    def members_path(self, segment_id, **params):
        return query("/v1/segments/%s/customers" % segment_id, params)

    def test_create_get_list_delete(self):
        name = "e2e-value crud %s" % uid()
        rule = {"all": [self.rule, {"field": "value.clv", "op": "gte", "value": 0}]}
        r = post("/v1/segments", {"name": name, "description": "seven e2e customers",
                                  "rule": rule})
        seg = self.assertJson(r, 201)
        self.assertRegex(seg["segment_id"], UUID_RE)
        self.assertEqual(seg["name"], name)
        self.assertEqual(seg["description"], "seven e2e customers")
        self.assertEqual(seg["rule"], rule)
        self.assertTimestamp(seg["created_at"])
        sid = seg["segment_id"]
        self.addCleanup(delete_segment, sid)

        self.assertEqual(self.assertJson(get("/v1/segments/%s" % sid), 200), seg)
        self.assertEqual(self.assertJson(get("/v1/segments/%s" % sid.upper()), 200), seg)
        items = self.assertJson(get("/v1/segments"), 200)["items"]
        self.assertIsInstance(items, list)
        mine = [s for s in items if s["segment_id"] == sid]
        self.assertEqual(mine, [seg])

        # Without a description there is none in the answer.
        seg2 = self.new_segment()
        self.assertNotIn("description", seg2)

        r = request("DELETE", "/v1/segments/%s" % sid)
        self.assertEqual(self.assertJson(r, 200), {"deleted": True})
        self.assertProblem(get("/v1/segments/%s" % sid), 404, "not-found")
        self.assertProblem(request("DELETE", "/v1/segments/%s" % sid), 404, "not-found")
        self.assertProblem(get(self.members_path(sid)), 404, "not-found")
        self.assertProblem(get("/v1/segments/%s/export" % sid), 404, "not-found")
        items = self.assertJson(get("/v1/segments"), 200)["items"]
        self.assertFalse([s for s in items if s["segment_id"] == sid])
        # The name is free again.
        again = self.assertJson(post("/v1/segments", {"name": name, "rule": self.rule}), 201)
        self.addCleanup(delete_segment, again["segment_id"])
        self.assertNotEqual(again["segment_id"], sid)

    def test_list_ordered_by_name(self):
        prefix = "e2e-value-order-%s-" % uid()
        for suffix in ("b", "c", "a"):
            self.new_segment_named(prefix + suffix)
        names = [s["name"] for s in self.assertJson(get("/v1/segments"), 200)["items"]
                 if s["name"].startswith(prefix)]
        self.assertEqual(names, [prefix + "a", prefix + "b", prefix + "c"])

    def new_segment_named(self, name):
        seg = create_segment(self.rule, name=name)
        self.addCleanup(delete_segment, seg["segment_id"])
        return seg

    def test_members_are_current(self):
        # The rule is evaluated on every use; merged (absorbed) customers drop out.
        marker = "seg-cur-" + uid()
        e1, e2 = new_email(), new_email()
        a = create_customer(identifiers=[email_id(e1)], marker=marker)
        sid = self.new_segment(marker_rule(marker))["segment_id"]
        page = self.assertJson(get(self.members_path(sid, count="true")), 200)
        self.assertEqual(([it["customer_id"] for it in page["items"]], page["count"]), ([a], 1))
        b = create_customer(identifiers=[email_id(e2)], marker=marker)
        page = self.assertJson(get(self.members_path(sid, count="true")), 200)
        self.assertEqual(page["count"], 2)
        self.assertEqual([it["customer_id"] for it in page["items"]], sorted([a, b]))
        must(post("/v1/customers:resolve",
                  {"identifiers": [email_id(e1), email_id(e2)], "source": SOURCE}), 200)
        page = self.assertJson(get(self.members_path(sid, count="true")), 200)
        self.assertEqual(([it["customer_id"] for it in page["items"]], page["count"]), ([a], 1))
        status, _, body = get_raw("/v1/segments/%s/export" % sid)
        self.assertEqual(status, 200)
        self.assertEqual([json.loads(line)["customer_id"] for line in body.decode().splitlines()],
                         [a])

    def test_duplicate_name_conflict(self):
        seg = self.new_segment()
        r = post("/v1/segments", {"name": seg["name"], "rule": {"has_identifier": "email"}})
        self.assertProblem(r, 409, "conflict")
        self.assertEqual(self.assertJson(get("/v1/segments/%s" % seg["segment_id"]), 200)["rule"],
                         self.rule)
        names = [s["name"] for s in self.assertJson(get("/v1/segments"), 200)["items"]]
        self.assertEqual(names.count(seg["name"]), 1)

    def test_create_validation(self):
        cases = [
            ({"rule": self.rule}, "/name"),
            ({"name": "", "rule": self.rule}, "/name"),
            ({"name": "x" * 101, "rule": self.rule}, "/name"),
            ({"name": 5, "rule": self.rule}, "/name"),
            ({"name": "e2e-" + uid()}, "/rule"),
            ({"name": "e2e-" + uid(), "rule": self.rule, "description": 7}, "/description"),
            ({"name": "e2e-" + uid(), "rule": self.rule, "description": "d" * 1001},
             "/description"),
            ({"name": "e2e-" + uid(), "rule": self.rule, "colour": "red"}, "/colour"),
            ({"name": "e2e-" + uid(), "rule": {"field": "value.clv", "op": "gt", "value": "1"}},
             "/rule/value"),
        ]
        for body, pointer in cases:
            with self.subTest(body=body):
                self.assertProblem(post("/v1/segments", body), 422, "validation-failed",
                                   pointers=[pointer])
                if isinstance(body.get("name"), str) and body["name"]:
                    names = [s["name"] for s in
                             self.assertJson(get("/v1/segments"), 200)["items"]]
                    self.assertNotIn(body["name"], names)
        # 100 characters (not bytes) is the limit.
        seg = create_segment(self.rule, name="é" * 96 + uid()[:4])
        delete_segment(seg["segment_id"])
        self.assertProblem(post("/v1/segments", raw=b"[1]"), 400, "malformed-json")

    def test_members_paging(self):
        sid = self.new_segment()["segment_id"]
        for limit in (1, 3, 6, 7, 100):
            with self.subTest(limit=limit):
                seen, cursor, pages = [], None, 0
                while True:
                    params = {"limit": limit}
                    if cursor is not None:
                        params["cursor"] = cursor
                    page = self.assertJson(get(self.members_path(sid, **params)), 200)
                    pages += 1
                    self.assertNotIn("count", page)
                    self.assertLessEqual(len(page["items"]), limit)
                    ids = [it["customer_id"] for it in page["items"]]
                    seen.extend(ids)
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                    self.assertEqual(len(ids), limit, page)
                    self.assertEqual(cursor, ids[-1], page)
                    self.assertLess(pages, 20, "pagination does not end")
                self.assertEqual(seen, self.ids)   # all found, in order, no duplicates
                self.assertEqual(pages, -(-7 // limit))
        # The default limit (100) covers all seven.
        page = self.assertJson(get(self.members_path(sid)), 200)
        self.assertEqual([it["customer_id"] for it in page["items"]], self.ids)
        self.assertIsNone(page["next_cursor"])
        # An upper-case cursor is accepted (openapi).
        page = self.assertJson(get(self.members_path(sid, limit=2, cursor=self.ids[1].upper())), 200)
        self.assertEqual([it["customer_id"] for it in page["items"]], self.ids[2:4])

    def test_member_count(self):
        sid = self.new_segment()["segment_id"]
        page = self.assertJson(get(self.members_path(sid, limit=2, count="true")), 200)
        self.assertEqual(page["count"], 7)
        self.assertEqual(len(page["items"]), 2)
        page = self.assertJson(get(self.members_path(sid, limit=2, cursor=self.ids[3],
                                                     count="true")), 200)
        self.assertEqual(page["count"], 7)
        self.assertEqual([it["customer_id"] for it in page["items"]], self.ids[4:6])
        page = self.assertJson(get(self.members_path(sid, count="false")), 200)
        self.assertNotIn("count", page)
        # An empty segment.
        sid0 = self.new_segment(marker_rule("nobody-" + uid()))["segment_id"]
        page = self.assertJson(get(self.members_path(sid0, count="true")), 200)
        self.assertEqual(page, {"items": [], "next_cursor": None, "count": 0})

    def test_export(self):
        sid = self.new_segment()["segment_id"]
        status, headers, body = get_raw("/v1/segments/%s/export" % sid)
        self.assertEqual(status, 200, body[:500])
        self.assertTrue(headers.get("Content-Type", "").startswith(NDJSON_CT),
                        headers.get("Content-Type"))
        text = body.decode("utf-8")
        self.assertTrue(text.endswith("\n"), repr(text[-50:]))
        lines = text.split("\n")[:-1]
        items = [json.loads(line) for line in lines]
        self.assertEqual([it["customer_id"] for it in items], self.ids)
        page = self.assertJson(get(self.members_path(sid)), 200)
        for exported, paged in zip(items, page["items"]):
            # entered_at: when the member entered the saved segment (live membership)
            self.assertEqual(set(exported), {"customer_id", "tier", "clv", "p_alive", "margin",
                                             "rfm", "entered_at"}, exported)
            self.assertTimestamp(exported["entered_at"])
            self.assertEqual(exported["entered_at"], paged["entered_at"])
            self.assertEqual(exported["customer_id"], paged["customer_id"])
            self.assertEqual(exported["tier"], paged["tier"])
            self.assertEqual(exported["rfm"], paged["rfm"])
            for k in ("clv", "p_alive", "margin"):
                if paged[k] is None:
                    self.assertIsNone(exported[k])
                else:
                    self.assertAlmostEqual(exported[k], paged[k], places=9)
        # An empty segment exports an empty body.
        sid0 = self.new_segment(marker_rule("nobody-" + uid()))["segment_id"]
        status, headers, body = get_raw("/v1/segments/%s/export" % sid0)
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")

    def test_preview(self):
        before = self.assertJson(get("/v1/segments"), 200)["items"]
        doc = self.assertJson(preview(self.rule, limit=3), 200)
        self.assertEqual([it["customer_id"] for it in doc["items"]], self.ids[:3])
        self.assertEqual(doc["count"], 7)
        self.assertEqual(doc["next_cursor"], self.ids[2])
        doc = self.assertJson(post("/v1/segments:preview", {"rule": self.rule}), 200)
        self.assertEqual([it["customer_id"] for it in doc["items"]], self.ids)  # default 20
        self.assertEqual(doc["count"], 7)
        after = self.assertJson(get("/v1/segments"), 200)["items"]
        self.assertEqual(after, before, "preview saved something")
        # next_cursor continues on the saved segment's pages (openapi)
        sid = self.new_segment()["segment_id"]
        page = self.assertJson(get(self.members_path(sid, cursor=self.ids[2])), 200)
        self.assertEqual([it["customer_id"] for it in page["items"]], self.ids[3:])
        for body, pointer in (({"rule": self.rule, "limit": 0}, "/limit"),
                              ({"rule": self.rule, "limit": 1001}, "/limit"),
                              ({"rule": self.rule, "limit": "5"}, "/limit"),
                              ({"limit": 5}, "/rule"),
                              ({"rule": self.rule, "name": "x"}, "/name")):
            with self.subTest(body=body):
                self.assertProblem(post("/v1/segments:preview", body), 422, "validation-failed",
                                   pointers=[pointer])

    def test_member_items_match_profiles(self):
        run = recompute("2025-12-31T00:00:00Z")
        sid = self.new_segment()["segment_id"]
        page = self.assertJson(get(self.members_path(sid)), 200)
        self.assertEqual(len(page["items"]), 7)
        for item in page["items"]:
            v = value_of(item["customer_id"])
            self.assertEqual(v["model"]["run_id"], run["run_id"])
            with self.subTest(customer=item["customer_id"]):
                self.assertEqual(set(item), {"customer_id", "tier", "clv", "p_alive", "margin",
                                             "rfm", "entered_at"})
                self.assertTimestamp(item["entered_at"])
                self.assertEqual(item["tier"], v["tier"])
                self.assertAlmostEqual(item["clv"], v["clv"], places=9)
                self.assertAlmostEqual(item["margin"], v["margin"], places=9)
                if v["p_alive"] is None:
                    self.assertIsNone(item["p_alive"])
                else:
                    self.assertAlmostEqual(item["p_alive"], v["p_alive"], places=9)
                # openapi: rfm is the three-digit score string, null without purchases.
                self.assertEqual(item["rfm"], v["rfm"]["score"] if v["rfm"] else None)
        # i = 1, 3 never bought; i = 5 bought 5 at a cost of 50 (bz); the rest are buyers.
        tiers = sorted(item["tier"] for item in page["items"])
        self.assertEqual(tiers.count("prospect"), 2, tiers)
        self.assertEqual(tiers.count("bz"), 1, tiers)
        self.assertTrue(set(tiers) - {"prospect", "bz"} <= BUYER_TIERS, tiers)

    def test_unvalued_customer_item(self):
        marker = "seg-new-" + uid()
        recompute("2025-12-31T00:00:00Z")
        cid = create_customer(marker=marker)   # created after the latest run
        doc = self.assertJson(preview(marker_rule(marker)), 200)
        self.assertEqual(doc["items"], [{"customer_id": cid, "tier": None, "clv": None,
                                         "p_alive": None, "margin": None, "rfm": None}])

    def test_unknown_and_bad_ids(self):
        for path in ("/v1/segments/%s", "/v1/segments/%s/customers", "/v1/segments/%s/export"):
            with self.subTest(path=path):
                self.assertProblem(get(path % UNKNOWN_UUID), 404, "not-found")
                self.assertProblem(get(path % "not-a-uuid"), 400, "invalid-uuid")
        self.assertProblem(request("DELETE", "/v1/segments/%s" % UNKNOWN_UUID), 404, "not-found")
        self.assertProblem(request("DELETE", "/v1/segments/abc"), 400, "invalid-uuid")

    def test_bad_query_params(self):
        sid = self.new_segment()["segment_id"]
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "abc"}, {"limit": ""},
                       {"limit": "5x"}, {"limit": -1},
                       {"cursor": "abc"}, {"cursor": "' OR 1=1 --"}, {"cursor": ""},
                       {"count": "yes"}, {"count": "1"}):
            with self.subTest(params=params):
                self.assertProblem(get(self.members_path(sid, **params)), 400, "invalid-query")
        page = self.assertJson(get(self.members_path(sid, limit=1000)), 200)
        self.assertEqual(len(page["items"]), 7)


# ---------------------------------------------------------------------------
# 4b. rule semantics

class RuleTests(ValueTestCase):
    """Four marked customers; each rule is and-ed with the marker rule."""

    @classmethod
    def setUpClass(cls):
        m = cls.marker = "rules-" + uid()
        cls.mk = marker_rule(m)
        c = cls.ids = {}
        cls.created_before = days_ago(0, hour_offset=1)
        phone = "+336" + "".join(random.choice("0123456789") for _ in range(8))
        c["P1"] = create_customer(
            identifiers=[email_id(new_email()), {"kind": "phone", "value": phone}],
            traits={"first_name": "Alice", "last_name": "Smith", "gender": "female",
                    "birthday": "1990-05-01",
                    "attributes": {"level": 3, "badges": ["gold", "silver"]}},
            marker=m)
        c["P2"] = create_customer(
            traits={"first_name": "Bob", "gender": "male", "birthday": "2000-02-29",
                    "attributes": {"level": 5, "badges": ["silver"],
                                   "prefs": {"a": 1, "b": [1, 2]}}},
            marker=m)
        c["P3"] = create_customer(
            identifiers=[{"kind": "device", "value": "dev-" + uid()}],
            traits={"first_name": "alicia", "attributes": {"interests": ["Billing"]}},
            marker=m)
        c["P4"] = create_customer(
            identifiers=[{"kind": "external", "namespace": "shop", "value": "C-" + uid()}],
            traits={"attributes": {"level": 3}},
            marker=m)
        ingest_events(c["P1"], [
            ev("purchase", "2025-06-01T10:00:00Z", amount=80),
            ev("purchase", days_ago(5), amount=120),
            ev("support_call", days_ago(1), channel="phone", tags=["billing"]),
            ev("support_call", days_ago(2), channel="phone", tags=["billing"]),
            ev("support_call", days_ago(3), channel="phone", tags=["billing"]),
        ])
        ingest_events(c["P2"], [
            ev("purchase", "2025-01-15T10:00:00Z", amount=40),
            ev("support_call", "2025-01-20T10:00:00Z", channel="phone", tags=["billing"]),
        ])
        ingest_events(c["P3"], [ev("visit", "2025-03-01T10:00:00Z", channel="store")])
        ingest_events(c["P4"], [ev("purchase", days_ago(40), amount=500, channel="store")])
        cls.value_run = recompute()   # as of now: within_last_days compares to now()
        cls.names = {cid: k for k, cid in c.items()}

    def members(self, rule):
        ids = preview_ids({"all": [self.mk, rule]})
        unknown = ids - set(self.names)
        self.assertFalse(unknown, "rule with the marker matched foreign customers")
        return {self.names[i] for i in ids}

    def check_rules(self, cases):
        for rule, expected in cases:
            with self.subTest(rule=rule):
                self.assertEqual(self.members(rule), set(expected))

    def test_marker_alone(self):
        self.assertEqual(preview_ids(self.mk), set(self.names))
        # the value of every customer is from the run of setUpClass
        for cid in self.names:
            self.assertEqual(value_of(cid)["model"]["run_id"], self.value_run["run_id"])

    def test_logic(self):
        alice = {"field": "traits.first_name", "op": "eq", "value": "Alice"}
        bob = {"field": "traits.first_name", "op": "eq", "value": "Bob"}
        female = {"field": "traits.gender", "op": "eq", "value": "female"}
        rich = {"field": "value.revenue", "op": "gt", "value": 100}
        self.check_rules([
            (alice, {"P1"}),
            ({"all": [alice, rich]}, {"P1"}),
            ({"all": [bob, rich]}, set()),
            ({"any": [bob, female]}, {"P1", "P2"}),
            ({"any": [bob, rich]}, {"P1", "P2", "P4"}),
            ({"not": alice}, {"P2", "P3", "P4"}),          # P4 has no first name: not(false)
            ({"not": rich}, {"P2", "P3"}),
            ({"not": {"not": alice}}, {"P1"}),
            ({"not": {"field": "traits.attributes.level", "op": "eq", "value": 3}},
             {"P2", "P3"}),                                 # P3 has no level
            ({"all": [{"any": [alice, bob]}, {"not": rich}]}, {"P2"}),
            ({"any": [{"all": [alice, female]}, {"all": [bob, female]}]}, {"P1"}),
        ])

    def test_number_fields(self):
        self.check_rules([
            ({"field": "value.revenue", "op": "eq", "value": 40}, {"P2"}),
            ({"field": "value.revenue", "op": "eq", "value": 40.0}, {"P2"}),
            ({"field": "value.revenue", "op": "ne", "value": 40}, {"P1", "P3", "P4"}),
            ({"field": "value.revenue", "op": "gt", "value": 100}, {"P1", "P4"}),
            ({"field": "value.revenue", "op": "gte", "value": 200}, {"P1", "P4"}),
            ({"field": "value.revenue", "op": "gt", "value": 200}, {"P4"}),
            ({"field": "value.revenue", "op": "lt", "value": 100}, {"P2", "P3"}),
            ({"field": "value.revenue", "op": "lte", "value": 40}, {"P2", "P3"}),
            ({"field": "value.revenue", "op": "in", "value": [40, 500, 7.5]}, {"P2", "P4"}),
            ({"field": "value.margin", "op": "gt", "value": 199.99}, {"P1", "P4"}),
            ({"field": "value.purchase_days", "op": "eq", "value": 2}, {"P1"}),
            ({"field": "value.purchase_days", "op": "eq", "value": 0}, {"P3"}),
            ({"field": "value.clv", "op": "gte", "value": 0}, {"P1", "P2", "P3", "P4"}),
            ({"field": "value.p_alive", "op": "exists"}, {"P1", "P2", "P4"}),
            ({"field": "value.p_alive", "op": "exists", "value": True}, {"P1", "P2", "P4"}),
            ({"field": "value.p_alive", "op": "exists", "value": False}, {"P3"}),
            ({"field": "value.churn_risk", "op": "lte", "value": 1}, {"P1", "P2", "P4"}),
            ({"field": "value.rfm_r", "op": "gte", "value": 1}, {"P1", "P2", "P4"}),
            ({"field": "value.rfm_r", "op": "exists", "value": False}, {"P3"}),
            ({"field": "value.expected_spend", "op": "gt", "value": 0}, {"P1", "P2", "P4"}),
        ])

    def test_text_fields(self):
        self.check_rules([
            ({"field": "traits.first_name", "op": "eq", "value": "Alice"}, {"P1"}),
            ({"field": "traits.first_name", "op": "eq", "value": "alice"}, set()),
            ({"field": "traits.first_name", "op": "ne", "value": "Alice"}, {"P2", "P3"}),
            ({"field": "traits.first_name", "op": "contains", "value": "ALI"}, {"P1", "P3"}),
            ({"field": "traits.first_name", "op": "contains", "value": "%"}, set()),
            ({"field": "traits.first_name", "op": "contains", "value": "_"}, set()),
            ({"field": "traits.first_name", "op": "in", "value": ["Bob", "alicia"]}, {"P2", "P3"}),
            ({"field": "traits.first_name", "op": "exists"}, {"P1", "P2", "P3"}),
            ({"field": "traits.first_name", "op": "exists", "value": False}, {"P4"}),
            ({"field": "traits.last_name", "op": "exists"}, {"P1"}),
            ({"field": "traits.gender", "op": "in", "value": ["female", "male"]}, {"P1", "P2"}),
            ({"field": "value.tier", "op": "eq", "value": "prospect"}, {"P3"}),
            ({"field": "value.tier", "op": "ne", "value": "prospect"}, {"P1", "P2", "P4"}),
            ({"field": "value.tier", "op": "in", "value": ["prospect", "bz"]}, {"P3"}),
            ({"field": "value.tier", "op": "contains", "value": "PROS"}, {"P3"}),
        ])

    def test_time_fields(self):
        self.check_rules([
            ({"field": "value.last_purchase_at", "op": "within_last_days", "value": 30}, {"P1"}),
            ({"field": "value.last_purchase_at", "op": "within_last_days", "value": 60},
             {"P1", "P4"}),
            # a missing time is "not within" (openapi)
            ({"field": "value.last_purchase_at", "op": "not_within_last_days", "value": 30},
             {"P2", "P3", "P4"}),
            ({"field": "value.last_purchase_at", "op": "exists", "value": False}, {"P3"}),
            ({"field": "value.first_purchase_at", "op": "lt", "value": "2025-03-01T00:00:00Z"},
             {"P2"}),
            ({"field": "value.first_purchase_at", "op": "gte", "value": "2025-03-01T00:00:00Z"},
             {"P1", "P4"}),
            ({"field": "value.first_purchase_at", "op": "lte",
              "value": "2025-06-01T02:00:00+02:00"}, {"P1", "P2"}),
            ({"field": "customer.created_at", "op": "within_last_days", "value": 1},
             {"P1", "P2", "P3", "P4"}),
            ({"field": "customer.created_at", "op": "gt", "value": self.created_before},
             {"P1", "P2", "P3", "P4"}),
            ({"field": "customer.created_at", "op": "lt", "value": "2020-01-01T00:00:00Z"}, set()),
            ({"field": "traits.birthday", "op": "lt", "value": "1995-01-01"}, {"P1"}),
            ({"field": "traits.birthday", "op": "gte", "value": "1995-01-01"}, {"P2"}),
            ({"field": "traits.birthday", "op": "exists", "value": False}, {"P3", "P4"}),
        ])

    def test_attribute_fields(self):
        self.check_rules([
            ({"field": "traits.attributes.level", "op": "eq", "value": 3}, {"P1", "P4"}),
            ({"field": "traits.attributes.level", "op": "eq", "value": "3"}, set()),
            ({"field": "traits.attributes.level", "op": "ne", "value": 3}, {"P2"}),
            ({"field": "traits.attributes.level", "op": "in", "value": [5, 7]}, {"P2"}),
            ({"field": "traits.attributes.level", "op": "exists"}, {"P1", "P2", "P4"}),
            ({"field": "traits.attributes.level", "op": "exists", "value": False}, {"P3"}),
            ({"field": "traits.attributes.badges", "op": "contains", "value": "silver"},
             {"P1", "P2"}),
            ({"field": "traits.attributes.badges", "op": "contains", "value": "gold"}, {"P1"}),
            ({"field": "traits.attributes.badges", "op": "contains", "value": "bronze"}, set()),
            ({"field": "traits.attributes.prefs", "op": "eq", "value": {"b": [1, 2], "a": 1}},
             {"P2"}),
            ({"field": "traits.attributes.interests", "op": "contains", "value": "Billing"},
             {"P3"}),
        ])

    def test_need_rules(self):
        self.check_rules([
            ({"need": "billing"}, {"P1", "P2", "P3"}),     # P3 declared it
            ({"need": "BILLING"}, {"P1", "P2", "P3"}),
            ({"need": "billing", "min_count": 1}, {"P1", "P2"}),
            ({"need": "billing", "min_count": 3}, {"P1"}),
            ({"need": "billing", "min_count": 4}, set()),
            ({"need": "billing", "within_days": 30}, {"P1"}),
            ({"need": "billing", "min_count": 2, "within_days": 30}, {"P1"}),
            ({"need": "nothing-" + uid()}, set()),
            ({"not": {"need": "billing"}}, {"P4"}),
        ])

    def test_interaction_rules(self):
        self.check_rules([
            ({"interaction": {"type": "support_call", "within_days": 30, "min_count": 3}},
             {"P1"}),
            ({"interaction": {"type": "support_call", "within_days": 30, "min_count": 4}},
             set()),
            ({"interaction": {"type": "support_call"}}, {"P1", "P2"}),
            ({"interaction": {"type": "support_call", "min_count": 2}}, {"P1"}),
            ({"interaction": {"channel": "phone"}}, {"P1", "P2"}),
            ({"interaction": {"tag": "billing"}}, {"P1", "P2"}),
            ({"interaction": {"tag": "billing", "within_days": 30}}, {"P1"}),
            ({"interaction": {"type": "purchase", "within_days": 60}}, {"P1", "P4"}),
            ({"interaction": {"type": "purchase", "within_days": 30}}, {"P1"}),
            ({"interaction": {"type": "purchase", "channel": "store"}}, {"P4"}),
            ({"interaction": {"type": "visit", "channel": "store"}}, {"P3"}),
            ({"interaction": {"type": "purchase", "min_count": 2}}, {"P1"}),
            ({"interaction": {}}, {"P1", "P2", "P3", "P4"}),
            ({"interaction": {"min_count": 5}}, {"P1"}),
            ({"not": {"interaction": {"type": "purchase"}}}, {"P3"}),
        ])

    def test_identifier_rules(self):
        self.check_rules([
            ({"has_identifier": "email"}, {"P1", "P2"}),
            ({"has_identifier": "phone"}, {"P1"}),
            ({"has_identifier": "device"}, {"P3"}),
            ({"has_identifier": "external"}, {"P4"}),
            ({"has_identifier": "loyalty_card"}, set()),
            ({"not": {"has_identifier": "email"}}, {"P3", "P4"}),
        ])

    def test_limits(self):
        # depth 12 is allowed, 13 is not
        rule = self.mk
        for _ in range(11):
            rule = {"all": [rule]}
        self.assertEqual(preview_ids(rule), set(self.names))
        r = preview({"all": [rule]})
        doc = self.assertProblem(r, 422, "validation-failed")
        self.assertTrue(all(e["pointer"].startswith("/rule") for e in doc["errors"]), doc)
        # nested 'not's: an even number is the rule itself
        alice = {"field": "traits.first_name", "op": "eq", "value": "Alice"}
        rule = alice
        for _ in range(10):
            rule = {"not": rule}
        self.assertEqual(self.members(rule), {"P1"})                  # field at depth 12
        r = preview({"all": [self.mk, {"not": rule}]})                # field at depth 13
        self.assertProblem(r, 422, "validation-failed")
        # 200 nodes are allowed, 201 are not
        many = [{"field": "traits.first_name", "op": "eq", "value": "n%d" % i} for i in range(98)]
        ok = {"all": [self.mk, {"any": many + [{"has_identifier": "device"}]}]}  # 1+1+1+99 = 102
        self.assertEqual({self.names[i] for i in preview_ids(ok)}, {"P3"})
        big = {"all": [self.mk,
                       {"any": many + [{"has_identifier": "device"}]},
                       {"any": many[:97]}]}                                    # 102 + 98 = 200
        r = preview(big)
        self.assertEqual(r.status, 200, self.desc(r))
        big["all"].append({"has_identifier": "email"})                          # 201
        self.assertProblem(preview(big), 422, "validation-failed")
        # up to 1000 values per 'in'
        values = list(range(1000, 1999)) + [40]
        self.assertEqual(self.members({"field": "value.revenue", "op": "in", "value": values}),
                         {"P2"})
        r = preview({"field": "value.revenue", "op": "in", "value": values + [1000]})
        self.assertProblem(r, 422, "validation-failed", pointers=["/rule/value"])
        # 100 rules per all/any
        r = preview({"any": [self.mk] * 101})
        self.assertProblem(r, 422, "validation-failed", pointers=["/rule/any"])


class RuleValidationTests(ValueTestCase):
    MK = marker_rule("validation-" + uid())

    CASES = [
        # (rule, pointer)
        ({"all": [MK, {"field": "value.clv", "op": "bogus", "value": 1}]}, "/rule/all/1/op"),
        ({"any": [{"field": "nope", "op": "eq", "value": 1}]}, "/rule/any/0/field"),
        ({"field": "value.CLV", "op": "eq", "value": 1}, "/rule/field"),
        ({"field": "traits.email", "op": "eq", "value": "x"}, "/rule/field"),
        ({"field": "customer.customer_id", "op": "eq", "value": "x"}, "/rule/field"),
        ({"field": "value.clv; DROP TABLE crm.customers", "op": "eq", "value": 1}, "/rule/field"),
        ({"field": "traits.attributes.", "op": "eq", "value": 1}, "/rule/field"),
        ({"field": "traits.attributes." + "k" * 65, "op": "eq", "value": 1}, "/rule/field"),
        ({"field": 5, "op": "eq", "value": 1}, "/rule/field"),
        ({"op": "eq", "value": 1, "field": None}, "/rule/field"),
        # wrong value types
        ({"field": "value.clv", "op": "gt", "value": "100"}, "/rule/value"),
        ({"field": "value.clv", "op": "gt", "value": True}, "/rule/value"),
        ({"field": "value.clv", "op": "gt", "value": None}, "/rule/value"),
        ({"field": "value.clv", "op": "gt"}, "/rule/value"),
        ({"field": "value.tier", "op": "eq", "value": 5}, "/rule/value"),
        ({"field": "traits.first_name", "op": "contains", "value": ["a"]}, "/rule/value"),
        ({"field": "value.last_purchase_at", "op": "gt", "value": "yesterday"}, "/rule/value"),
        ({"field": "value.last_purchase_at", "op": "gt", "value": "2025-01-01"}, "/rule/value"),
        ({"field": "value.last_purchase_at", "op": "within_last_days", "value": 0}, "/rule/value"),
        ({"field": "value.last_purchase_at", "op": "within_last_days", "value": "7"},
         "/rule/value"),
        ({"field": "value.last_purchase_at", "op": "within_last_days", "value": 1.5},
         "/rule/value"),
        ({"field": "traits.birthday", "op": "lt", "value": "1990-02-30"}, "/rule/value"),
        ({"field": "value.clv", "op": "exists", "value": "yes"}, "/rule/value"),
        # 'in'
        ({"field": "value.tier", "op": "in", "value": []}, "/rule/value"),
        ({"field": "value.clv", "op": "in", "value": []}, "/rule/value"),
        ({"field": "traits.attributes.level", "op": "in", "value": []}, "/rule/value"),
        ({"field": "value.clv", "op": "in", "value": 5}, "/rule/value"),
        ({"field": "value.clv", "op": "in", "value": [1, "2"]}, "/rule/value"),
        ({"field": "value.tier", "op": "in", "value": ["mvc", 2]}, "/rule/value"),
        # operator not allowed for the field
        ({"field": "value.tier", "op": "gt", "value": "a"}, "/rule/op"),
        ({"field": "value.clv", "op": "contains", "value": 1}, "/rule/op"),
        ({"field": "value.clv", "op": "within_last_days", "value": 1}, "/rule/op"),
        ({"field": "traits.birthday", "op": "eq", "value": "1990-01-01"}, "/rule/op"),
        ({"field": "traits.attributes.level", "op": "gt", "value": 1}, "/rule/op"),
        ({"field": "value.clv", "value": 1}, "/rule/op"),
        # structure
        ({"field": "value.clv", "op": "gt", "value": 1, "extra": 1}, "/rule/extra"),
        ({"all": [MK], "any": [MK]}, "/rule/any"),
        ({"all": []}, "/rule/all"),
        ({"all": MK}, "/rule/all"),
        ({"any": []}, "/rule/any"),
        ({"not": {"field": "nope", "op": "eq", "value": 1}}, "/rule/not/field"),
        ({"not": [MK]}, "/rule/not"),
        ({"all": [MK, {"any": [MK, {"not": {"foo": 1}}]}]}, "/rule/all/1/any/1/not"),
        ({"foo": 1}, "/rule"),
        ({}, "/rule"),
        ("value.clv > 0", "/rule"),
        ([MK], "/rule"),
        ({"all": [MK, 5]}, "/rule/all/1"),
        # need
        ({"need": ""}, "/rule/need"),
        ({"need": 5}, "/rule/need"),
        ({"need": "x" * 65}, "/rule/need"),
        ({"need": "billing", "min_count": 0}, "/rule/min_count"),
        ({"need": "billing", "min_count": "2"}, "/rule/min_count"),
        ({"need": "billing", "within_days": 0}, "/rule/within_days"),
        ({"need": "billing", "within_days": 36501}, "/rule/within_days"),
        ({"need": "billing", "since": 3}, "/rule/since"),
        # interaction
        ({"interaction": {"type": "fax"}}, "/rule/interaction/type"),
        ({"interaction": {"channel": "pigeon"}}, "/rule/interaction/channel"),
        ({"interaction": {"tag": ""}}, "/rule/interaction/tag"),
        ({"interaction": {"min_count": 0}}, "/rule/interaction/min_count"),
        ({"interaction": {"within_days": -1}}, "/rule/interaction/within_days"),
        ({"interaction": {"kind": "purchase"}}, "/rule/interaction/kind"),
        ({"interaction": "purchase"}, "/rule/interaction"),
        # has_identifier
        ({"has_identifier": "passport"}, "/rule/has_identifier"),
        ({"has_identifier": 1}, "/rule/has_identifier"),
    ]

    def test_invalid_rules_on_preview(self):
        for rule, pointer in self.CASES:
            with self.subTest(rule=rule):
                self.assertProblem(preview(rule), 422, "validation-failed", pointers=[pointer])

    def test_invalid_rules_on_create(self):
        for rule, pointer in self.CASES:
            with self.subTest(rule=rule):
                name = "e2e-invalid-%s" % uid()
                self.assertProblem(post("/v1/segments", {"name": name, "rule": rule}), 422,
                                   "validation-failed", pointers=[pointer])
        self.assertProblem(post("/v1/segments:preview", raw=b'{"rule": '), 400, "malformed-json")


# ---------------------------------------------------------------------------
# 5. injection safety

class InjectionTests(ValueTestCase):
    @classmethod
    def setUpClass(cls):
        cls.marker = "inj-" + uid()
        cls.mk = marker_rule(cls.marker)
        cls.named = create_customer(traits={"first_name": INJECTION}, marker=cls.marker)
        cls.keyed = create_customer(traits={"attributes": {INJECTION: "a"}}, marker=cls.marker)
        cls.plain = create_customer(traits={"first_name": "100%_real"}, marker=cls.marker)
        ingest_events(cls.keyed, [ev("inquiry", "2025-01-01T10:00:00Z", tags=[INJECTION])])

    def still_working(self):
        self.assertEqual(self.assertJson(get("/ready"), 200), {"status": "ready"})
        self.assertEqual(profile_of(self.named)["traits"]["first_name"], INJECTION)
        self.assertEqual(preview_ids(self.mk), {self.named, self.keyed, self.plain})
        create_customer()

    def test_values_are_bound(self):
        fresh = "y'; DROP TABLE crm.customers; --" + uid()
        nobody = [
            {"field": "traits.first_name", "op": "eq", "value": fresh},
            {"field": "traits.first_name", "op": "in", "value": [fresh, "' OR '1'='1"]},
            {"field": "traits.first_name", "op": "eq", "value": "' OR '1'='1"},
            {"field": "traits.last_name", "op": "contains", "value": "') OR true --"},
            {"field": "traits.attributes." + fresh[:60], "op": "eq", "value": "a"},
            {"field": "traits.attributes." + fresh[:60], "op": "exists"},
            {"field": "traits.attributes.x", "op": "eq", "value": {"k": "'); DROP TABLE x; --"}},
            {"field": "value.tier", "op": "eq", "value": "mvc' OR '1'='1"},
            {"field": "customer.created_at", "op": "lt",
             "value": "2000-01-01T00:00:00Z"},
            {"need": fresh[:64]},
            {"interaction": {"tag": fresh[:64]}},
        ]
        for rule in nobody:
            with self.subTest(rule=rule):
                r = preview(rule)
                doc = self.assertJson(r, 200)
                self.assertEqual(doc["count"], 0, doc)
                self.assertEqual(doc["items"], [])
        self.still_working()

    def test_injection_strings_match_literally(self):
        both = lambda rule: preview_ids({"all": [self.mk, rule]})  # noqa: E731
        self.assertEqual(both({"field": "traits.first_name", "op": "eq", "value": INJECTION}),
                         {self.named})
        self.assertEqual(both({"field": "traits.first_name", "op": "contains", "value": "drop table"}),
                         {self.named})
        self.assertEqual(both({"field": "traits.attributes." + INJECTION, "op": "eq",
                               "value": "a"}), {self.keyed})
        self.assertEqual(both({"field": "traits.attributes." + INJECTION, "op": "exists"}),
                         {self.keyed})
        self.assertEqual(both({"need": INJECTION}), {self.keyed})
        # stored tags are lower case; the interaction rule compares the tag as given
        self.assertEqual(both({"interaction": {"tag": INJECTION.lower()}}), {self.keyed})
        # LIKE wildcards are plain characters for 'contains'
        self.assertEqual(both({"field": "traits.first_name", "op": "contains", "value": "%"}),
                         {self.plain})
        self.assertEqual(both({"field": "traits.first_name", "op": "contains", "value": "%_"}),
                         {self.plain})
        self.assertEqual(both({"field": "traits.first_name", "op": "contains", "value": "_"}),
                         {self.plain})
        self.still_working()

    def test_saved_segment_with_injection(self):
        seg = create_segment({"field": "traits.attributes." + INJECTION, "op": "eq",
                              "value": INJECTION}, name="e2e-" + INJECTION + uid())
        self.addCleanup(delete_segment, seg["segment_id"])
        page = self.assertJson(get(query("/v1/segments/%s/customers" % seg["segment_id"],
                                         {"count": "true"})), 200)
        self.assertEqual(page, {"items": [], "next_cursor": None, "count": 0})
        status, _, body = get_raw("/v1/segments/%s/export" % seg["segment_id"])
        self.assertEqual((status, body), (200, b""))
        kp = self.assertJson(get(query("/v1/kpis", {
            "from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z",
            "segment_id": seg["segment_id"]})), 200)
        self.assertEqual(kp["customers"], 0, kp)
        self.still_working()


# ---------------------------------------------------------------------------
# 6. KPIs

class KpiTests(ValueTestCase):
    """Period [2025-06-01, 2025-06-11), prior period [2025-05-22, 2025-06-01).

    K1: purchase 05-22 00:00 (prior, first instant) 100; purchase 06-05 200 cost 20;
        complaint 06-06 cost 5                               -> active in both (retained)
    K2: purchase 2025-01-01 30; purchase 05-23 50            -> active in prior only
    K3: complaint 05-26 (prior); purchase 06-03 80 (first ever); complaint 06-04;
        return 06-08 30                                      -> new
    K4: purchase 2025-02-01 60; return 05-30 10 (prior); purchase 06-01 00:00 100
    K5: visit 05-24                                          -> in the population only
    K6: purchase 2025-07-01 999                              -> first interaction after `to`
    K7: purchase 06-11 00:00 500 (at `to`, excluded)         -> first interaction at `to`
    """

    FROM = "2025-06-01T00:00:00Z"
    TO = "2025-06-11T00:00:00Z"
    POPULATION = ("K1", "K2", "K3", "K4", "K5")

    @classmethod
    def setUpClass(cls):
        m = cls.marker = "kpi-" + uid()
        c = cls.ids = {}
        for k in ("K1", "K2", "K3", "K4", "K5", "K6", "K7"):
            c[k] = create_customer(marker=m)
        ingest_events(c["K1"], [
            ev("purchase", "2025-05-22T00:00:00Z", amount=100),
            ev("purchase", "2025-06-05T12:00:00Z", amount=200, cost=20),
            ev("complaint", "2025-06-06T09:00:00Z", cost=5, channel="phone"),
        ])
        ingest_events(c["K2"], [
            ev("purchase", "2025-01-01T10:00:00Z", amount=30),
            ev("purchase", "2025-05-23T10:00:00Z", amount=50),
        ])
        ingest_events(c["K3"], [
            ev("complaint", "2025-05-26T10:00:00Z", channel="email"),
            ev("purchase", "2025-06-03T10:00:00Z", amount=80),
            ev("complaint", "2025-06-04T10:00:00Z", channel="email"),
            ev("return", "2025-06-08T10:00:00Z", amount=30),
        ])
        ingest_events(c["K4"], [
            ev("purchase", "2025-02-01T10:00:00Z", amount=60),
            ev("return", "2025-05-30T10:00:00Z", amount=10),
            ev("purchase", "2025-06-01T00:00:00Z", amount=100),
        ])
        ingest_events(c["K5"], [ev("visit", "2025-05-24T10:00:00Z", channel="store")])
        ingest_events(c["K6"], [ev("purchase", "2025-07-01T10:00:00Z", amount=999)])
        ingest_events(c["K7"], [ev("purchase", "2025-06-11T00:00:00Z", amount=500)])
        seg = create_segment(marker_rule(m))
        cls.segment_id = seg["segment_id"]

        cls.run_start = recompute(cls.FROM)
        cls.clv_start = {k: value_of(cid)["clv"] for k, cid in c.items()}
        cls.run_end = recompute(cls.TO)
        cls.clv_end = {k: value_of(cid)["clv"] for k, cid in c.items()}
        cls.response = get(query("/v1/kpis", {"from": cls.FROM, "to": cls.TO,
                                              "segment_id": cls.segment_id}))

    @classmethod
    def tearDownClass(cls):
        delete_segment(cls.segment_id)

    def kpis(self):
        return self.assertJson(self.response, 200)

    def test_counts(self):
        k = self.kpis()
        self.assertEqual(k["customers"], 5, k)               # K6, K7 not before `to`
        self.assertEqual(k["active_customers"], 3, k)        # K1, K3, K4
        self.assertEqual(k["active_customers_prior"], 2, k)  # K1, K2
        self.assertEqual(k["retained_customers"], 1, k)      # K1
        self.assertNum(k["retention_rate"], 0.5, ctx=k)
        self.assertNum(k["churn_rate"], 0.5, ctx=k)
        self.assertEqual(k["new_customers"], 1, k)           # K3

    def test_money(self):
        k = self.kpis()
        self.assertNum(k["revenue"], 380, ctx=k)             # 200 + 80 + 100
        self.assertNum(k["revenue_per_active_customer"], 380 / 3, places=3, ctx=k)
        # (380 / 3) / (150 / 2) - 1
        self.assertNum(k["growth_rate"], (380 / 3) / 75 - 1, places=5, ctx=k)
        self.assertNum(k["cash_flow"], 325, ctx=k)           # 380 - 30 - (20 + 5)

    def test_complaints_and_returns(self):
        k = self.kpis()
        self.assertEqual(k["complaints"], 2, k)              # K1 06-06, K3 06-04
        self.assertNum(k["complaints_per_1000"], 400, places=3, ctx=k)
        self.assertEqual(k["returns"], 1, k)                 # K3 06-08
        self.assertNum(k["returns_per_1000"], 200, places=3, ctx=k)

    def test_customer_equity_and_roc(self):
        k = self.kpis()
        start = sum(self.finite(self.clv_start[p], self.clv_start) for p in self.POPULATION)
        end = sum(self.finite(self.clv_end[p], self.clv_end) for p in self.POPULATION)
        self.assertGreater(start, 0, self.clv_start)
        self.assertGreater(end, 0, self.clv_end)
        self.assertNum(k["customer_equity_start"], start, places=4, ctx=k)
        self.assertNum(k["customer_equity_end"], end, places=4, ctx=k)
        self.assertNum(k["roc"], (325 + end - start) / start, places=5, ctx=k)

    def test_prior_period_without_buyers(self):
        # Period [05-22, 06-01), prior [05-12, 05-22): nobody bought in the prior period.
        k = self.assertJson(get(query("/v1/kpis", {
            "from": "2025-05-22T00:00:00Z", "to": "2025-06-01T00:00:00Z",
            "segment_id": self.segment_id})), 200)
        self.assertEqual(k["customers"], 5, k)            # K1..K5 (K3 by its complaint)
        self.assertEqual(k["active_customers"], 2, k)     # K1 (first instant), K2; not K4
        self.assertEqual(k["active_customers_prior"], 0, k)
        self.assertEqual(k["retained_customers"], 0, k)
        self.assertIsNone(k["retention_rate"], k)
        self.assertIsNone(k["churn_rate"], k)
        self.assertEqual(k["new_customers"], 1, k)        # K1
        self.assertNum(k["revenue"], 150, ctx=k)
        self.assertNum(k["revenue_per_active_customer"], 75, places=4, ctx=k)
        self.assertIsNone(k.get("growth_rate"), k)
        self.assertEqual(k["complaints"], 1, k)           # K3 05-26
        self.assertEqual(k["returns"], 1, k)              # K4 05-30
        self.assertNum(k["complaints_per_1000"], 200, places=3, ctx=k)
        self.assertNum(k["returns_per_1000"], 200, places=3, ctx=k)
        self.assertNum(k["cash_flow"], 140, ctx=k)        # 150 - 10

    def test_later_period_includes_k7(self):
        # Period [06-11, 06-21): K7 bought at its first instant, K6 not yet known.
        k = self.assertJson(get(query("/v1/kpis", {
            "from": "2025-06-11T00:00:00Z", "to": "2025-06-21T00:00:00Z",
            "segment_id": self.segment_id})), 200)
        self.assertEqual(k["customers"], 6, k)
        self.assertEqual(k["active_customers"], 1, k)
        self.assertEqual(k["active_customers_prior"], 3, k)   # K1, K3, K4
        self.assertEqual(k["retained_customers"], 0, k)
        self.assertNum(k["retention_rate"], 0, ctx=k)
        self.assertNum(k["churn_rate"], 1, ctx=k)
        self.assertEqual(k["new_customers"], 1, k)
        self.assertNum(k["revenue"], 500, ctx=k)
        self.assertNum(k["growth_rate"], 500 / (380 / 3) - 1, places=5, ctx=k)
        self.assertEqual(k["complaints"], 0, k)
        self.assertNum(k["cash_flow"], 500, ctx=k)

    def test_offsets_in_query(self):
        k = self.assertJson(get(query("/v1/kpis", {
            "from": "2025-06-01T02:00:00+02:00", "to": "2025-06-10T19:00:00-05:00",
            "segment_id": self.segment_id})), 200)
        self.assertEqual(k["active_customers"], 3, k)
        self.assertNum(k["revenue"], 380, ctx=k)

    def test_whole_population(self):
        k = self.assertJson(get(query("/v1/kpis", {"from": self.FROM, "to": self.TO})), 200)
        for f in ("customers", "active_customers", "active_customers_prior",
                  "retained_customers", "new_customers", "complaints", "returns"):
            self.assertIsInstance(k[f], int, (f, k))
        self.assertGreaterEqual(k["customers"], 5)
        self.assertGreaterEqual(k["active_customers"], 3)
        self.assertGreaterEqual(k["revenue"], 380)
        for f in ("retention_rate", "churn_rate", "growth_rate", "cash_flow",
                  "customer_equity_start", "customer_equity_end", "roc"):
            self.assertIn(f, k)

    def test_bad_params(self):
        sid = self.segment_id
        for params in ({"to": self.TO}, {"from": self.FROM}, {},
                       {"from": "2025-06-01", "to": self.TO},
                       {"from": self.FROM, "to": "2025-06-11T00:00:00"},
                       {"from": "yesterday", "to": self.TO},
                       {"from": self.FROM, "to": self.FROM},
                       {"from": self.TO, "to": self.FROM},
                       {"from": self.FROM, "to": self.TO, "segment_id": "abc"},
                       {"from": self.FROM, "to": self.TO, "segment_id": sid + "0"},
                       {"from": self.FROM, "to": self.TO, "segment_id": ""}):
            with self.subTest(params=params):
                self.assertProblem(get(query("/v1/kpis", params)), 400, "invalid-query")
        self.assertProblem(get(query("/v1/kpis", {"from": self.FROM, "to": self.TO,
                                                  "segment_id": UNKNOWN_UUID})),
                           404, "not-found")


if __name__ == "__main__":
    raise SystemExit(harness.main())
