#!/usr/bin/env python3
"""End-to-end tests of identity graph safety against docs/identity.md: blocked
placeholder values, per-kind identifier limits, merge on demand (dry run), exact
unmerge and merge history.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_identity.py [TestClass[.test_method] ...]

Every test uses fresh, uuid-based identifiers, so the tests do not need a clean
database and can run in any order. Tests that change global settings (custom
blocked values, identifier limits) put them back when they finish.
"""

import json
import os
import re
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (email_id, get, ingest, interaction, patch, phone_id, post, query,  # noqa: E402
                     random_digits, request, resolve, uid)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KEY_RE = re.compile(r"^crm_([0-9a-f]{32})_")

DEFAULT_LIMITS = [
    {"kind": "external", "max_per_customer": 1, "priority": 1},
    {"kind": "loyalty_card", "max_per_customer": 2, "priority": 2},
    {"kind": "email", "max_per_customer": 5, "priority": 3},
    {"kind": "phone", "max_per_customer": 3, "priority": 4},
    {"kind": "device", "max_per_customer": 20, "priority": 5},
]
ANON_DEVICE = {"kind": "device", "value": "anonymous"}
BLOCKED_PHONE = {"kind": "phone", "value": "+10000000000"}


def blocked(identifier):
    """An identifier as `ignored` lists it when it is a blocked placeholder."""
    return dict(identifier, reason="blocked")


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

def key_id_of(api_key):
    h = KEY_RE.match(api_key).group(1)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


ADMIN_ACTOR = "key:" + key_id_of(harness.ADMIN_KEY)


def new_email(prefix="id"):
    return "%s-%s@example.com" % (prefix, uid())


def new_phone():
    """A fresh French mobile number: (normalised E.164, the same written with spaces)."""
    d = random_digits(8)
    return "+336" + d, "+33 6 %s %s %s %s" % (d[0:2], d[2:4], d[4:6], d[6:8])


def new_ns():
    return "e2e-" + uid()[:12]


def device_id(value):
    return {"kind": "device", "value": value}


def ext_id(value, namespace):
    return {"kind": "external", "namespace": namespace, "value": value}


def card_id(value):
    return {"kind": "loyalty_card", "value": value}


def profile(customer_id, **kw):
    return get("/v1/customers/%s" % customer_id, **kw)


def timeline(customer_id, **params):
    return get(query("/v1/customers/%s/interactions" % customer_id, params))


def lookup(**params):
    return get(query("/v1/customers", params))


def merge(survivor_id, absorbed_id, **fields):
    body = {"survivor_id": survivor_id, "absorbed_id": absorbed_id}
    body.update(fields)
    return post("/v1/admin/merges", body)


def unmerge(customer_id, **fields):
    body = {"customer_id": customer_id}
    body.update(fields)
    return post("/v1/admin/unmerge", body)


def history(customer_id, **kw):
    return get("/v1/customers/%s/merges" % customer_id, **kw)


def put_limit(body):
    return request("PUT", "/v1/admin/identifier-limits", json_body=body)


def block(kind, value, reason=None):
    body = {"kind": kind, "value": value}
    if reason is not None:
        body["reason"] = reason
    return post("/v1/admin/blocked-identifiers", body)


def unblock(kind=None, value=None):
    params = {}
    if kind is not None:
        params["kind"] = kind
    if value is not None:
        params["value"] = value
    return request("DELETE", query("/v1/admin/blocked-identifiers", params))


def create_key(role):
    r = post("/v1/admin/keys", {"name": "e2e-identity-%s-%s" % (role, uid()), "role": role})
    if r.status != 201:
        raise AssertionError("creating a %s key: HTTP %d %r" % (role, r.status, r.body))
    return r.body["api_key"]


def ts(day_time):
    """'2026-01-10T10:00:00' -> the server's rendering of it (UTC, microseconds)."""
    return day_time + ".000000Z"


class IdentityTestCase(harness.CrmTestCase):
    def create_customer(self, identifiers, source="e2e", traits=None):
        body = self.assertJson(resolve(identifiers, source=source, traits=traits), 201)
        self.assertIs(body["created"], True, body)
        return body["customer_id"]

    def get_profile(self, customer_id):
        return self.assertJson(profile(customer_id), 200)

    def ingest_ok(self, customer_id=None, identifiers=None, expect_customer=None, **fields):
        body = self.assertJson(ingest(customer_id, identifiers, **fields), 201)
        self.assertEqual(body["status"], "created", body)
        if expect_customer is not None:
            self.assertEqual(body["customer_id"], expect_customer, body)
        return body

    def all_items(self, customer_id):
        body = self.assertJson(timeline(customer_id, limit=500), 200)
        self.assertIsNone(body["next_cursor"], body)
        return body["items"]

    def history_items(self, customer_id):
        return self.assertJson(history(customer_id), 200)["items"]

    def snapshot(self, *customer_ids):
        """Full profile, full timeline and merge history of each customer."""
        return {cid: {"profile": self.get_profile(cid), "timeline": self.all_items(cid),
                      "merges": self.assertJson(history(cid), 200)}
                for cid in customer_ids}

    def merge_ok(self, survivor_id, absorbed_id, **fields):
        body = self.assertJson(merge(survivor_id, absorbed_id, **fields), 200)
        self.assertEqual(body["status"], "dry_run" if fields.get("dry_run") else "merged", body)
        return body

    def unmerge_ok(self, customer_id, **fields):
        body = self.assertJson(unmerge(customer_id, **fields), 200)
        self.assertEqual(body["status"], "unmerged", body)
        self.assertEqual(body["customer_id"], customer_id, body)
        return body

    def build_pair(self):
        """Two customers with identifiers of several kinds, overlapping traits
        (fields and attributes) and tagged interactions across channels.

        A is older. Trait write order: A (first_name Alice, attributes.tier gold),
        then B (first_name Alicia, attributes.tier silver, attributes.color blue),
        then A again (attributes.color red). So on a merge of B into A the
        absorbed customer wins first_name and tier, the survivor wins color."""
        u = uid()
        ns = new_ns()
        pa, _ = new_phone()
        pb, pb_spaced = new_phone()
        p = {"ns": ns, "a_email": new_email("alice"), "a_phone": pa, "a_ext": "A-" + u,
             "a_device": "dev-a-" + u, "a_card": "LC" + u.upper(),
             "b_email1": new_email("alicia"), "b_email2": new_email("alicia2"),
             "b_phone": pb, "b_device": "dev-b-" + u}
        a = self.create_customer(
            [email_id(p["a_email"]), phone_id(p["a_phone"]), ext_id(p["a_ext"], ns),
             device_id(p["a_device"]), card_id(p["a_card"])],
            source="web-shop",
            traits={"first_name": "Alice", "birthday": "1990-04-01",
                    "address": {"city": "Lyon"},
                    "attributes": {"tier": "gold", "interests": ["running", "yoga"]}})
        b = self.create_customer(
            [email_id(p["b_email1"]), email_id(p["b_email2"]), phone_id(pb_spaced),
             device_id(p["b_device"])],
            source="pos",
            traits={"first_name": "Alicia", "gender": "f",
                    "attributes": {"tier": "silver", "color": "blue"}})
        self.assertJson(patch("/v1/customers/%s/traits" % a,
                              {"source": "crm-ui", "traits": {"attributes": {"color": "red"}}}),
                        200)
        self.ingest_ok(a, channel="store", type="purchase", amount=100, currency="EUR",
                       cost=5, tags=["running"], occurred_at="2026-01-10T10:00:00Z")
        self.ingest_ok(identifiers=[email_id(p["a_email"])], expect_customer=a,
                       channel="web", type="page_view", occurred_at="2026-01-12T10:00:00Z")
        self.ingest_ok(identifiers=[phone_id(p["a_phone"])], expect_customer=a,
                       channel="phone", type="complaint", tags=["billing"],
                       occurred_at="2026-01-15T10:00:00Z")
        self.ingest_ok(b, channel="web", type="purchase", amount="50.00", currency="USD",
                       cost=2, tags=["running", "shoes"], occurred_at="2026-02-01T10:00:00Z")
        self.ingest_ok(identifiers=[email_id(p["b_email2"])], expect_customer=b,
                       channel="store", type="return", amount=20, currency="EUR",
                       tags=["refund"], occurred_at="2026-02-03T10:00:00Z")
        self.ingest_ok(b, channel="email", type="outbound_message",
                       occurred_at="2026-02-05T10:00:00Z")
        return a, b, p

    def check_pair_merged(self, doc, a, b, p):
        """The merged profile of build_pair's customers (B absorbed into A)."""
        self.assertEqual(doc["customer_id"], a, doc)
        self.assertEqual(doc["merged_ids"], [b], doc)
        got = [(i["kind"], i.get("namespace"), i["value"]) for i in doc["identifiers"]]
        want = sorted([("device", None, p["a_device"]), ("device", None, p["b_device"]),
                       ("email", None, p["a_email"]), ("email", None, p["b_email1"]),
                       ("email", None, p["b_email2"]), ("external", p["ns"], p["a_ext"]),
                       ("loyalty_card", None, p["a_card"]), ("phone", None, p["a_phone"]),
                       ("phone", None, p["b_phone"])],
                      key=lambda t: (t[0], t[1] or "", t[2]))
        self.assertEqual(got, want)
        self.assertEqual(doc["traits"], {
            "first_name": "Alicia", "birthday": "1990-04-01", "address": {"city": "Lyon"},
            "gender": "f",
            "attributes": {"tier": "silver", "color": "red", "interests": ["running", "yoga"]}})
        self.assertEqual(doc["trait_sources"]["first_name"]["source"], "pos")
        self.assertEqual(doc["trait_sources"]["attributes.color"]["source"], "crm-ui")
        agg = doc["aggregates"]
        self.assertEqual(agg["interaction_count"], 6, agg)
        self.assertEqual(agg["first_seen"], ts("2026-01-10T10:00:00"))
        self.assertEqual(agg["last_seen"], ts("2026-02-05T10:00:00"))
        self.assertEqual(agg["by_channel"], {"store": 2, "web": 2, "phone": 1, "email": 1})
        self.assertEqual(agg["by_type"], {"purchase": 2, "page_view": 1, "complaint": 1,
                                          "return": 1, "outbound_message": 1})
        self.assertEqual(agg["revenue"], {"EUR": 100, "USD": 50})
        self.assertEqual(agg["returns"], {"count": 1, "amount": {"EUR": 20}})
        self.assertEqual(agg["complaints"], 1)
        self.assertEqual(agg["cost"], {"EUR": 5, "USD": 2})
        self.assertEqual([(n["need"], n["count"], n["declared"]) for n in doc["needs"]],
                         [("running", 2, True), ("billing", 1, False), ("refund", 1, False),
                          ("shoes", 1, False), ("yoga", 0, True)])

    PAIR_TRAIT_CONFLICTS = [
        {"trait": "attributes.color", "survivor_value": "red", "absorbed_value": "blue",
         "winner": "survivor"},
        {"trait": "attributes.tier", "survivor_value": "gold", "absorbed_value": "silver",
         "winner": "absorbed"},
        {"trait": "first_name", "survivor_value": "Alice", "absorbed_value": "Alicia",
         "winner": "absorbed"},
    ]


