#!/usr/bin/env python3
"""End-to-end tests of segments as audiences (docs/value.md, "Audiences"):
members and exports with fields=, filtered by the contact decision for a
purpose and channel with the address to use, the marketing role kept from
contact fields without a purpose, the audit row of every export, and
sort=clv with its keyset cursor.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_audiences.py [TestClass[.test_method] ...]

Every class marks its customers with a unique trait attribute and selects
them with a segment on it, so the database need not be empty.
"""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get, patch, post, query, request, uid  # noqa: E402
import test_value  # noqa: E402  (value helpers: customers, purchases, recompute)

AT = "2026-06-01T12:00:00Z"          # the decision time of most tests
BEFORE = "2026-01-01T00:00:00Z"      # consents given before AT
SOURCE = "e2e-aud"
sql = harness.sql
lit = harness.lit


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

def must(r, status):
    if r.status != status:
        raise AssertionError("expected HTTP %d, got %d: %r" % (status, r.status, r.body))
    return r.body


def new_customer(marker, email=True, phone=None, traits=None):
    ids = []
    address = None
    if email:
        address = "aud-%s@example.com" % uid()
        ids.append({"kind": "email", "value": address})
    if phone:
        ids.append({"kind": "phone", "value": phone})
    t = dict(traits or {})
    t["attributes"] = {"audience_marker": marker}
    doc = must(post("/v1/customers:resolve", {"identifiers": ids, "source": SOURCE,
                                              "traits": t}), 201)
    return doc["customer_id"], address


def consent(cid, channel="email", purpose="marketing", status="granted", at=BEFORE):
    must(post("/v1/customers/%s/consents" % cid,
              {"purpose": purpose, "channel": channel, "status": status, "source": SOURCE,
               "occurred_at": at}), 201)


def prefs(cid, p):
    must(patch("/v1/customers/%s/preferences" % cid, {"source": SOURCE, "preferences": p}), 200)


def outbound(cid, at):
    must(post("/v1/interactions", {"customer_id": cid, "source": SOURCE,
                                   "external_id": "aud-" + uid(), "channel": "email",
                                   "type": "outbound_message", "occurred_at": at}), 201)


def marker_rule(marker):
    return {"field": "traits.attributes.audience_marker", "op": "eq", "value": marker}


def new_segment(marker):
    return must(post("/v1/segments", {"name": "e2e-aud-%s" % uid(),
                                      "rule": marker_rule(marker)}), 201)["segment_id"]


_KEYS = {}


def key_for(role):
    if role not in _KEYS:
        body = must(post("/v1/admin/keys", {"name": "e2e-aud-%s-%s" % (role, uid()),
                                            "role": role}), 201)
        _KEYS[role] = (body["api_key"], body["key_id"])
    return _KEYS[role][0]


def key_id_of(role):
    key_for(role)
    return _KEYS[role][1]


def members(sid, key=harness.ADMIN_KEY, **params):
    return get(query("/v1/segments/%s/customers" % sid, params), key=key)


def export(sid, key=harness.ADMIN_KEY, **params):
    """GET the export: (status, content type, list of items or the problem)."""
    r = request("GET", query("/v1/segments/%s/export" % sid, params), key=key,
                headers={"Accept": "*/*"})
    if r.status != 200:
        return r.status, r.content_type, r.body
    if isinstance(r.body, dict):   # one line parses as one JSON document
        return r.status, r.content_type, [r.body]
    text = r.body.decode("utf-8")
    return r.status, r.content_type, [json.loads(line) for line in text.splitlines()]


def audit_rows(sid):
    """The segment.export audit rows of segment sid, oldest first."""
    out = sql("SELECT coalesce(jsonb_agg(jsonb_build_object('key_id', key_id, 'role', role, "
              "'customer_id', customer_id, 'detail', detail) ORDER BY audit_id), '[]') "
              "FROM crm.audit_log WHERE action = 'segment.export' "
              "AND detail->>'segment_id' = " + lit(sid))
    return json.loads(out)