# ---------------------------------------------------------------------------
# 1. blocked placeholder values

class PlaceholderTests(IdentityTestCase):
    def test_placeholder_storm_keeps_a_thousand_people_apart(self):
        run = uid()
        emails = ["storm-%s-%04d@example.com" % (run, i) for i in range(1000)]

        def item(i):
            return interaction(identifiers=[email_id(emails[i]), dict(ANON_DEVICE),
                                            dict(BLOCKED_PHONE)],
                               external_id="storm-%s-%04d" % (run, i),
                               occurred_at="2026-03-01T10:%02d:00Z" % (i % 60))

        expected_ignored = [blocked(ANON_DEVICE), blocked(BLOCKED_PHONE)]
        customer_of = {}
        # 900 through six batches of 150 (the body limit is 64 KiB), 100 one by one.
        for start in range(0, 900, 150):
            body = {"items": [item(i) for i in range(start, start + 150)]}
            self.assertLess(len(json.dumps(body)), harness.BODY_LIMIT)
            doc = self.assertJson(post("/v1/interactions:batch", body), 200)
            self.assertEqual((doc["created"], doc["duplicates"], doc["failed"]), (150, 0, 0),
                             doc["results"][:3])
            for res in doc["results"]:
                self.assertEqual(res["status"], "created", res)
                self.assertEqual(res["ignored"], expected_ignored, res)
                self.assertEqual(res.get("conflicts", []), [], res)
                customer_of[start + res["index"]] = res["customer_id"]
        for i in range(900, 1000):
            doc = self.ingest_ok(**{k: v for k, v in item(i).items()})
            self.assertEqual(doc["ignored"], expected_ignored, doc)
            customer_of[i] = doc["customer_id"]

        self.assertEqual(len(customer_of), 1000)
        self.assertEqual(len(set(customer_of.values())), 1000,
                         "the shared placeholders glued people together")
        for i in range(1000):
            cust = self.get_profile(customer_of[i])
            self.assertEqual(cust["customer_id"], customer_of[i])
            self.assertEqual([(d["kind"], d["value"]) for d in cust["identifiers"]],
                             [("email", emails[i])], cust)
            self.assertEqual(cust["merged_ids"], [], cust)
            self.assertEqual(cust["aggregates"]["interaction_count"], 1, cust)
        # The placeholders were never stored for anybody.
        self.assertProblem(lookup(device="anonymous"), 404, "not-found")
        self.assertProblem(lookup(phone="+10000000000"), 404, "not-found")
        # A resolve with a storm email and the placeholders finds that one person.
        body = self.assertJson(resolve([dict(ANON_DEVICE), email_id(emails[421]),
                                        dict(BLOCKED_PHONE)]), 200)
        self.assertEqual(body["customer_id"], customer_of[421])
        self.assertEqual(body["merged_ids"], [])
        self.assertEqual(body["ignored"], expected_ignored)

    def test_only_blocked_identifiers_are_rejected(self):
        ns = new_ns()
        only_blocked = [dict(ANON_DEVICE), phone_id("+1 000 000 0000"),
                        email_id(" TEST@test.com "), ext_id(" N/A ", ns), card_id("null")]
        normalised = [blocked(i) for i in (ANON_DEVICE, BLOCKED_PHONE, email_id("test@test.com"),
                                           ext_id("N/A", ns), card_id("NULL"))]
        doc = self.assertProblem(resolve(only_blocked), 422, "validation-failed",
                                 pointers=["/identifiers"])
        self.assertEqual(doc["ignored"], normalised, doc)

        # A single interaction: 422, and nothing is stored (the same idempotency
        # key is accepted afterwards as a new interaction).
        ext = "blocked-" + uid()
        doc = self.assertProblem(ingest(identifiers=only_blocked, external_id=ext), 422,
                                 "validation-failed", pointers=["/identifiers"])
        self.assertEqual(doc["ignored"], normalised, doc)

        # In a batch only that item fails, with its own pointer.
        good1, good2 = new_email("good"), new_email("good")
        body = {"items": [interaction(identifiers=[email_id(good1), dict(ANON_DEVICE)]),
                          interaction(identifiers=only_blocked),
                          interaction(identifiers=[email_id(good2)])]}
        doc = self.assertJson(post("/v1/interactions:batch", body), 200)
        self.assertEqual((doc["created"], doc["duplicates"], doc["failed"]), (2, 0, 1), doc)
        res = doc["results"][1]
        self.assertEqual((res["index"], res["status"]), (1, "failed"), res)
        self.assertProblemDoc(res["problem"], 422, "validation-failed", res)
        self.assertIn("/items/1/identifiers", [e["pointer"] for e in res["problem"]["errors"]])
        self.assertEqual(res["problem"]["ignored"], normalised, res)
        self.assertEqual(doc["results"][0]["ignored"], [blocked(ANON_DEVICE)], doc)
        self.assertEqual(doc["results"][0]["status"], "created")
        self.assertEqual(doc["results"][2]["status"], "created")
        self.assertNotIn("ignored", doc["results"][2], "ignored only when non-empty")

        for params in ({"device": "anonymous"}, {"phone": "+10000000000"},
                       {"email": "test@test.com"}, {"loyalty_card": "null"},
                       {"kind": "external", "namespace": ns, "value": "N/A"}):
            with self.subTest(lookup=params):
                self.assertProblem(lookup(**params), 404, "not-found")
        again = self.ingest_ok(identifiers=[email_id(new_email())], external_id=ext)
        self.assertEqual(again["status"], "created")

    def test_blocked_values_are_listed(self):
        items = self.assertJson(get("/v1/admin/blocked-identifiers"), 200)["items"]
        by_key = {(i["kind"], i["value"]): i for i in items}
        for key in (("*", "anonymous"), ("*", "null"), ("*", "n/a"), ("*", "0"),
                    ("*", "00000000-0000-0000-0000-000000000000"),
                    ("email", "test@test.com"), ("email", "a@a.com"),
                    ("email", "noreply@noreply.com"), ("phone", "+10000000000"),
                    ("phone", "+1234567890")):
            with self.subTest(key=key):
                self.assertIn(key, by_key)
                self.assertIs(by_key[key]["builtin"], True)
                self.assertIsInstance(by_key[key]["reason"], str)
                self.assertTimestamp(by_key[key]["created_at"])

    def test_custom_blocked_value_lifecycle(self):
        # The literal shop phone of the contract: normalised on the way in.
        unblock("phone", "+33123456789")  # left over by an interrupted run
        doc = self.assertJson(block("phone", "+33 1 23 45 67 89", "shop's shared phone"), 201)
        self.assertEqual({k: doc[k] for k in ("kind", "value", "reason", "builtin")},
                         {"kind": "phone", "value": "+33123456789",
                          "reason": "shop's shared phone", "builtin": False})
        self.assertTimestamp(doc["created_at"])
        items = self.assertJson(get("/v1/admin/blocked-identifiers"), 200)["items"]
        mine = [i for i in items if (i["kind"], i["value"]) == ("phone", "+33123456789")]
        self.assertEqual(len(mine), 1, items)
        self.assertIs(mine[0]["builtin"], False)
        self.assertEqual(mine[0]["reason"], "shop's shared phone")
        # Deleting accepts the value as written by people, too.
        self.assertEqual(self.assertJson(unblock("phone", "+33 1 23 45 67 89"), 200),
                         {"deleted": True})
        self.assertProblem(unblock("phone", "+33123456789"), 404, "not-found")
        items = self.assertJson(get("/v1/admin/blocked-identifiers"), 200)["items"]
        self.assertNotIn(("phone", "+33123456789"), [(i["kind"], i["value"]) for i in items])

        # Matching: an owner of a shop phone, then the phone is blocked.
        phone, spaced = new_phone()
        owner = self.create_customer([email_id(new_email("owner")), phone_id(phone)])
        self.addCleanup(unblock, "phone", phone)
        doc = self.assertJson(block("phone", spaced, "shared counter phone"), 201)
        self.assertEqual(doc["value"], phone)
        other_email = new_email("walkin")
        body = self.assertJson(resolve([email_id(other_email), phone_id(spaced)]), 201)
        self.assertNotEqual(body["customer_id"], owner)
        self.assertEqual(body["merged_ids"], [])
        self.assertEqual(body["ignored"], [blocked(phone_id(phone))])
        self.assertEqual([(d["kind"], d["value"]) for d in body["customer"]["identifiers"]],
                         [("email", other_email)])
        doc = self.assertProblem(ingest(identifiers=[phone_id(phone)]), 422,
                                 "validation-failed", pointers=["/identifiers"])
        self.assertEqual(doc["ignored"], [blocked(phone_id(phone))])
        owner_doc = self.get_profile(owner)
        self.assertEqual(owner_doc["aggregates"]["interaction_count"], 0)
        self.assertIn(phone, [d["value"] for d in owner_doc["identifiers"]])
        # Unblocked: the phone finds its owner again.
        self.assertEqual(self.assertJson(unblock("phone", phone), 200), {"deleted": True})
        later_email = new_email("later")
        body = self.assertJson(resolve([email_id(later_email), phone_id(spaced)]), 200)
        self.assertEqual(body["customer_id"], owner)
        self.assertEqual(body["ignored"], [])
        self.assertIn(later_email, [d["value"] for d in body["customer"]["identifiers"]])
        self.ingest_ok(identifiers=[phone_id(phone)], expect_customer=owner)

    def test_custom_blocked_value_for_every_kind(self):
        value = "shop-counter-" + uid()
        self.addCleanup(unblock, "*", value)
        doc = self.assertJson(block("*", "  SHOP-Counter-%s  " % value[13:].upper()), 201)
        self.assertEqual((doc["kind"], doc["value"], doc["builtin"]), ("*", value, False))
        self.assertEqual(doc["reason"], "blocked by an administrator")
        ns = new_ns()
        email = new_email()
        body = self.assertJson(resolve([email_id(email), device_id(value.upper()),
                                        ext_id(value, ns)]), 201)
        self.assertEqual(body["ignored"], [blocked(device_id(value.upper())),
                                           blocked(ext_id(value, ns))])
        self.assertEqual([d["kind"] for d in body["customer"]["identifiers"]], ["email"])
        doc = self.assertProblem(resolve([device_id(value)]), 422, "validation-failed",
                                 pointers=["/identifiers"])
        self.assertEqual(self.assertJson(unblock("*", value.upper()), 200), {"deleted": True})
        body = self.assertJson(resolve([device_id(value)]), 201)
        self.assertEqual(body["ignored"], [])

    def test_a_trailing_v_is_not_whitespace(self):
        # The raw value (sent when it differs from the normalised one) is
        # trimmed of white space before it is compared with blocked values;
        # the letter v is not white space (the trim set once spelled the
        # vertical tab E'\v', which PostgreSQL reads as the letter).
        value = "counter-" + uid()
        self.addCleanup(unblock, "*", value)
        self.assertJson(block("*", value), 201)

        def blocked_raw(raw):
            return harness.sql("SELECT blocked FROM crm.identifier_block(%s::jsonb)" % harness.lit(
                json.dumps({"kind": "device", "value": "x-" + value, "raw": raw})))
        self.assertEqual(blocked_raw(value + "v"), "f")
        self.assertEqual(blocked_raw("v" + value.upper()), "f")
        self.assertEqual(blocked_raw(" %s\t\x0b" % value.upper()), "t")

    def test_blocked_admin_validation(self):
        self.assertProblem(unblock(), 400, "invalid-query")
        self.assertProblem(unblock(kind="phone"), 400, "invalid-query")
        self.assertProblem(unblock(value="+33123456789"), 400, "invalid-query")
        self.assertProblem(unblock("fax", "123"), 400, "invalid-query")
        self.assertProblem(unblock("phone", "not a phone"), 400, "invalid-query")
        self.assertProblem(unblock("email", "nobody-%s@example.com" % uid()), 404, "not-found")
        cases = {
            "unknown kind": ({"kind": "fax", "value": "123"}, None),
            "kind missing": ({"value": "x"}, "/kind"),
            "value missing": ({"kind": "*"}, "/value"),
            "value not a string": ({"kind": "*", "value": 0}, "/value"),
            "empty value": ({"kind": "*", "value": "   "}, "/value"),
            "bad phone": ({"kind": "phone", "value": "call me"}, "/value"),
            "bad email": ({"kind": "email", "value": "no-at-sign"}, "/value"),
            "empty reason": ({"kind": "*", "value": "x-" + uid(), "reason": ""}, "/reason"),
            "unknown field": ({"kind": "*", "value": "x-" + uid(), "builtin": True},
                              "/builtin"),
        }
        for name, (body, pointer) in cases.items():
            with self.subTest(name):
                self.assertProblem(post("/v1/admin/blocked-identifiers", body), 422,
                                   "validation-failed", pointers=[pointer] if pointer else [])
        # None of them was stored.
        items = self.assertJson(get("/v1/admin/blocked-identifiers"), 200)["items"]
        self.assertFalse([i for i in items if i["value"].startswith("x-")], items)
        self.assertProblem(post("/v1/admin/blocked-identifiers", {"kind": "*", "value": "x"},
                                key=create_key("call_center")), 403, "forbidden")


class JunkPatternTests(IdentityTestCase):
    def test_builtin_patterns_and_raw_values(self):
        junk = [phone_id("+33 3333 33333"), card_id("0000"), card_id(" 7 7 7 "), card_id("-1"),
                email_id("anonymous@shop.fr"), email_id("Nobody@mail.com"),
                email_id("n/a@x.io"), email_id("noreply@shop.fr"),
                email_id("someone@example.org"), email_id("a@sub.example.net"),
                email_id("joe@test.com"), email_id("joe@foo.test"),
                email_id("joe@bar.invalid"), device_id("[object Object]"), device_id("NaN"),
                ext_id("undefined undefined", new_ns())]
        for ident in junk:
            with self.subTest(identifier=ident):
                email = "real-%s@ex.org" % uid()
                body = self.assertJson(resolve([email_id(email), ident]), 201)
                self.assertEqual([i["reason"] for i in body["ignored"]], ["blocked"], body)
                self.assertEqual([(d["kind"], d["value"]) for d in body["customer"]["identifiers"]],
                                 [("email", email)])
        # Real values next to them are kept.
        u = uid()
        real = [phone_id("+33 6 12 %s" % random_digits(6)), card_id("C-" + u),
                card_id("1234" + random_digits(6)), email_id("anonymous.%s@ex.org" % u),
                email_id("testing-%s@ex.org" % u), device_id("nan-" + u)]
        body = self.assertJson(resolve(real), 201)
        self.assertEqual(body["ignored"], [])
        self.assertEqual(len(body["customer"]["identifiers"]), len(real))
        items = self.assertJson(get("/v1/admin/blocked-identifiers"), 200)["items"]
        by_key = {(i["kind"], i["value"]): i for i in items}
        for key in (("phone", r"^\+([0-9])\1+$"), ("loyalty_card", r"^([0-9])\1*$"),
                    ("*", "[object object]"), ("*", "nan"), ("*", "undefined undefined")):
            with self.subTest(key=key):
                self.assertIn(key, by_key)
                self.assertIs(by_key[key]["builtin"], True)
                self.assertIs(by_key[key]["pattern"], key[1].startswith("^"))
        self.assertIs(by_key[("*", "anonymous")]["pattern"], False)

    def test_custom_pattern_lifecycle(self):
        tag = uid()[:8]
        rx = "^kiosk-%s-[0-9]+$" % tag
        self.addCleanup(unblock, "device", rx)
        doc = self.assertJson(post("/v1/admin/blocked-identifiers",
                                   {"kind": "device", "value": rx, "pattern": True,
                                    "reason": "shared kiosks"}), 201)
        self.assertEqual({k: doc[k] for k in ("kind", "value", "pattern", "reason", "builtin")},
                         {"kind": "device", "value": rx, "pattern": True,
                          "reason": "shared kiosks", "builtin": False})
        email = new_email()
        body = self.assertJson(resolve([email_id(email), device_id("KIOSK-%s-12" % tag)]), 201)
        self.assertEqual(body["ignored"], [blocked(device_id("KIOSK-%s-12" % tag))])
        self.assertProblem(post("/v1/admin/blocked-identifiers",
                                {"kind": "device", "value": "(", "pattern": True}), 422,
                           "validation-failed", pointers=["/value"])
        self.assertProblem(post("/v1/admin/blocked-identifiers",
                                {"kind": "device", "value": "x", "pattern": "yes"}), 422,
                           "validation-failed", pointers=["/pattern"])
        self.assertEqual(self.assertJson(request("DELETE", query(
            "/v1/admin/blocked-identifiers", {"kind": "device", "value": rx, "pattern": "true"})),
            200), {"deleted": True})
        body = self.assertJson(resolve([email_id(email), device_id("kiosk-%s-12" % tag)]), 200)
        self.assertEqual(body["ignored"], [])

    def test_many_patterns_and_values_of_one_kind(self):
        # Enough device blocks to use every form of crm.blocked_compiled
        # (sql/014_write_path.sql): five patterns that are joined into one
        # alternation, one with a back-reference that stays alone, and more
        # exact values than the compiled row keeps (the check then probes the
        # table). Each must block a new identifier and, on the known
        # customer's path, one stored before the block.
        tag = uid()[:8]
        patterns = ["^joined%d-%s-[0-9]+$" % (n, tag) for n in range(5)]
        patterns.append("^(x)\\1-%s$" % tag)
        values = ["exact%d-%s" % (n, tag) for n in range(70)]
        owner_devices = ["joined3-%s-7" % tag, "xx-%s" % tag, values[69]]
        owners = [self.create_customer([email_id(new_email("dev")), device_id(d)])
                  for d in owner_devices]
        for rx in patterns:
            self.addCleanup(request, "DELETE", query("/v1/admin/blocked-identifiers",
                                                     {"kind": "device", "value": rx,
                                                      "pattern": "true"}))
            self.assertJson(post("/v1/admin/blocked-identifiers",
                                 {"kind": "device", "value": rx, "pattern": True}), 201)
        for v in values:
            self.addCleanup(unblock, "device", v)
            self.assertJson(block("device", v), 201)
        junk = ["joined%d-%s-%d" % (n, tag, n * 11) for n in range(5)]
        junk += ["XX-%s" % tag, values[0], values[69].upper()]
        for value in junk:
            with self.subTest(new=value):
                body = self.assertJson(resolve([email_id(new_email()), device_id(value)]), 201)
                self.assertEqual(body["ignored"], [blocked(device_id(value))], body)
        for owner, value in zip(owners, owner_devices):
            with self.subTest(stored=value):
                doc = self.assertProblem(ingest(identifiers=[device_id(value)]), 422,
                                         "validation-failed", pointers=["/identifiers"])
                self.assertEqual(doc["ignored"], [blocked(device_id(value))])
                self.assertEqual(self.get_profile(owner)["aggregates"]["interaction_count"], 0)
        # Near misses are not blocked.
        for value in ["joined0-%s-x" % tag, "xy-%s" % tag, "exact70-%s" % tag]:
            with self.subTest(kept=value):
                body = self.assertJson(resolve([email_id(new_email()), device_id(value)]), 201)
                self.assertEqual(body["ignored"], [], body)
        # All gone again: the stored devices find their customers.
        self.doCleanups()
        for owner, value in zip(owners, owner_devices):
            with self.subTest(unblocked=value):
                self.ingest_ok(identifiers=[device_id(value)], expect_customer=owner)