# ---------------------------------------------------------------------------
# consent-filtered audiences

class AudienceTests(harness.CrmTestCase):
    @classmethod
    def setUpClass(cls):
        m = cls.marker = "aud-" + uid()
        c = cls.c = {}
        # allowed: consent for email
        c["ok"], cls.email_ok = new_customer(m, traits={"first_name": "Ann",
                                                         "birthday": "1990-04-02"})
        consent(c["ok"], "email")
        # allowed: consent for any channel (no phone: not in the sms audience)
        c["any"], cls.email_any = new_customer(m, traits={"first_name": "Bea"})
        consent(c["any"], "any")
        # no consent at all
        c["none"], _ = new_customer(m)
        # consent, but in quiet hours at AT (11:00-13:00 UTC)
        c["quiet"], cls.email_quiet = new_customer(m)
        consent(c["quiet"], "email")
        prefs(c["quiet"], {"quiet_hours": {"start": "11:00", "end": "13:00", "time_zone": "UTC"}})
        # consent, but over the frequency cap at AT
        c["capped"], _ = new_customer(m)
        consent(c["capped"], "email")
        prefs(c["capped"], {"frequency_cap": {"max_messages": 1, "period_days": 7}})
        outbound(c["capped"], "2026-05-30T10:00:00Z")
        # consent for any channel, opted out of email
        c["optout"], _ = new_customer(m)
        consent(c["optout"], "any")
        consent(c["optout"], "email", status="withdrawn", at="2026-02-01T00:00:00Z")
        # consent for any channel, phone only (no email)
        digits = harness.random_digits(8)
        cls.phone = "+336" + digits
        c["phone"], _ = new_customer(m, email=False, phone="+33 6 %s %s" % (digits[:4], digits[4:]))
        consent(c["phone"], "any")
        # consent for service only
        c["service"], _ = new_customer(m)
        consent(c["service"], "email", purpose="service")
        cls.sid = new_segment(m)

    def test_export_leaves_out_who_may_not_be_contacted(self):
        status, ctype, items = export(self.sid, purpose="marketing", channel="email", at=AT,
                                      fields="email,first_name,value.clv")
        self.assertEqual(status, 200, items)
        self.assertTrue(ctype.startswith("application/x-ndjson"), ctype)
        expected = sorted([(self.c["ok"], self.email_ok, "Ann"),
                           (self.c["any"], self.email_any, "Bea")])
        self.assertEqual([(it["customer_id"], it["address"], it["first_name"]) for it in items],
                         expected)
        for it in items:
            # entered_at (live membership) goes with customer_id, whatever the fields
            self.assertEqual(set(it), {"customer_id", "address", "email", "first_name",
                                       "value.clv", "entered_at"}, it)
            self.assertEqual(it["email"], it["address"])
            self.assertIsNone(it["value.clv"])   # never valued
        # The marketing role gets the same audience.
        status, _, same = export(self.sid, key=key_for("marketing"), purpose="marketing",
                                 channel="email", at=AT, fields="email,first_name,value.clv")
        self.assertEqual((status, same), (200, items))

    def test_members_page_and_count(self):
        page = self.assertJson(members(self.sid, purpose="marketing", channel="email", at=AT,
                                       count="true", limit=1), 200)
        first, second = sorted([self.c["ok"], self.c["any"]])
        self.assertEqual(page["count"], 2)
        self.assertEqual([it["customer_id"] for it in page["items"]], [first])
        self.assertEqual(page["next_cursor"], first)
        # Without fields the item is the value item, with the address.
        self.assertEqual(set(page["items"][0]), {"customer_id", "address", "tier", "clv",
                                                 "p_alive", "margin", "rfm", "entered_at"})
        page = self.assertJson(members(self.sid, purpose="marketing", channel="email", at=AT,
                                       count="true", limit=1, cursor=first), 200)
        self.assertEqual(([it["customer_id"] for it in page["items"]], page["next_cursor"]),
                         ([second], None))
        self.assertEqual(page["count"], 2)

    def test_at_changes_the_decision(self):
        # 14:00 UTC is outside the quiet hours; the cap's message is still within 7 days.
        status, _, items = export(self.sid, purpose="marketing", channel="email",
                                  at="2026-06-01T14:00:00Z", fields="email")
        self.assertEqual(status, 200, items)
        self.assertEqual(sorted(it["customer_id"] for it in items),
                         sorted([self.c["ok"], self.c["any"], self.c["quiet"]]))
        # Eight days after the message the cap is lifted too (quiet hours again at 12:00).
        status, _, items = export(self.sid, purpose="marketing", channel="email",
                                  at="2026-06-07T14:00:00Z", fields="email")
        self.assertEqual(sorted(it["customer_id"] for it in items),
                         sorted([self.c["ok"], self.c["any"], self.c["quiet"],
                                 self.c["capped"]]))
        # Before any consent was given nobody may be contacted.
        status, _, items = export(self.sid, purpose="marketing", channel="email",
                                  at="2025-12-01T14:00:00Z")
        self.assertEqual((status, items), (200, []))

    def test_channel_chooses_the_address(self):
        for channel in ("sms", "phone"):
            with self.subTest(channel=channel):
                status, _, items = export(self.sid, purpose="marketing", channel=channel, at=AT,
                                          fields="phone,email")
                self.assertEqual(status, 200, items)
                self.assertEqual([{k: v for k, v in it.items() if k != "entered_at"}
                                  for it in items],
                                 [{"customer_id": self.c["phone"], "address": self.phone,
                                   "phone": self.phone, "email": None}])
        # Another purpose: only the customer who consented to it.
        status, _, items = export(self.sid, purpose="service", channel="email", at=AT)
        self.assertEqual([it["customer_id"] for it in items], [self.c["service"]])

    def test_the_decision_agrees_with_the_contact_decision_route(self):
        status, _, items = export(self.sid, purpose="marketing", channel="email", at=AT)
        exported = {it["customer_id"] for it in items}
        for name, cid in self.c.items():
            with self.subTest(customer=name):
                d = self.assertJson(get(query("/v1/customers/%s/contact-decision" % cid,
                                              {"purpose": "marketing", "channel": "email",
                                               "at": AT})), 200)
                has_email = name != "phone"
                self.assertEqual(cid in exported, d["allowed"] and has_email, d)

    def test_fields_validation(self):
        cases = [
            ({"fields": "email,shoe_size"}, "shoe_size"),
            ({"fields": "value.clv,value.nope"}, "value.nope"),
            ({"fields": ""}, "empty"),
            ({"fields": "email,"}, "empty"),
            ({"fields": "email,email"}, "twice"),
            ({"fields": "traits.first_name"}, "traits.first_name"),
            ({"channel": "email"}, "purpose"),
            ({"at": AT}, "purpose"),
            ({"purpose": "marketing"}, "channel"),
            ({"purpose": "spam", "channel": "email"}, "purpose"),
            ({"purpose": "marketing", "channel": "web"}, "channel"),
            ({"purpose": "marketing", "channel": "any"}, "channel"),
            ({"purpose": "marketing", "channel": "email", "at": "yesterday"}, "at"),
        ]
        for params, word in cases:
            for route in (members, export):
                with self.subTest(params=params, route=route.__name__):
                    r = route(self.sid, **params)
                    if route is export:
                        status, ctype, body = r
                        self.assertEqual(status, 400, body)
                        self.assertTrue(ctype.startswith("application/problem+json"), ctype)
                    else:
                        body = self.assertProblem(r, 400, "invalid-query")
                    self.assertEqual(body["type"], "urn:crm:problem:invalid-query")
                    self.assertIn(word, body["detail"])
        # The detail lists the known fields.
        body = self.assertProblem(members(self.sid, fields="x"), 400, "invalid-query")
        for name in ("email", "phone", "first_name", "last_name", "birthday", "value.clv",
                     "value.tier", "value.churn_risk"):
            self.assertIn(name, body["detail"])
        # Parameters the routes do not read are still refused.
        self.assertProblem(members(self.sid, field="email"), 400, "invalid-query")
        self.assertProblem(members(self.sid, sort="name"), 400, "invalid-query")
        status, _, body = export(self.sid, sort="name")
        self.assertEqual(status, 400, body)

    def test_marketing_needs_purpose_for_contact_fields(self):
        mk = key_for("marketing")
        for fields in ("email", "phone", "first_name", "last_name", "birthday",
                       "value.clv,email", "device"):
            with self.subTest(fields=fields):
                body = self.assertProblem(members(self.sid, key=mk, fields=fields), 403,
                                          "forbidden")
                self.assertIn("purpose", body["detail"])
                self.assertIn("channel", body["detail"])
                status, ctype, body = export(self.sid, key=mk, fields=fields)
                self.assertEqual(status, 403, body)
                self.assertIn("contact fields", body["detail"])
        # Value fields and ids need no purpose.
        page = self.assertJson(members(self.sid, key=mk,
                                       fields="value.clv,value.tier,value.churn_risk"), 200)
        self.assertEqual(len(page["items"]), len(self.c))
        for it in page["items"]:
            self.assertEqual(set(it), {"customer_id", "value.clv", "value.tier",
                                       "value.churn_risk", "entered_at"})
        status, _, items = export(self.sid, key=mk)
        self.assertEqual((status, len(items)), (200, len(self.c)))
        self.assertNotIn("address", items[0])
        # With purpose and channel the marketing role gets contact fields of the allowed.
        page = self.assertJson(members(self.sid, key=mk, fields="email,birthday",
                                       purpose="marketing", channel="email", at=AT), 200)
        got = {it["customer_id"]: it for it in page["items"]}
        self.assertEqual(got[self.c["ok"]], {"customer_id": self.c["ok"], "address": self.email_ok,
                                             "email": self.email_ok, "birthday": "1990-04-02",
                                             "entered_at": got[self.c["ok"]]["entered_at"]})
        # Admin may read contact fields without a purpose: every member.
        page = self.assertJson(members(self.sid, fields="email,first_name"), 200)
        got = {it["customer_id"]: it for it in page["items"]}
        self.assertEqual(set(got), set(self.c.values()))
        self.assertEqual(got[self.c["none"]]["first_name"], None)
        self.assertEqual(got[self.c["quiet"]]["email"], self.email_quiet)
        self.assertIsNone(got[self.c["phone"]]["email"])

    def test_audit_rows(self):
        sid = new_segment(self.marker)   # a segment of its own: rows of this test only
        mk = key_for("marketing")
        status, _, items = export(sid, key=mk, purpose="marketing", channel="email", at=AT,
                                  fields="email,value.tier")
        self.assertEqual((status, len(items)), (200, 2))
        rows = audit_rows(sid)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["key_id"], key_id_of("marketing"))
        self.assertEqual(rows[0]["role"], "marketing")
        self.assertIsNone(rows[0]["customer_id"])
        d = rows[0]["detail"]
        self.assertEqual((d["segment_id"], d["purpose"], d["channel"], d["fields"], d["count"]),
                         (sid, "marketing", "email", ["email", "value.tier"], 2), d)
        self.assertEqual((d["via"], d["complete"]), ("export", True), d)
        # An export without a purpose is audited too (purpose and channel null).
        status, _, items = export(sid, key=mk)
        rows = audit_rows(sid)
        self.assertEqual(len(rows), 2, rows)
        d = rows[1]["detail"]
        self.assertEqual((d["purpose"], d["channel"], d["count"]), (None, None, len(self.c)), d)
        # A members page with contact data: one row with the page's count.
        self.assertJson(members(sid, fields="first_name", limit=3), 200)
        self.assertJson(members(sid, key=mk, purpose="marketing", channel="email", at=AT,
                                limit=1), 200)
        rows = audit_rows(sid)
        self.assertEqual(len(rows), 4, rows)
        self.assertEqual((rows[2]["role"], rows[2]["detail"]["count"], rows[2]["detail"]["via"],
                          rows[2]["detail"]["fields"]), ("admin", 3, "customers", ["first_name"]))
        self.assertEqual((rows[3]["detail"]["count"], rows[3]["detail"]["purpose"]),
                         (1, "marketing"))
        # A page of value fields only gives out no contact data: no row.
        self.assertJson(members(sid, key=mk, fields="value.clv"), 200)
        self.assertJson(members(sid, key=mk), 200)
        self.assertEqual(len(audit_rows(sid)), 4)
        # A refused request gives out nothing and writes nothing.
        self.assertProblem(members(sid, key=mk, fields="email"), 403, "forbidden")
        self.assertEqual(len(audit_rows(sid)), 4)

    def test_large_export_counts_every_page(self):
        # More members than one export page (1000): the row's count grows page by page.
        m = "aud-big-" + uid()
        n = 1005
        ids = sql("WITH c AS (INSERT INTO crm.customers (customer_id) "
                  "SELECT gen_random_uuid() FROM generate_series(1, %d) RETURNING customer_id), "
                  "t AS (INSERT INTO crm.traits (customer_id, name, value, source) "
                  "SELECT customer_id, 'attributes.audience_marker', to_jsonb(%s::text), %s "
                  "FROM c RETURNING customer_id) SELECT count(*) FROM t"
                  % (n, lit(m), lit(SOURCE)))
        self.assertEqual(ids, str(n))
        sid = new_segment(m)
        status, _, items = export(sid, fields="value.tier")
        self.assertEqual((status, len(items)), (200, n))
        self.assertEqual(len({it["customer_id"] for it in items}), n)
        rows = audit_rows(sid)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual((rows[0]["detail"]["count"], rows[0]["detail"]["complete"]), (n, True))