class FullOwnerTests(IdentityTestCase):
    """Issue: a junk value on a customer at a limit must not hand that
    customer to every new person who sends it."""

    def test_minus_one_card_does_not_swallow_new_customers(self):
        run = uid()
        customers = []
        for n in range(1, 8):
            email = "p%d-%s@ex.org" % (n, run)
            body = self.assertJson(resolve([email_id(email), card_id("-1")],
                                           traits={"first_name": "P%d" % n}), 201)
            self.assertEqual(body["ignored"], [blocked(card_id("1"))], body)
            self.assertEqual([(d["kind"], d["value"]) for d in body["customer"]["identifiers"]],
                             [("email", email)])
            self.assertEqual(body["customer"]["traits"]["first_name"], "P%d" % n)
            customers.append(body["customer_id"])
        self.assertEqual(len(set(customers)), 7, customers)

    def full_owner(self, card):
        """A customer holding five emails (the limit) and an unblocked junk card."""
        emails = [new_email("owner") for _ in range(5)]
        owner = self.create_customer([email_id(e) for e in emails] + [card_id(card)],
                                     traits={"first_name": "Owner"})
        return owner, emails

    def check_new_person(self, doc, owner, card, email):
        self.assertNotEqual(doc["customer_id"], owner, doc)
        violation = [{"kind": "email", "count": 6, "limit": 5}]
        self.assertEqual(doc["ignored"], [dict(card_id(card), reason="match_would_exceed_limit",
                                               customer_id=owner, violations=violation)], doc)
        self.assertEqual(doc["conflicts"], [{
            "reason": "match_would_exceed_limit", "identifier": card_id(card),
            "customer_id": owner, "violations": violation}], doc)
        person = self.get_profile(doc["customer_id"])
        self.assertEqual([(d["kind"], d["value"]) for d in person["identifiers"]],
                         [("email", email)])
        return person

    def test_identifier_of_a_full_owner_is_not_used_for_matching(self):
        card = "JUNK" + uid().upper()
        owner, owner_emails = self.full_owner(card)
        before = self.get_profile(owner)
        source = "e2e-fullowner-" + uid()
        # resolve
        e1 = new_email("newcomer")
        body = self.assertJson(resolve([email_id(e1), card_id(card)], source=source,
                                       traits={"first_name": "Newcomer"}), 201)
        self.assertIs(body["created"], True)
        person = self.check_new_person(body, owner, card, e1)
        self.assertEqual(person["traits"]["first_name"], "Newcomer")
        # a single interaction
        e2 = new_email("newcomer")
        doc = self.assertJson(ingest(identifiers=[card_id(card), email_id(e2)]), 201)
        person = self.check_new_person(doc, owner, card, e2)
        self.assertEqual(person["aggregates"]["interaction_count"], 1)
        # a batch: two more people, each their own customer
        e3, e4 = new_email("newcomer"), new_email("newcomer")
        doc = self.assertJson(post("/v1/interactions:batch", {"items": [
            interaction(identifiers=[email_id(e3), card_id(card)]),
            interaction(identifiers=[card_id(card), email_id(e4)])]}), 200)
        self.assertEqual((doc["created"], doc["failed"]), (2, 0), doc)
        for res, email in zip(doc["results"], (e3, e4)):
            self.check_new_person(res, owner, card, email)
        self.assertNotEqual(doc["results"][0]["customer_id"], doc["results"][1]["customer_id"])
        # The owner is untouched, and still found by its card alone.
        self.assertEqual(self.get_profile(owner), before)
        self.assertEqual(self.assertJson(resolve([card_id(card)]), 200)["customer_id"], owner)
        rec = [c for c in self.assertJson(get(query("/v1/admin/identity-conflicts",
                                                    {"limit": 50})), 200)["items"]
               if c["source"] == source]
        self.assertEqual([(c["reason"], c["customer_ids"], c["identifiers"]) for c in rec],
                         [("match_would_exceed_limit", [owner], [card_id(card)])])
        # Named by one of its own emails too, the owner is the customer: the
        # new email is the identifier too many (as before).
        e5 = new_email("sixth")
        body = self.assertJson(resolve([card_id(card), email_id(owner_emails[2]),
                                        email_id(e5)]), 200)
        self.assertEqual(body["customer_id"], owner)
        self.assertEqual([(i["value"], i["reason"]) for i in body["ignored"]],
                         [(e5, "identifier_would_exceed_limit")])


# ---------------------------------------------------------------------------
# 2. per-kind limits and priorities

class LimitTests(IdentityTestCase):
    def conflicts(self, limit=500):
        doc = self.assertJson(get(query("/v1/admin/identity-conflicts", {"limit": limit})), 200)
        return doc["items"]

    def test_defaults(self):
        doc = self.assertJson(get("/v1/admin/identifier-limits"), 200)
        self.assertEqual(doc, {"items": DEFAULT_LIMITS})

    def test_two_external_ids_in_one_namespace_are_not_merged(self):
        ns = new_ns()
        b_email, a_email = new_email("older"), new_email("younger")
        # B is older (the oldest would survive a merge); A is found through the
        # most trusted kind (external, priority 1) and must be chosen.
        b = self.create_customer([ext_id("B-1", ns), email_id(b_email)])
        a = self.create_customer([ext_id("A-1", ns), email_id(a_email)])
        before = self.snapshot(a, b)
        source = "e2e-limits-" + uid()
        violation = {"kind": "external", "namespace": ns, "count": 2, "limit": 1}

        body = self.assertJson(resolve([email_id(b_email), ext_id("A-1", ns)], source=source),
                               200)
        self.assertEqual(body["customer_id"], a)
        self.assertIs(body["created"], False)
        self.assertEqual(body["merged_ids"], [])
        self.assertEqual(body["ignored"], [])
        self.assertEqual(body["conflicts"], [{
            "reason": "merge_would_exceed_limits", "customer_ids": sorted([a, b]),
            "chosen": a, "violations": [violation]}])
        self.assertEqual(body["customer"], before[a]["profile"])
        self.assertEqual(self.snapshot(a, b), before, "nothing may change")

        conflicts = self.conflicts()
        ids = [c["conflict_id"] for c in conflicts]
        self.assertEqual(ids, sorted(ids, reverse=True), "newest first")
        mine = [c for c in conflicts if c["source"] == source]
        self.assertEqual(len(mine), 1, conflicts[:5])
        c = mine[0]
        self.assertEqual(c["reason"], "merge_would_exceed_limits")
        self.assertEqual(c["customer_ids"], sorted([a, b]))
        self.assertEqual(c["identifiers"], [email_id(b_email), ext_id("A-1", ns)])
        self.assertEqual(c["detail"], {"chosen": a, "violations": [violation]})
        self.assertTimestamp(c["at"])
        self.assertIsInstance(c["conflict_id"], int)
        self.assertEqual(self.conflicts(limit=1)[0]["conflict_id"], c["conflict_id"])

        # The same through an interaction: stored on A, conflict reported.
        source2 = "e2e-limits-" + uid()
        doc = self.assertJson(ingest(identifiers=[ext_id("B-1", ns), email_id(a_email)],
                                     source=source2), 201)
        self.assertEqual(doc["customer_id"], b, "external B-1 is the most trusted match")
        self.assertEqual(doc["conflicts"], [{
            "reason": "merge_would_exceed_limits", "customer_ids": sorted([a, b]),
            "chosen": b, "violations": [violation]}])
        self.assertEqual(doc["ignored"], [])
        self.assertEqual(self.get_profile(b)["aggregates"]["interaction_count"], 1)
        self.assertEqual(self.get_profile(a)["merged_ids"], [])
        self.assertEqual(self.get_profile(b)["merged_ids"], [])
        latest = self.conflicts(limit=1)[0]
        self.assertEqual((latest["source"], latest["reason"]),
                         (source2, "merge_would_exceed_limits"))

    def test_priority_then_oldest_within_same_kind(self):
        # Both matched only through emails (same priority): the oldest is chosen.
        ns = new_ns()
        e1, e2 = new_email(), new_email()
        old = self.create_customer([ext_id("X-1", ns), email_id(e1)])
        young = self.create_customer([ext_id("X-2", ns), email_id(e2)])
        body = self.assertJson(resolve([email_id(e2), email_id(e1)]), 200)
        self.assertEqual(body["customer_id"], old)
        self.assertEqual(body["merged_ids"], [])
        self.assertEqual(body["conflicts"][0]["chosen"], old)
        self.assertEqual(body["conflicts"][0]["customer_ids"], sorted([old, young]))

    def test_sixth_email_is_not_attached_until_the_limit_is_raised(self):
        emails = [new_email("five") for _ in range(7)]
        phone, _ = new_phone()
        device = "dev-" + uid()
        cid = self.create_customer([email_id(e) for e in emails[:5]])
        source = "e2e-limit6-" + uid()
        body = self.assertJson(resolve([email_id(emails[0]), email_id(emails[5]),
                                        phone_id(phone), device_id(device)], source=source),
                               200)
        self.assertEqual(body["customer_id"], cid)
        self.assertEqual(body["conflicts"], [{
            "reason": "identifier_would_exceed_limit", "identifier": email_id(emails[5]),
            "customer_id": cid,
            "violations": [{"kind": "email", "count": 6, "limit": 5}]}])
        self.assertEqual(body["ignored"], [dict(
            email_id(emails[5]), reason="identifier_would_exceed_limit", customer_id=cid,
            violations=[{"kind": "email", "count": 6, "limit": 5}])])
        got = sorted((d["kind"], d["value"]) for d in body["customer"]["identifiers"])
        self.assertEqual(got, sorted([("email", e) for e in emails[:5]]
                                     + [("phone", phone), ("device", device)]))
        self.assertProblem(lookup(email=emails[5]), 404, "not-found")
        self.assertEqual(self.assertJson(lookup(device=device), 200)["customer_id"], cid)
        rec = [c for c in self.conflicts(limit=20) if c["source"] == source]
        self.assertEqual(len(rec), 1)
        self.assertEqual((rec[0]["reason"], rec[0]["customer_ids"], rec[0]["identifiers"],
                          rec[0]["detail"]),
                         ("identifier_would_exceed_limit", [cid], [email_id(emails[5])],
                          {"violations": [{"kind": "email", "count": 6, "limit": 5}]}))

        # An interaction with the sixth email: it still lands on the customer
        # (through the first email) and reports the same conflict.
        doc = self.assertJson(ingest(identifiers=[email_id(emails[5]), email_id(emails[0])]),
                              201)
        self.assertEqual(doc["customer_id"], cid)
        self.assertEqual(doc["conflicts"][0]["reason"], "identifier_would_exceed_limit")

        self.addCleanup(put_limit, {"kind": "email", "max_per_customer": 5})
        try:
            doc = self.assertJson(put_limit({"kind": "email", "max_per_customer": 6}), 200)
            self.assertEqual(doc, {"kind": "email", "max_per_customer": 6, "priority": 3})
            limits = self.assertJson(get("/v1/admin/identifier-limits"), 200)["items"]
            self.assertIn({"kind": "email", "max_per_customer": 6, "priority": 3}, limits)
            body = self.assertJson(resolve([email_id(emails[0]), email_id(emails[5])]), 200)
            self.assertEqual(body["customer_id"], cid)
            self.assertEqual(body["conflicts"], [])
            self.assertIn(emails[5], [d["value"] for d in body["customer"]["identifiers"]])
            self.assertEqual(self.assertJson(lookup(email=emails[5]), 200)["customer_id"], cid)
            body = self.assertJson(resolve([email_id(emails[0]), email_id(emails[6])]), 200)
            self.assertEqual(body["conflicts"][0]["violations"],
                             [{"kind": "email", "count": 7, "limit": 6}])
        finally:
            doc = self.assertJson(put_limit({"kind": "email", "max_per_customer": 5}), 200)
            self.assertEqual(doc, {"kind": "email", "max_per_customer": 5, "priority": 3})
        self.assertEqual(self.assertJson(get("/v1/admin/identifier-limits"), 200),
                         {"items": DEFAULT_LIMITS})

    def test_limit_validation(self):
        cases = {
            "unknown kind": ({"kind": "fax", "max_per_customer": 2}, "/kind"),
            "kind missing": ({"max_per_customer": 2}, "/kind"),
            "max 0": ({"kind": "email", "max_per_customer": 0}, "/max_per_customer"),
            "max 1001": ({"kind": "email", "max_per_customer": 1001}, "/max_per_customer"),
            "max string": ({"kind": "email", "max_per_customer": "6"}, "/max_per_customer"),
            "max fraction": ({"kind": "email", "max_per_customer": 5.5}, "/max_per_customer"),
            "max null": ({"kind": "email", "max_per_customer": None}, "/max_per_customer"),
            "priority 0": ({"kind": "email", "priority": 0}, "/priority"),
            "priority 101": ({"kind": "email", "priority": 101}, "/priority"),
            "unknown field": ({"kind": "email", "max": 6}, "/max"),
        }
        for name, (body, pointer) in cases.items():
            with self.subTest(name):
                self.assertProblem(put_limit(body), 422, "validation-failed", pointers=[pointer])
        self.assertProblem(request("PUT", "/v1/admin/identifier-limits", raw=b"{nope"), 400,
                           "malformed-json")
        # Boundaries are accepted; a bare kind changes nothing.
        self.addCleanup(put_limit, {"kind": "device", "max_per_customer": 20, "priority": 5})
        self.assertEqual(self.assertJson(put_limit({"kind": "device", "max_per_customer": 1000,
                                                    "priority": 100}), 200),
                         {"kind": "device", "max_per_customer": 1000, "priority": 100})
        self.assertEqual(self.assertJson(put_limit({"kind": "device", "max_per_customer": 20,
                                                    "priority": 5}), 200),
                         {"kind": "device", "max_per_customer": 20, "priority": 5})
        self.assertEqual(self.assertJson(put_limit({"kind": "device"}), 200),
                         {"kind": "device", "max_per_customer": 20, "priority": 5})
        self.assertEqual(self.assertJson(get("/v1/admin/identifier-limits"), 200),
                         {"items": DEFAULT_LIMITS})
        for bad in ("0", "501", "x", ""):
            with self.subTest(limit=bad):
                self.assertProblem(get(query("/v1/admin/identity-conflicts", {"limit": bad})),
                                   400, "invalid-query")
        cc = create_key("call_center")
        self.assertProblem(request("PUT", "/v1/admin/identifier-limits",
                                   json_body={"kind": "email", "max_per_customer": 6}, key=cc),
                           403, "forbidden")
        self.assertProblem(get("/v1/admin/identity-conflicts", key=cc), 403, "forbidden")
        self.assertEqual(self.assertJson(get("/v1/admin/identifier-limits"), 200),
                         {"items": DEFAULT_LIMITS})


# ---------------------------------------------------------------------------
# 3. dry run

class DryRunTests(IdentityTestCase):
    def test_dry_run_writes_nothing(self):
        a, b, p = self.build_pair()
        before = self.snapshot(a, b)
        self.assertEqual(before[a]["merges"], {"customer_id": a, "items": [],
                                              "detachments": []})

        doc = self.merge_ok(a, b, dry_run=True, reason="looks like the same person")
        self.assertEqual((doc["survivor_id"], doc["absorbed_id"]), (a, b))
        self.assertEqual(doc["limit_violations"], [])
        self.assertEqual(doc["trait_conflicts"], self.PAIR_TRAIT_CONFLICTS)
        self.check_pair_merged(doc["customer"], a, b, p)

        self.assertEqual(self.snapshot(a, b), before, "a dry run must write nothing")
        self.assertNotIn("merged_into", self.get_profile(b))
        # Again, through the absorbed side's identifiers: still nothing.
        self.merge_ok(b, a, dry_run=True)
        self.assertEqual(self.snapshot(a, b), before)

        # The real merge produces what the dry run announced.
        real = self.merge_ok(a, b)
        self.assertEqual(real["trait_conflicts"], doc["trait_conflicts"])
        strip = lambda d: {k: v for k, v in d.items() if k != "updated_at"}  # noqa: E731
        self.assertEqual(strip(real["customer"]), strip(doc["customer"]))


# ---------------------------------------------------------------------------
# 4. merge, then unmerge