# ---------------------------------------------------------------------------
# sort=clv

class SortByClvTests(harness.CrmTestCase):
    @classmethod
    def setUpClass(cls):
        test_value.make_fit_population()
        m = cls.marker = "aud-clv-" + uid()
        cls.ids = []
        histories = [
            [("2025-01-10T10:00:00Z", 500), ("2025-03-10T10:00:00Z", 400),
             ("2025-06-10T10:00:00Z", 450), ("2025-11-10T10:00:00Z", 500)],
            [("2025-02-10T10:00:00Z", 20), ("2025-10-10T10:00:00Z", 25)],
            [("2025-02-10T10:00:00Z", 20), ("2025-10-10T10:00:00Z", 25)],   # a tie
            [("2025-02-10T10:00:00Z", 20), ("2025-10-10T10:00:00Z", 25)],   # a tie
            [("2025-05-10T10:00:00Z", 90), ("2025-07-10T10:00:00Z", 120),
             ("2025-12-01T10:00:00Z", 80)],
            [],                                                           # a prospect
        ]
        for h in histories:
            cid = test_value.create_customer(marker=None, traits={
                "attributes": {"audience_marker": m}})
            test_value.ingest_events(cid, [test_value.ev("purchase", t, amount=a) for t, a in h])
            cls.ids.append(cid)
        test_value.recompute("2025-12-31T00:00:00Z")
        # created after the run: no value row, clv null
        cls.ids.append(test_value.create_customer(traits={"attributes": {"audience_marker": m}}))
        cls.sid = new_segment(m)

    def expected_order(self):
        page = self.assertJson(members(self.sid, limit=1000), 200)
        clv = {it["customer_id"]: it["clv"] for it in page["items"]}
        self.assertEqual(set(clv), set(self.ids))
        self.assertIsNone(clv[self.ids[-1]])
        valued = [c for c in clv if clv[c] is not None]
        self.assertGreaterEqual(len(valued), 5, clv)
        self.assertEqual(clv[self.ids[1]], clv[self.ids[2]])   # the tie holds
        return sorted(clv, key=lambda c: (clv[c] is None, -(clv[c] or 0), c)), clv

    def test_sort_clv_order(self):
        order, clv = self.expected_order()
        page = self.assertJson(members(self.sid, sort="clv", count="true"), 200)
        self.assertEqual([it["customer_id"] for it in page["items"]], order)
        self.assertIsNone(page["next_cursor"])
        self.assertEqual(page["count"], len(self.ids))
        values = [it["clv"] for it in page["items"] if it["clv"] is not None]
        self.assertEqual(values, sorted(values, reverse=True))
        # The default order stays customer_id, as does sort=customer_id.
        for params in ({}, {"sort": "customer_id"}):
            page = self.assertJson(members(self.sid, **params), 200)
            self.assertEqual([it["customer_id"] for it in page["items"]], sorted(self.ids))

    def test_export_sort_clv(self):
        order, clv = self.expected_order()
        status, ctype, items = export(self.sid, sort="clv", fields="value.clv")
        self.assertEqual(status, 200, items)
        self.assertEqual([it["customer_id"] for it in items], order)
        status, _, items = export(self.sid, sort="customer_id")
        self.assertEqual([it["customer_id"] for it in items], sorted(self.ids))

    def test_sort_clv_paging(self):
        order, _ = self.expected_order()
        for limit in (1, 2, 3, 6):
            with self.subTest(limit=limit):
                seen, cursor, pages = [], None, 0
                while True:
                    params = {"sort": "clv", "limit": limit, "fields": "value.clv"}
                    if cursor is not None:
                        params["cursor"] = cursor
                    page = self.assertJson(members(self.sid, key=key_for("marketing"),
                                                   **params), 200)
                    pages += 1
                    seen.extend(it["customer_id"] for it in page["items"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                    self.assertEqual(len(page["items"]), limit)
                    self.assertNotIn(cursor, seen[-1:], "the clv cursor is opaque")
                    self.assertLess(pages, 20)
                self.assertEqual(seen, order)
                self.assertEqual(pages, -(-len(order) // limit))

    def test_bad_clv_cursors(self):
        good = self.assertJson(members(self.sid, sort="clv", limit=1), 200)["next_cursor"]
        self.assertIsInstance(good, str)
        # A customer_id cursor is not a clv cursor, and the other way round.
        for params in ({"sort": "clv", "cursor": self.ids[0]},
                       {"cursor": good},
                       {"sort": "clv", "cursor": "abc"},
                       {"sort": "clv", "cursor": ""},
                       {"sort": "clv", "cursor": harness_b64("1e5|" + self.ids[0])},
                       {"sort": "clv", "cursor": harness_b64("NaN|" + self.ids[0])},
                       {"sort": "clv", "cursor": harness_b64("1.5|x")},
                       {"sort": "clv", "cursor": harness_b64("1.2.3|" + self.ids[0])}):
            with self.subTest(params=params):
                self.assertProblem(members(self.sid, **params), 400, "invalid-query")
        # A cursor with a null clv continues among the unvalued (by customer_id).
        order, clv = self.expected_order()
        page = self.assertJson(members(self.sid, sort="clv",
                                       cursor=harness_b64("|" + "0" * 8 + "-0000-4000-8000-"
                                                          + "0" * 12)), 200)
        self.assertEqual([it["customer_id"] for it in page["items"]],
                         [c for c in order if clv[c] is None])


# ---------------------------------------------------------------------------
# partner sharing

class PartnerSharingTests(harness.CrmTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = "aud-p-" + uid()
        body = must(post("/v1/admin/keys", {"name": "e2e-aud-partner", "role": "partner",
                                            "namespace": cls.ns,
                                            "shared_fields": ["email", "first_name",
                                                              "value.tier"]}), 201)
        cls.key, cls.key_id = body["api_key"], body["key_id"]
        cls.key_doc = body
        cls.bare_key = must(post("/v1/admin/keys", {"name": "e2e-aud-partner-bare",
                                                    "role": "partner",
                                                    "namespace": cls.ns}), 201)["api_key"]

    def customer(self, namespace=None, consent_channel="partner", first_name="Cleo"):
        """A customer with an email, a first name and (unless namespace is False)
        an external id in namespace (default: the key's), with partner_sharing
        consent on consent_channel (None: none)."""
        email = "aud-p-%s@example.com" % uid()
        ids = [{"kind": "email", "value": email}]
        if namespace is not False:
            ids.append({"kind": "external", "namespace": namespace or self.ns,
                        "value": "p-" + uid()})
        cid = must(post("/v1/customers:resolve", {"identifiers": ids, "source": SOURCE,
                                                  "traits": {"first_name": first_name,
                                                             "last_name": "Secret"}}),
                   201)["customer_id"]
        if consent_channel is not None:
            consent(cid, consent_channel, purpose="partner_sharing")
        return cid, email

    def read(self, cid, key=None):
        return get("/v1/partners/customers/%s" % cid, key=key or self.key)

    def assertNotFound(self, r):
        body = self.assertProblem(r, 404, "not-found")
        self.assertEqual(body["detail"], "no customer with this id")

    def test_key_shows_its_shared_fields(self):
        self.assertEqual(self.key_doc["shared_fields"], ["email", "first_name", "value.tier"])
        items = self.assertJson(get("/v1/admin/keys"), 200)["items"]
        mine = [k for k in items if k["key_id"] == self.key_id]
        self.assertEqual(mine[0]["shared_fields"], ["email", "first_name", "value.tier"])
        others = [k for k in items if k.get("role") != "partner"]
        self.assertTrue(all("shared_fields" not in k for k in others))

    def test_shared_fields_of_a_consenting_customer(self):
        cid, email = self.customer()
        doc = self.assertJson(self.read(cid), 200)
        self.assertEqual(doc, {"customer_id": cid, "email": email, "first_name": "Cleo",
                               "value.tier": None})
        # Consent for any channel covers the partner channel too.
        cid2, email2 = self.customer(consent_channel="any")
        self.assertEqual(self.assertJson(self.read(cid2), 200)["email"], email2)

    def test_everything_else_is_not_found(self):
        cases = {
            "no consent": self.customer(consent_channel=None)[0],
            "consent for another channel": self.customer(consent_channel="email")[0],
            "no external id of this partner": self.customer(namespace=False)[0],
            "external id of another partner": self.customer(namespace="other-" + uid())[0],
            "unknown": "00000000-0000-4000-8000-000000000000",
        }
        withdrawn = self.customer()[0]
        consent(withdrawn, "partner", purpose="partner_sharing", status="withdrawn",
                at="2026-02-01T00:00:00Z")
        cases["consent withdrawn"] = withdrawn
        for name, cid in cases.items():
            with self.subTest(case=name):
                self.assertNotFound(self.read(cid))
        # A partner key without shared fields reads nobody; an admin key has none either.
        cid, _ = self.customer()
        self.assertJson(self.read(cid), 200)
        self.assertNotFound(self.read(cid, key=self.bare_key))
        self.assertNotFound(self.read(cid, key=harness.ADMIN_KEY))
        # Other roles may not call the route.
        self.assertProblem(self.read(cid, key=key_for("marketing")), 403, "forbidden")
        self.assertProblem(get("/v1/partners/customers/not-a-uuid", key=self.key), 400,
                           "invalid-uuid")
        # The partner still may not read the profile route.
        self.assertProblem(get("/v1/customers/%s" % cid, key=self.key), 403, "forbidden")

    def test_reads_are_audited(self):
        cid, _ = self.customer()
        self.assertJson(self.read(cid), 200)
        self.assertNotFound(self.read(self.customer(consent_channel=None)[0]))
        rows = json.loads(sql(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('key_id', key_id, 'role', role, "
            "'customer_id', customer_id, 'detail', detail) ORDER BY audit_id), '[]') "
            "FROM crm.audit_log WHERE action = 'customer.partner_read' AND key_id = "
            + lit(self.key_id) + " AND customer_id = " + lit(cid)))
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["role"], "partner")
        self.assertEqual(rows[0]["detail"], {"namespace": self.ns,
                                             "fields": ["email", "first_name", "value.tier"]})

    def test_key_validation(self):
        cases = [
            ({"role": "marketing", "shared_fields": ["email"]}, "/shared_fields"),
            ({"role": "partner", "namespace": "x", "shared_fields": []}, "/shared_fields"),
            ({"role": "partner", "namespace": "x", "shared_fields": "email"}, "/shared_fields"),
            ({"role": "partner", "namespace": "x", "shared_fields": ["email", "shoe"]},
             "/shared_fields/1"),
            ({"role": "partner", "namespace": "x", "shared_fields": ["email", 3]},
             "/shared_fields/1"),
            ({"role": "partner", "namespace": "x", "shared_fields": ["email,phone"]},
             "/shared_fields/0"),
            ({"role": "partner", "namespace": "x", "shared_fields": ["phone", "phone"]},
             "/shared_fields/1"),
        ]
        for body, pointer in cases:
            with self.subTest(body=body):
                body = dict(body, name="e2e-aud-bad-" + uid())
                self.assertProblem(post("/v1/admin/keys", body), 422, "validation-failed",
                                   pointers=[pointer])


def harness_b64(text):
    import base64
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")



class ExportSortAcrossPagesTests(harness.CrmTestCase):
    def test_export_sort_clv_across_pages(self):
        # More members than one export page (1,000), with CLVs: the (clv,
        # customer_id) keyset is handed from page to page; every member once,
        # in order (a lost clv cursor would drop the rest of the valued ones).
        test_value.make_fit_population()
        tag = "aud-pages-" + uid()
        n = 1005
        events = [{"identifiers": [{"kind": "email", "value": "%s-%d@example.com" % (tag, k)}],
                   "source": "e2e", "external_id": "%s-%d-%d" % (tag, k, j), "channel": "web",
                   "type": "purchase",
                   "occurred_at": "2025-%02d-%02dT10:00:00Z" % (1 + (k * 7 + j * 3) % 12,
                                                               1 + (k * 3 + j * 11) % 28),
                   "amount": 10 + (k * 13 + j * 7) % 90, "currency": "EUR", "tags": [tag]}
                  for k in range(n) for j in range(1 + k % 4)]
        for start in range(0, len(events), 100):
            must(post("/v1/interactions:batch", {"items": events[start:start + 100]}), 200)
        sid = must(post("/v1/segments", {"name": "e2e-aud-%s" % uid(),
                                         "rule": {"interaction": {"tag": tag}}}), 201)["segment_id"]
        test_value.recompute("2025-12-31T00:00:00Z")
        status, _, items = export(sid, sort="clv")
        self.assertEqual(status, 200, items)
        ids = [it["customer_id"] for it in items]
        self.assertEqual(len(ids), n)
        self.assertEqual(len(set(ids)), n)
        keys = [(-it["clv"], it["customer_id"]) for it in items]
        self.assertTrue(all(it["clv"] is not None for it in items))
        self.assertEqual(keys, sorted(keys))
        self.assertGreater(len({it["clv"] for it in items}), 10)


if __name__ == "__main__":
    sys.exit(harness.main())