class UnmergeTests(IdentityTestCase):
    def test_admin_merge_then_unmerge_restores_both_exactly(self):
        a, b, p = self.build_pair()
        before = self.snapshot(a, b)

        doc = self.merge_ok(a, b, reason="agent: same person")
        self.assertEqual((doc["survivor_id"], doc["absorbed_id"]), (a, b))
        self.assertEqual(doc["trait_conflicts"], self.PAIR_TRAIT_CONFLICTS)
        self.assertEqual(doc["limit_violations"], [])
        self.check_pair_merged(doc["customer"], a, b, p)
        merged = self.get_profile(a)
        self.assertEqual(merged, doc["customer"])
        r = profile(b)
        via_b = self.assertJson(r, 200)
        self.assertEqual(via_b, dict(merged, requested_id=b, merged_into=a))
        self.assertEqual(r.headers.get("Content-Location"), "/v1/customers/%s" % a)
        items = self.all_items(a)
        self.assertEqual(len(items), 6)
        self.assertEqual({i["customer_id"] for i in items}, {a})
        self.assertEqual(sorted(i["interaction_id"] for i in items),
                         sorted(i["interaction_id"] for c in (a, b)
                                for i in before[c]["timeline"]))
        self.assertEqual(self.assertJson(timeline(b, limit=500), 200)["items"], items)
        self.assertEqual(self.assertJson(lookup(email=p["b_email1"]), 200)["customer_id"], a)

        res = self.unmerge_ok(b, reason="agent: two people after all")
        self.assertEqual(res["survivor_id"], a)
        self.assertIsInstance(res["merge_id"], int)
        after = self.snapshot(a, b)
        for cid in (a, b):
            self.assertEqual(after[cid]["profile"], before[cid]["profile"], cid)
            self.assertEqual(after[cid]["timeline"], before[cid]["timeline"], cid)
        self.assertEqual(self.assertJson(lookup(email=p["b_email1"]), 200)["customer_id"], b)
        self.assertEqual(self.assertJson(lookup(phone=p["b_phone"]), 200)["customer_id"], b)
        self.assertEqual(self.assertJson(lookup(email=p["a_email"]), 200)["customer_id"], a)
        # The answer carries both profiles as they are after the unmerge.
        self.assertEqual(res["customer"], before[b]["profile"])
        self.assertEqual(res["survivor"], before[a]["profile"])

    def test_automatic_merge_then_unmerge_restores_both_exactly(self):
        a, b, p = self.build_pair()
        before = self.snapshot(a, b)
        source = "e2e-auto-" + uid()
        trigger = [email_id(p["b_email1"]), email_id(p["a_email"])]
        body = self.assertJson(resolve(trigger, source=source), 200)
        self.assertEqual(body["customer_id"], a, "the oldest customer survives")
        self.assertEqual(body["merged_ids"], [b])
        self.assertEqual(body["conflicts"], [])
        self.check_pair_merged(body["customer"], a, b, p)
        hist = self.history_items(b)
        self.assertEqual(len(hist), 1, hist)
        self.assertEqual((hist[0]["survivor_id"], hist[0]["absorbed_id"], hist[0]["actor"],
                          hist[0]["trigger_identifiers"]), (a, b, source, trigger))
        self.assertIsInstance(hist[0]["reason"], str)

        res = self.unmerge_ok(b)
        self.assertEqual(res["survivor_id"], a)
        self.assertEqual(res["merge_id"], hist[0]["merge_id"])
        after = self.snapshot(a, b)
        for cid in (a, b):
            self.assertEqual(after[cid]["profile"], before[cid]["profile"], cid)
            self.assertEqual(after[cid]["timeline"], before[cid]["timeline"], cid)

    def test_activity_after_the_merge_follows_its_address(self):
        a_email, b_email = new_email("al"), new_email("bob")
        a = self.create_customer([email_id(a_email)], traits={"first_name": "Al"})
        b = self.create_customer([email_id(b_email)], traits={"first_name": "Bob"})
        a_old = self.ingest_ok(a, occurred_at="2026-04-01T10:00:00Z")["interaction_id"]
        b_old = self.ingest_ok(b, occurred_at="2026-04-02T10:00:00Z")["interaction_id"]
        self.merge_ok(a, b)
        self.assertEqual(self.get_profile(a)["traits"]["first_name"], "Bob")

        by_b_email = self.ingest_ok(identifiers=[email_id(b_email)], expect_customer=a,
                                    type="purchase", amount=30, currency="EUR",
                                    tags=["gift"], occurred_at="2026-04-10T10:00:00Z")
        by_b_id = self.ingest_ok(b, channel="phone", type="support_call", tags=["billing"],
                                 occurred_at="2026-04-11T10:00:00Z")
        self.assertEqual(by_b_id["customer_id"], a)
        by_a_email = self.ingest_ok(identifiers=[email_id(a_email)], expect_customer=a,
                                    type="purchase", amount=70, currency="EUR",
                                    occurred_at="2026-04-12T10:00:00Z")
        by_a_id = self.ingest_ok(a, channel="store", type="visit",
                                 occurred_at="2026-04-13T10:00:00Z")
        self.assertJson(patch("/v1/customers/%s/traits" % b,
                              {"source": "crm-ui", "traits": {"last_name": "Newman"}}), 200)
        self.assertEqual(self.get_profile(a)["aggregates"]["interaction_count"], 6)

        res = self.unmerge_ok(b)
        self.assertEqual(res["survivor_id"], a)
        self.assertEqual(sorted(i["interaction_id"] for i in self.all_items(b)),
                         sorted([b_old, by_b_email["interaction_id"],
                                 by_b_id["interaction_id"]]))
        self.assertEqual(sorted(i["interaction_id"] for i in self.all_items(a)),
                         sorted([a_old, by_a_email["interaction_id"],
                                 by_a_id["interaction_id"]]))
        pa, pb = self.get_profile(a), self.get_profile(b)
        self.assertEqual(pb["customer_id"], b)
        self.assertNotIn("merged_into", pb)
        self.assertEqual(pa["merged_ids"], [])
        self.assertEqual((pa["aggregates"]["interaction_count"],
                          pb["aggregates"]["interaction_count"]), (3, 3))
        self.assertEqual(pa["aggregates"]["revenue"], {"EUR": 70})
        self.assertEqual(pb["aggregates"]["revenue"], {"EUR": 30})
        self.assertEqual(pa["aggregates"]["by_type"], {"page_view": 1, "purchase": 1,
                                                       "visit": 1})
        self.assertEqual(pb["aggregates"]["by_type"], {"page_view": 1, "purchase": 1,
                                                       "support_call": 1})
        self.assertEqual(pa["needs"], [])
        self.assertEqual([(n["need"], n["count"]) for n in pb["needs"]],
                         [("billing", 1), ("gift", 1)])
        # The survivor gets its own first name back; what was written on the
        # merged customer after the merge stays with the survivor.
        self.assertEqual(pa["traits"].get("first_name"), "Al")
        self.assertEqual(pa["traits"].get("last_name"), "Newman")
        self.assertEqual(pb["traits"].get("first_name"), "Bob")
        self.assertNotIn("last_name", pb["traits"])
        self.assertEqual([d["value"] for d in pa["identifiers"]], [a_email])
        self.assertEqual([d["value"] for d in pb["identifiers"]], [b_email])

    def test_chain_unmerge_keeps_earlier_merge(self):
        c = self.create_customer([email_id(new_email("c")), phone_id(new_phone()[0])],
                                 traits={"last_name": "Carter"})
        b = self.create_customer([email_id(new_email("b"))], traits={"first_name": "Bea"})
        a = self.create_customer([email_id(new_email("a"))], traits={"first_name": "Ann"})
        self.ingest_ok(c, type="purchase", amount=10, currency="EUR", tags=["tea"],
                       occurred_at="2026-05-01T10:00:00Z")
        self.ingest_ok(b, channel="app", occurred_at="2026-05-02T10:00:00Z")
        self.ingest_ok(a, channel="store", type="visit", occurred_at="2026-05-03T10:00:00Z")
        s0 = self.snapshot(a, b, c)

        self.merge_ok(b, c)
        s1 = self.snapshot(a, b)
        self.assertEqual(s1[b]["profile"]["merged_ids"], [c])
        self.merge_ok(a, b)
        pa = self.get_profile(a)
        self.assertEqual(pa["merged_ids"], [c, b])
        self.assertEqual(pa["aggregates"]["interaction_count"], 3)
        self.assertEqual(self.get_profile(c)["merged_into"], a)

        res = self.unmerge_ok(b)
        self.assertEqual(res["survivor_id"], a)
        s2 = self.snapshot(a, b)
        self.assertEqual(s2[a]["profile"], s1[a]["profile"])
        self.assertEqual(s2[b]["profile"], s1[b]["profile"])
        self.assertEqual(s2[a]["timeline"], s1[a]["timeline"])
        self.assertEqual(s2[b]["timeline"], s1[b]["timeline"])
        via_c = self.get_profile(c)
        self.assertEqual(via_c["merged_into"], b)
        self.assertEqual(via_c["customer_id"], b)
        self.assertEqual(via_c["merged_ids"], [c])
        self.assertEqual(via_c["traits"]["last_name"], "Carter")
        doc = self.assertJson(history(c), 200)
        self.assertEqual(doc["customer_id"], b)
        self.assertEqual([(i["survivor_id"], i["absorbed_id"], "unmerged_at" in i)
                          for i in doc["items"]], [(b, c, False), (a, b, True)])

        self.unmerge_ok(c)
        s3 = self.snapshot(a, b, c)
        for cid in (a, b, c):
            self.assertEqual(s3[cid]["profile"], s0[cid]["profile"], cid)
            self.assertEqual(s3[cid]["timeline"], s0[cid]["timeline"], cid)


    def three_customers(self, names):
        """One customer per name, created (and traits written) in that order:
        an email, first_name = name, one trait only it has, one interaction."""
        out = {}
        for n, name in enumerate(names):
            cid = self.create_customer(
                [email_id(new_email(name.lower())), phone_id(new_phone()[0])],
                traits={"first_name": name, "attributes": {"only_" + name.lower(): n}})
            self.ingest_ok(cid, channel="store", type="purchase", amount=10 * (n + 1),
                           currency="EUR", tags=["tag-" + name.lower()],
                           occurred_at="2026-06-0%dT10:00:00Z" % (n + 1))
            out[name] = cid
        return out

    def test_inner_unmerge_while_merged_then_outer(self):
        ids = self.three_customers(["Cat", "Bea", "Ann"])
        a, b, c = ids["Ann"], ids["Bea"], ids["Cat"]
        s0 = self.snapshot(a, b, c)
        self.merge_ok(b, c)
        self.merge_ok(a, b)
        # Undo the inner merge first (C out of B, which lives inside A now).
        self.assertEqual(self.unmerge_ok(c)["survivor_id"], a)
        s1 = self.snapshot(c)
        self.assertEqual(s1[c]["profile"], s0[c]["profile"])
        self.assertEqual(s1[c]["timeline"], s0[c]["timeline"])
        pa = self.get_profile(a)
        self.assertEqual(pa["merged_ids"], [b])
        self.assertEqual(pa["aggregates"]["interaction_count"], 2)
        # Then the outer one: three separate customers, exactly as at the start.
        self.unmerge_ok(b)
        s2 = self.snapshot(a, b, c)
        for cid in (a, b, c):
            with self.subTest(customer=[k for k, v in ids.items() if v == cid][0]):
                self.assertNotIn("merged_into", s2[cid]["profile"])
                self.assertEqual(s2[cid]["profile"], s0[cid]["profile"])
                self.assertEqual(s2[cid]["timeline"], s0[cid]["timeline"])

    def test_unmerge_after_the_survivor_was_absorbed(self):
        ids = self.three_customers(["Ann", "Bea", "Dee"])
        a, b, d = ids["Ann"], ids["Bea"], ids["Dee"]
        s0 = self.snapshot(a, b, d)
        self.merge_ok(a, b)
        self.merge_ok(d, a)
        self.assertEqual(self.get_profile(b)["merged_into"], d)
        # B out of D (its survivor A was absorbed by D meanwhile).
        self.assertEqual(self.unmerge_ok(b)["survivor_id"], d)
        s1 = self.snapshot(b)
        self.assertEqual(s1[b]["profile"], s0[b]["profile"])
        self.assertEqual(s1[b]["timeline"], s0[b]["timeline"])
        pd = self.get_profile(d)
        self.assertEqual(pd["merged_ids"], [a])
        self.assertEqual(pd["aggregates"]["interaction_count"], 2)
        self.assertEqual(pd["traits"]["first_name"], "Dee")
        # Then A out of D: three separate customers, exactly as at the start.
        self.assertEqual(self.unmerge_ok(a)["survivor_id"], d)
        s2 = self.snapshot(a, b, d)
        for cid in (a, b, d):
            with self.subTest(customer=[k for k, v in ids.items() if v == cid][0]):
                self.assertNotIn("merged_into", s2[cid]["profile"])
                self.assertEqual(s2[cid]["profile"], s0[cid]["profile"])
                self.assertEqual(s2[cid]["timeline"], s0[cid]["timeline"])


# ---------------------------------------------------------------------------
# 5. merge history

class HistoryTests(IdentityTestCase):
    def test_history_entries(self):
        a = self.create_customer([email_id(new_email())], traits={"first_name": "Ann"})
        b = self.create_customer([email_id(new_email())], traits={"first_name": "Anne"})
        self.ingest_ok(b, type="purchase", amount=5, currency="EUR")
        before = self.snapshot(a, b)
        self.assertEqual(self.assertJson(history(a), 200),
                         {"customer_id": a, "items": [], "detachments": []})
        self.merge_ok(a, b, reason="duplicate found by agent")
        doc = self.assertJson(history(b), 200)
        self.assertEqual(doc["customer_id"], a, "absorbed ids lead to the survivor")
        self.assertEqual(len(doc["items"]), 1, doc)
        item = doc["items"][0]
        self.assertIsInstance(item["merge_id"], int)
        self.assertEqual({k: item[k] for k in ("survivor_id", "absorbed_id", "actor", "reason",
                                               "trigger_identifiers")},
                         {"survivor_id": a, "absorbed_id": b, "actor": ADMIN_ACTOR,
                          "reason": "duplicate found by agent", "trigger_identifiers": []})
        self.assertTimestamp(item["merged_at"])
        for key in ("unmerged_at", "unmerged_by", "unmerge_reason"):
            self.assertNotIn(key, item)
        self.assertEqual(self.assertJson(history(a), 200), doc)

        self.unmerge_ok(b, reason="two people")
        for cid in (a, b):
            doc = self.assertJson(history(cid), 200)
            self.assertEqual(doc["customer_id"], cid)
            self.assertEqual(len(doc["items"]), 1, doc)
            item2 = doc["items"][0]
            self.assertEqual(item2["merge_id"], item["merge_id"])
            self.assertEqual(item2["merged_at"], item["merged_at"])
            self.assertTimestamp(item2["unmerged_at"])
            self.assertGreaterEqual(item2["unmerged_at"], item2["merged_at"])
            self.assertEqual(item2["unmerged_by"], ADMIN_ACTOR)
            self.assertEqual(item2["unmerge_reason"], "two people")
        # Default reasons.
        self.merge_ok(a, b)
        self.unmerge_ok(b)
        items = self.history_items(a)
        self.assertEqual(len(items), 2)
        self.assertEqual((items[1]["reason"], items[1]["unmerge_reason"]),
                         ("manual merge", "manual unmerge"))
        self.assertGreater(items[1]["merge_id"], items[0]["merge_id"])
        # Two merge/unmerge cycles leave both customers as they were.
        after = self.snapshot(a, b)
        for cid in (a, b):
            self.assertEqual(after[cid]["profile"], before[cid]["profile"])
            self.assertEqual(after[cid]["timeline"], before[cid]["timeline"])

    def test_history_through_chains_and_errors(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        c = self.create_customer([email_id(new_email())])
        self.merge_ok(b, c)
        self.merge_ok(a, b)
        for cid in (a, b, c):
            with self.subTest(cid=cid):
                doc = self.assertJson(history(cid), 200)
                self.assertEqual(doc["customer_id"], a)
                self.assertEqual([(i["survivor_id"], i["absorbed_id"]) for i in doc["items"]],
                                 [(b, c), (a, b)])
        self.assertProblem(history(str(uuid.uuid4())), 404, "not-found")
        self.assertProblem(get("/v1/customers/not-a-uuid/merges"), 400, "invalid-uuid")

    def test_history_roles(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        self.merge_ok(a, b)
        cc, mk = create_key("call_center"), create_key("marketing")
        doc = self.assertJson(history(b, key=cc), 200)
        self.assertEqual(doc["customer_id"], a)
        self.assertEqual(len(doc["items"]), 1)
        self.assertProblem(history(b, key=mk), 403, "forbidden")
        self.assertProblem(history(b, key=None), 401, "unauthorized")
        # Merging and unmerging stay admin-only.
        self.assertProblem(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b},
                                key=cc), 403, "forbidden")
        self.assertProblem(post("/v1/admin/unmerge", {"customer_id": b}, key=cc), 403,
                           "forbidden")
        self.assertProblem(post("/v1/admin/unmerge", {"customer_id": b}, key=mk), 403,
                           "forbidden")
        self.assertEqual(self.get_profile(b)["merged_into"], a)


# ---------------------------------------------------------------------------
# 6. errors

class MergeErrorTests(IdentityTestCase):
    def test_unknown_and_same(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        self.assertProblem(merge(a, str(uuid.uuid4())), 404, "not-found")
        self.assertProblem(merge(str(uuid.uuid4()), a), 404, "not-found")
        self.assertProblem(merge(a, a), 409, "conflict")
        self.assertProblem(merge(a, a, dry_run=True), 409, "conflict")
        self.merge_ok(a, b)
        # Now one customer, whichever way round.
        self.assertProblem(merge(a, b), 409, "conflict")
        self.assertProblem(merge(b, a), 409, "conflict")
        self.assertEqual(self.history_items(a)[-1]["absorbed_id"], b)
        self.assertEqual(len(self.history_items(a)), 1)

    def test_absorbed_ids_are_followed(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        c = self.create_customer([email_id(new_email())])
        self.merge_ok(b, c)
        doc = self.merge_ok(a, c)  # c stands for b now
        self.assertEqual((doc["survivor_id"], doc["absorbed_id"]), (a, b))
        self.assertEqual(doc["customer"]["merged_ids"], [c, b])

    def test_limit_conflict_needs_force(self):
        ns = new_ns()
        a = self.create_customer([ext_id("A-1", ns), email_id(new_email())],
                                 traits={"first_name": "Ann"})
        b = self.create_customer([ext_id("B-1", ns), email_id(new_email())],
                                 traits={"first_name": "Anne"})
        before = self.snapshot(a, b)
        violation = [{"kind": "external", "namespace": ns, "count": 2, "limit": 1}]
        doc = self.assertProblem(merge(a, b), 409, "conflict")
        self.assertEqual(doc["limit_violations"], violation)
        self.assertEqual(doc["trait_conflicts"], [
            {"trait": "first_name", "survivor_value": "Ann", "absorbed_value": "Anne",
             "winner": "absorbed"}])
        doc = self.assertProblem(merge(a, b, dry_run=True), 409, "conflict")
        self.assertEqual(doc["limit_violations"], violation)
        self.assertEqual(self.snapshot(a, b), before)
        dry = self.merge_ok(a, b, dry_run=True, force=True)
        self.assertEqual(dry["limit_violations"], violation)
        self.assertEqual(self.snapshot(a, b), before)

        doc = self.merge_ok(a, b, force=True, reason="verified by phone")
        self.assertEqual(doc["limit_violations"], violation)
        self.assertEqual(doc["customer"]["merged_ids"], [b])
        self.assertEqual(sorted(d["value"] for d in doc["customer"]["identifiers"]
                                if d["kind"] == "external"), ["A-1", "B-1"])
        self.assertEqual(doc["customer"]["traits"]["first_name"], "Anne")
        self.assertEqual(self.get_profile(b)["merged_into"], a)
        # And it can be undone.
        self.unmerge_ok(b)
        after = self.snapshot(a, b)
        for cid in (a, b):
            self.assertEqual(after[cid]["profile"], before[cid]["profile"])

    def test_unmerge_errors(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        self.assertProblem(unmerge(a), 409, "conflict")
        self.merge_ok(a, b)
        self.assertProblem(unmerge(a), 409, "conflict")  # the survivor is not merged
        self.unmerge_ok(b)
        self.assertProblem(unmerge(b), 409, "conflict")  # already undone
        self.assertNotIn("merged_into", self.get_profile(b))

    def test_validation(self):
        a = self.create_customer([email_id(new_email())])
        b = self.create_customer([email_id(new_email())])
        cases = {
            "bad survivor uuid": ({"survivor_id": "nope", "absorbed_id": b}, ["/survivor_id"]),
            "bad absorbed uuid": ({"survivor_id": a, "absorbed_id": a[:-1]}, ["/absorbed_id"]),
            "number id": ({"survivor_id": 7, "absorbed_id": b}, ["/survivor_id"]),
            "missing ids": ({}, ["/survivor_id", "/absorbed_id"]),
            "unknown field": ({"survivor_id": a, "absorbed_id": b, "dryrun": True},
                              ["/dryrun"]),
            "dry_run not bool": ({"survivor_id": a, "absorbed_id": b, "dry_run": "yes"},
                                 ["/dry_run"]),
            "force not bool": ({"survivor_id": a, "absorbed_id": b, "force": 1}, ["/force"]),
            "empty reason": ({"survivor_id": a, "absorbed_id": b, "reason": ""}, ["/reason"]),
            "long reason": ({"survivor_id": a, "absorbed_id": b, "reason": "r" * 201},
                            ["/reason"]),
        }
        for name, (body, pointers) in cases.items():
            with self.subTest(name):
                self.assertProblem(post("/v1/admin/merges", body), 422, "validation-failed",
                                   pointers=pointers)
        self.assertEqual(self.history_items(a), [])
        self.assertEqual(self.history_items(b), [])
        self.merge_ok(a, b)
        ucases = {
            "bad uuid": ({"customer_id": "x"}, ["/customer_id"]),
            "missing": ({}, ["/customer_id"]),
            "unknown field": ({"customer_id": b, "survivor_id": a}, ["/survivor_id"]),
            "empty reason": ({"customer_id": b, "reason": ""}, ["/reason"]),
        }
        for name, (body, pointers) in ucases.items():
            with self.subTest(name):
                self.assertProblem(post("/v1/admin/unmerge", body), 422, "validation-failed",
                                   pointers=pointers)
        self.assertEqual(self.get_profile(b)["merged_into"], a)
        self.assertProblem(request("POST", "/v1/admin/merges", raw=b"[1]"), 400,
                           "malformed-json")


# ---------------------------------------------------------------------------
# 7. one lock order: no deadlocks between batch ingest, resolve, merges and traits

def deadlocks():
    return int(harness.sql("SELECT deadlocks FROM pg_stat_database "
                           "WHERE datname = current_database()"))


def client_backends():
    return int(harness.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND application_name = 'crm-server'"))


def lock_storm(port, threads=16, per_thread=100, batches=True, seed=7):
    """A mixed storm on the server at `port`: resolves of known customers,
    resolves that merge pairs of customers, batches of 8 items whose
    identifier pairs overlap between batches (and whose customers come in
    random order), interactions written by id to customers about to be
    absorbed, redeliveries of shared idempotency keys, traits PATCHes, and
    admin merges and unmerges of customers the others write to. Returns
    (failures, seconds): every answer that was not the expected one."""
    import random as rnd
    import threading
    import time
    run = uid()
    n = 24
    emails = ["lock-%s-%02d@ex.org" % (run, i) for i in range(n)]
    phones = ["+3361%s%02d" % (random_digits(5), i) for i in range(n)]
    ids = []
    for i in range(n):
        r = resolve([email_id(emails[i]), phone_id(phones[i])], source="storm", port=port)
        assert r.status == 201, r
        ids.append(r.body["customer_id"])
    # Pairs (older, younger): the younger is absorbed by a merging resolve
    # during the storm while others still write to its id.
    pairs = [(2 * k, 2 * k + 1) for k in range(n // 2)]
    # Four more pairs that admins merge and unmerge during the storm.
    admin_pairs = []
    for k in range(4):
        pair = []
        for side in "ab":
            r = resolve([email_id("lock-%s-adm%d%s@ex.org" % (run, k, side))], source="storm",
                        port=port)
            assert r.status == 201, r
            pair.append(r.body["customer_id"])
        admin_pairs.append(tuple(pair))
    by_id = [ids[b] for _, b in pairs] + [c for pair in admin_pairs for c in pair]
    failures = []
    lock = threading.Lock()

    def fail(what, r):
        with lock:
            failures.append("%s: HTTP %d %r" % (what, r.status, r.body))

    def item(rng, t, j, k):
        i = rng.randrange(n)
        pick = rng.random()
        ext = ("dup-%s-%d" % (run, rng.randrange(40)) if pick < 0.1
               else "st-%s-%d-%d-%d" % (run, t, j, k))
        if pick < 0.35:
            return interaction(identifiers=[email_id(emails[i]), phone_id(phones[i])],
                               external_id=ext, source="storm", tags=["t%d" % (k % 3)])
        if pick < 0.55:
            return interaction(identifiers=[phone_id(phones[i]),
                                            {"kind": "device",
                                             "value": "dev-%s-%d-%d" % (run, i, rng.randrange(6))}],
                               external_id=ext, source="storm")
        if pick < 0.8:
            return interaction(customer_id=rng.choice(by_id), external_id=ext,
                               source="storm", type="purchase", amount=5, currency="EUR")
        return interaction(customer_id=ids[i], external_id=ext, source="storm",
                           channel="store", type="purchase", amount=1, currency="EUR")

    def worker(t):
        rng = rnd.Random(seed * 1000 + t)
        for j in range(per_thread):
            op = rng.random()
            if op < 0.3 and batches:
                body = {"items": [item(rng, t, j, k) for k in range(8)]}
                r = post("/v1/interactions:batch", body, port=port)
                if r.status != 200 or r.body.get("failed") != 0:
                    fail("batch", r)
            elif op < 0.5:
                i = rng.randrange(n)
                r = resolve([phone_id(phones[i]), email_id(emails[i])], source="storm",
                            port=port)
                if r.status != 200:
                    fail("resolve", r)
            elif op < 0.6:
                a, b = rng.choice(pairs)
                r = resolve([email_id(emails[b]), email_id(emails[a])], source="storm",
                            port=port)
                if r.status != 200:
                    fail("merging resolve", r)
            elif op < 0.8:
                r = post("/v1/interactions", item(rng, t, j, 0), port=port)
                if r.status not in (200, 201):
                    fail("interaction", r)
            elif op < 0.85:
                a, b = rng.choice(admin_pairs)
                if rng.random() < 0.5:
                    a, b = b, a
                r = post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b}, port=port)
                if r.status not in (200, 409):  # 409: already one customer
                    fail("admin merge", r)
                r = post("/v1/admin/unmerge", {"customer_id": b}, port=port)
                if r.status not in (200, 409):  # 409: not merged (any more)
                    fail("unmerge", r)
            else:
                cid = ids[rng.randrange(n)]
                r = patch("/v1/customers/%s/traits" % cid,
                          {"source": "storm", "traits": {"attributes": {"t%d" % t: j}}},
                          port=port)
                if r.status != 200:
                    fail("traits", r)

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return failures, time.monotonic() - started


class Session:
    """One psql session on the test database, fed statement by statement, so
    that a test can interleave transactions exactly."""

    def __init__(self):
        import subprocess
        self.p = subprocess.Popen(["psql", "-X", "-q", "-tA", "-v", "VERBOSITY=terse", "-d",
                                   os.environ["CRM_DATABASE_URL"]],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.send("SELECT pg_backend_pid();")
        self.pid = int(self.p.stdout.readline())

    def send(self, q):
        self.p.stdin.write(q + "\n")
        self.p.stdin.flush()

    def result(self):
        """The next line of output: the answer of a statement sent before."""
        return self.p.stdout.readline().strip()

    def finish(self):
        self.send("\\q")
        out, _ = self.p.communicate(timeout=60)
        return out.strip()


def wait_until(q, what):
    """Poll the SQL condition q (true/false) until it holds."""
    import time
    deadline = time.monotonic() + 20
    while harness.sql(q) != "t":
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting: " + what)
        time.sleep(0.05)


def wait_blocked_by(s, holder):
    wait_until("SELECT pg_blocking_pids(%d) = ARRAY[%d]" % (s.pid, holder.pid),
               "session %d blocked by %d" % (s.pid, holder.pid))


def wait_done_or_blocked(s, call):
    """Until session s has run its statement with `call` in it, or waits for a lock."""
    wait_until("SELECT (state = 'idle' AND strpos(query, %s) > 0) OR wait_event_type = 'Lock' "
               "FROM pg_stat_activity WHERE pid = %d" % (harness.lit(call), s.pid),
               "session %d done or waiting" % s.pid)


def customers_in_order(n):
    """n new customers whose ids ascend in the order returned."""
    tail = uuid.uuid4().hex[1:]
    ids = []
    for k in range(n):
        cid = str(uuid.UUID("%x%s" % (k + 1, tail)))
        harness.sql("SELECT crm.resolve(%s, 'lock-order', %s)" % (
            harness.lit(json.dumps([email_id("lock-%s-%d@ex.org" % (tail, k))])) + "::jsonb",
            harness.lit(cid) + "::uuid"))
        ids.append(cid)
    return ids


class LockOrderTests(IdentityTestCase):
    def assert_no_deadlock(self, before, sessions):
        outputs = [x.finish() for x in sessions]
        # A backend's statistics reach pg_stat_database at the latest when it exits.
        wait_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN (%s)"
                   % ", ".join(str(x.pid) for x in sessions), "sessions gone")
        for out in outputs:
            self.assertNotIn("ERROR", out)
        self.assertEqual(deadlocks() - before, 0, "deadlocks in PostgreSQL's statistics")
        return outputs

    def test_lock_on_a_row_merged_meanwhile_is_given_back_before_waiting(self):
        # b < c < a. A locker wants b, c and a; b is merged into a while it
        # waits for b; it must give b back before it waits for c, or an
        # unmerge of b (which holds a and waits for b) closes a cycle when
        # c is released. Both multi-customer lockers: crm.lock_survivors
        # (admin merge, erasure) and crm.lock_batch (batches).
        for locker in ("survivors", "batch"):
            with self.subTest(locker=locker):
                b, c, a = customers_in_order(3)
                before = deadlocks()
                merger, holder, waiter, unmerger = Session(), Session(), Session(), Session()
                merger.send("BEGIN; SELECT crm.manual_merge('%s', '%s', 'test', 'lock order', "
                            "false, true)->>'status';" % (a, b))
                self.assertEqual(merger.result(), "merged")
                holder.send("BEGIN; SELECT crm.lock_survivors(ARRAY['%s']::uuid[]) IS NOT NULL;" % c)
                self.assertEqual(holder.result(), "t")
                if locker == "survivors":
                    waiter.send("SELECT crm.lock_survivors(ARRAY['%s', '%s', '%s']::uuid[]) "
                                "IS NOT NULL;" % (b, c, a))
                else:
                    waiter.send("SELECT crm.lock_batch(%s::jsonb) IS NOT NULL;" % harness.lit(
                        json.dumps([{"customer_id": x} for x in (b, c, a)])))
                wait_blocked_by(waiter, merger)
                merger.send("COMMIT;")
                wait_blocked_by(waiter, holder)
                unmerger.send("SELECT crm.unmerge('%s', 'test', 'lock order')->>'status';" % b)
                wait_done_or_blocked(unmerger, "crm.unmerge(")
                holder.send("COMMIT;")
                outputs = self.assert_no_deadlock(before, [waiter, holder, unmerger, merger])
                self.assertEqual(outputs[0], "t")
                self.assertEqual(outputs[2], "unmerged")

    def test_unmerge_waits_for_the_survivor_before_its_absorbed_row(self):
        # m < s < a, m merged into a. A merge of a into s holds s and a, then
        # moves a's absorbed rows (m); an unmerge of m must not hold m while
        # it waits for a.
        m, s, a = customers_in_order(3)
        self.assertEqual(merge(a, m).body["status"], "merged")
        before = deadlocks()
        holder, merger, unmerger = Session(), Session(), Session()
        # Holds a's identifiers: the merge waits there, holding s and a.
        holder.send("BEGIN; SELECT count(*) > 0 FROM (SELECT 1 FROM crm.identifiers "
                    "WHERE customer_id = '%s' FOR UPDATE) AS x;" % a)
        self.assertEqual(holder.result(), "t")
        merger.send("SELECT crm.manual_merge('%s', '%s', 'test', 'lock order', false, true)"
                    "->>'status';" % (s, a))
        wait_blocked_by(merger, holder)
        unmerger.send("SELECT crm.unmerge('%s', 'test', 'lock order')->>'status';" % m)
        wait_done_or_blocked(unmerger, "crm.unmerge(")
        holder.send("COMMIT;")
        outputs = self.assert_no_deadlock(before, [merger, unmerger, holder])
        self.assertEqual(outputs[0], "merged")
        self.assertEqual(outputs[1], "unmerged")

    def test_mixed_storm_has_no_deadlocks(self):
        import time
        before_backends = client_backends()
        server = harness.extra_server("--pool-size", "16")
        self.addCleanup(server.stop)
        before = deadlocks()
        failures, _ = lock_storm(server.port)
        server.stop()
        # Statistics reach pg_stat_database when the backends flush them:
        # at the latest when they exit, which stopping the server makes them do.
        deadline = time.monotonic() + 15
        while client_backends() > before_backends and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        self.assertEqual(failures, [])
        self.assertEqual(deadlocks() - before, 0, "deadlocks in PostgreSQL's statistics")


if __name__ == "__main__":
    raise SystemExit(harness.main())
