#!/usr/bin/env python3
"""End-to-end tests of the customize routes (docs/customize.md): preferences
(JSON merge patch), consents (append-only history), the contact decision,
moments, export and erasure (right to be forgotten), and their roles.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_customize.py [TestClass[.test_method] ...]

Every test uses fresh customers; moments are isolated with a per-test
segment (an attribute unique to the test), so the database need not be
empty. Database-side checks (erasure, append-only history, audit rows) read
the tables with psql.
"""

import base64
import os
import subprocess
import sys
import unittest
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get, patch, post, query, request, uid  # noqa: E402

AT = "2026-06-01T12:00:00Z"          # a Monday; 14:00 in Paris
BEFORE = "2026-01-01T00:00:00Z"      # consents given before AT


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

sql = harness.sql
lit = harness.lit


def new_customer(traits=None, email=None):
    body = {"identifiers": [{"kind": "email", "value": email or "cust-%s@example.com" % uid()}],
            "source": "e2e-cust"}
    if traits is not None:
        body["traits"] = traits
    r = post("/v1/customers:resolve", body)
    assert r.status in (200, 201), r
    return r.body["customer_id"]


def interaction(cid, **fields):
    body = {"customer_id": cid, "source": "e2e-cust", "external_id": "x-" + uid(),
            "channel": "email", "type": "outbound_message", "occurred_at": AT}
    body.update(fields)
    r = post("/v1/interactions", body)
    assert r.status == 201, r
    return r.body["interaction_id"]


def set_prefs(cid, prefs, source="e2e-ui", **kw):
    return patch("/v1/customers/%s/preferences" % cid, {"source": source, "preferences": prefs},
                 **kw)


def consent(cid, purpose="marketing", channel="email", status="granted", at=BEFORE,
            source="e2e-form", **kw):
    body = {"purpose": purpose, "channel": channel, "status": status, "source": source}
    if at is not None:
        body["occurred_at"] = at
    return post("/v1/customers/%s/consents" % cid, body, **kw)


def decision(cid, channel="email", purpose="marketing", at=AT, **kw):
    params = {"channel": channel, "purpose": purpose}
    if at is not None:
        params["at"] = at
    return get(query("/v1/customers/%s/contact-decision" % cid, params), **kw)


_KEYS = {}


def key_for(role):
    if role not in _KEYS:
        r = post("/v1/admin/keys", {"name": "e2e-cust-" + role, "role": role})
        assert r.status == 201, r
        _KEYS[role] = r.body["api_key"]
    return _KEYS[role]


class Base(harness.CrmTestCase):
    def assertPointers(self, r, *pointers):
        body = self.assertProblem(r, 422, "validation-failed")
        got = {e["pointer"] for e in body["errors"]}
        for p in pointers:
            self.assertIn(p, got, body["errors"])
        return got


# ---------------------------------------------------------------------------
# preferences

FULL_PREFS = {
    "preferred_channels": ["sms", "email"],
    "language": "fr-ca",
    "frequency_cap": {"max_messages": 3, "period_days": 7},
    "quiet_hours": {"start": "22:00", "end": "08:00", "time_zone": "Europe/Paris"},
    "categories": ["shoes", "outdoor"],
    "delivery": {"slot": "evening", "address": {"door": "front", "floor": 2}},
    "custom": {"pet": "cat", "newsletter_topic": "hiking"},
}


class PreferencesTests(Base):
    def test_empty_preferences(self):
        cid = new_customer()
        body = self.assertJson(get("/v1/customers/%s/preferences" % cid), 200)
        self.assertEqual(body, {"customer_id": cid, "preferences": {"custom": {}},
                                "sources": {}, "updated_at": None})

    def test_patch_stores_every_field_with_source(self):
        cid = new_customer()
        body = self.assertJson(set_prefs(cid, FULL_PREFS, source="crm-ui"), 200)
        prefs = body["preferences"]
        self.assertEqual(prefs["language"], "fr-CA")  # canonical case
        self.assertEqual(prefs["preferred_channels"], ["sms", "email"])
        self.assertEqual(prefs["frequency_cap"], FULL_PREFS["frequency_cap"])
        self.assertEqual(prefs["quiet_hours"], FULL_PREFS["quiet_hours"])
        self.assertEqual(prefs["categories"], ["shoes", "outdoor"])
        self.assertEqual(prefs["delivery"], FULL_PREFS["delivery"])
        self.assertEqual(prefs["custom"], FULL_PREFS["custom"])
        self.assertEqual(set(body["sources"]), {
            "preferred_channels", "language", "frequency_cap", "quiet_hours", "categories",
            "delivery", "custom.pet", "custom.newsletter_topic"})
        for s in body["sources"].values():
            self.assertEqual(s["source"], "crm-ui")
            self.assertRegex(s["updated_at"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(self.assertJson(get("/v1/customers/%s/preferences" % cid), 200), body)

    def test_merge_patch_semantics(self):
        cid = new_customer()
        first = self.assertJson(set_prefs(cid, FULL_PREFS, source="a"), 200)
        body = self.assertJson(set_prefs(cid, {
            "language": None,                                   # removed
            "preferred_channels": ["app"],                      # arrays replace
            "delivery": {"slot": None, "address": {"floor": None, "code": "1234"},
                         "notes": "ring twice"},                # objects merge recursively
            "custom": {"pet": None, "size": "M"},               # per key
        }, source="b"), 200)
        prefs = body["preferences"]
        self.assertNotIn("language", prefs)
        self.assertNotIn("language", body["sources"])
        self.assertEqual(prefs["preferred_channels"], ["app"])
        self.assertEqual(prefs["delivery"], {"address": {"door": "front", "code": "1234"},
                                             "notes": "ring twice"})
        self.assertEqual(prefs["custom"], {"newsletter_topic": "hiking", "size": "M"})
        # untouched fields keep their value, source and time
        self.assertEqual(prefs["quiet_hours"], FULL_PREFS["quiet_hours"])
        self.assertEqual(body["sources"]["quiet_hours"], first["sources"]["quiet_hours"])
        self.assertEqual(body["sources"]["custom.newsletter_topic"],
                         first["sources"]["custom.newsletter_topic"])
        self.assertEqual(body["sources"]["delivery"]["source"], "b")
        self.assertEqual(body["sources"]["custom.size"]["source"], "b")
        self.assertNotIn("custom.pet", body["sources"])
        # an empty patch changes nothing; custom: null removes every key
        self.assertEqual(self.assertJson(set_prefs(cid, {}), 200)["preferences"], prefs)
        body = self.assertJson(set_prefs(cid, {"custom": None, "categories": None}), 200)
        self.assertEqual(body["preferences"]["custom"], {})
        self.assertNotIn("categories", body["preferences"])

    def test_whole_objects_replace(self):
        cid = new_customer()
        set_prefs(cid, FULL_PREFS)
        qh = {"start": "21:30", "end": "07:15", "time_zone": "America/New_York"}
        body = self.assertJson(set_prefs(cid, {"quiet_hours": qh,
                                               "frequency_cap": {"max_messages": 0,
                                                                 "period_days": 30}}), 200)
        self.assertEqual(body["preferences"]["quiet_hours"], qh)
        self.assertEqual(body["preferences"]["frequency_cap"],
                         {"max_messages": 0, "period_days": 30})

    def test_validation(self):
        cid = new_customer()
        r = patch("/v1/customers/%s/preferences" % cid, {"preferences": {
            "preferred_channels": ["sms", "fax", "sms"], "language": "french",
            "frequency_cap": {"max_messages": 3}, "quiet_hours": {"start": "25:00"},
            "categories": "shoes", "delivery": "door", "custom": [], "color": "red"},
            "extra": 1})
        self.assertPointers(r, "/source", "/extra", "/preferences/preferred_channels/1",
                            "/preferences/preferred_channels/2", "/preferences/language",
                            "/preferences/frequency_cap/period_days",
                            "/preferences/quiet_hours/start", "/preferences/quiet_hours/end",
                            "/preferences/quiet_hours/time_zone", "/preferences/categories",
                            "/preferences/delivery", "/preferences/custom",
                            "/preferences/color")
        self.assertPointers(patch("/v1/customers/%s/preferences" % cid, {"source": "x"}),
                            "/preferences")
        self.assertPointers(set_prefs(cid, {"quiet_hours": {"start": "22:00", "end": "22:00",
                                                            "time_zone": "UTC"}}),
                            "/preferences/quiet_hours/end")

    def test_unknown_time_zone_writes_nothing(self):
        cid = new_customer()
        r = set_prefs(cid, {"language": "de", "quiet_hours": {
            "start": "22:00", "end": "06:00", "time_zone": "Mars/Olympus_Mons"}})
        got = self.assertPointers(r, "/preferences/quiet_hours/time_zone")
        self.assertEqual(got, {"/preferences/quiet_hours/time_zone"})
        body = self.assertJson(get("/v1/customers/%s/preferences" % cid), 200)
        self.assertEqual(body["preferences"], {"custom": {}})
        # zone names are case-sensitive IANA names
        self.assertPointers(set_prefs(cid, {"quiet_hours": {
            "start": "22:00", "end": "06:00", "time_zone": "europe/paris"}}),
            "/preferences/quiet_hours/time_zone")

    def test_unknown_customer_and_bad_id(self):
        missing = str(uuid.uuid4())
        self.assertProblem(get("/v1/customers/%s/preferences" % missing), 404, "not-found")
        self.assertProblem(set_prefs(missing, {"language": "fr"}), 404, "not-found")
        self.assertProblem(get("/v1/customers/nope/preferences"), 400, "invalid-uuid")

    def test_profile_sections(self):
        cid = new_customer()
        set_prefs(cid, {"language": "it", "custom": {"k": 1}})
        consent(cid, channel="sms")
        profile = self.assertJson(get("/v1/customers/%s" % cid), 200)
        self.assertIn("value", profile)
        self.assertEqual(profile["preferences"], {"language": "it", "custom": {"k": 1}})
        self.assertEqual([(c["purpose"], c["channel"], c["status"]) for c in profile["consents"]],
                         [("marketing", "sms", "granted")])

    def test_merge_carries_preferences_and_consents(self):
        ea, eb = "ma-%s@example.com" % uid(), "mb-%s@example.com" % uid()
        a = new_customer(email=ea)
        b = new_customer(email=eb)
        set_prefs(a, {"language": "fr", "categories": ["a"]})
        set_prefs(b, {"language": "de"})   # written later: wins
        consent(b, channel="sms")
        r = post("/v1/customers:resolve", {"identifiers": [{"kind": "email", "value": ea},
                                                           {"kind": "email", "value": eb}],
                                           "source": "e2e-cust"})
        self.assertEqual(r.status, 200, r.body)
        survivor = r.body["customer_id"]
        self.assertEqual(survivor, a)
        body = self.assertJson(get("/v1/customers/%s/preferences" % b), 200)
        self.assertEqual(body["customer_id"], a)
        self.assertEqual(body["preferences"]["language"], "de")
        self.assertEqual(body["preferences"]["categories"], ["a"])
        cons = self.assertJson(get("/v1/customers/%s/consents" % a), 200)
        self.assertEqual([(e["channel"], e["status"]) for e in cons["history"]],
                         [("sms", "granted")])


# ---------------------------------------------------------------------------
# consents

class ConsentTests(Base):
    def test_record_and_read(self):
        cid = new_customer()
        body = self.assertJson(consent(cid, "service", "any", "granted",
                                       at="2026-02-01T10:00:00+02:00"), 201)
        self.assertEqual(body["customer_id"], cid)
        self.assertEqual(body["purpose"], "service")
        self.assertEqual(body["channel"], "any")
        self.assertEqual(body["status"], "granted")
        self.assertEqual(body["source"], "e2e-form")
        self.assertEqual(body["occurred_at"], "2026-02-01T08:00:00.000000Z")
        self.assertIsInstance(body["event_id"], int)
        # occurred_at defaults to now
        now = self.assertJson(consent(cid, "profiling", "web", at=None), 201)
        self.assertEqual(now["occurred_at"], now["recorded_at"])

    def test_history_is_never_overwritten(self):
        cid = new_customer()
        e1 = self.assertJson(consent(cid, at="2026-01-01T00:00:00Z"), 201)
        e2 = self.assertJson(consent(cid, status="withdrawn", at="2026-02-01T00:00:00Z",
                                     source="unsubscribe-link"), 201)
        e3 = self.assertJson(consent(cid, at="2026-03-01T00:00:00Z", source="call"), 201)
        # a late-arriving, older grant is history but not the current state
        e4 = self.assertJson(consent(cid, channel="sms", status="withdrawn",
                                     at="2026-03-01T00:00:00Z"), 201)
        e5 = self.assertJson(consent(cid, channel="sms", at="2025-12-01T00:00:00Z"), 201)
        body = self.assertJson(get("/v1/customers/%s/consents" % cid), 200)
        hist = body["history"]
        self.assertEqual([e["event_id"] for e in hist],
                         [e5["event_id"], e1["event_id"], e2["event_id"], e3["event_id"],
                          e4["event_id"]])
        for e in (e1, e2, e3, e4, e5):
            got = [h for h in hist if h["event_id"] == e["event_id"]][0]
            self.assertEqual(got, {k: v for k, v in e.items() if k != "customer_id"})
        current = {(c["purpose"], c["channel"]): c for c in body["current"]}
        self.assertEqual(set(current), {("marketing", "email"), ("marketing", "sms")})
        self.assertEqual(current[("marketing", "email")]["status"], "granted")
        self.assertEqual(current[("marketing", "email")]["event_id"], e3["event_id"])
        self.assertEqual(current[("marketing", "sms")]["status"], "withdrawn")
        # the table itself refuses updates and deletes
        for stmt in ("UPDATE crm.consent_events SET status = 'granted' WHERE event_id = %d",
                     "DELETE FROM crm.consent_events WHERE event_id = %d"):
            with self.assertRaises(subprocess.CalledProcessError) as cm:
                sql(stmt % e2["event_id"])
            self.assertIn("append-only", cm.exception.stderr)
        self.assertEqual(sql("SELECT status FROM crm.consent_events WHERE event_id = %d"
                             % e2["event_id"]), "withdrawn")

    def test_validation(self):
        cid = new_customer()
        r = post("/v1/customers/%s/consents" % cid, {
            "purpose": "spam", "channel": "fax", "status": "maybe", "occurred_at": "yesterday",
            "extra": True})
        self.assertPointers(r, "/purpose", "/channel", "/status", "/source", "/occurred_at",
                            "/extra")
        self.assertProblem(consent(str(uuid.uuid4())), 404, "not-found")


# ---------------------------------------------------------------------------
# contact decision

class ContactDecisionTests(Base):
    def check(self, cid, reason, channel="email", purpose="marketing", at=AT, best=None):
        body = self.assertJson(decision(cid, channel, purpose, at), 200)
        self.assertEqual(body["reason"], reason, body)
        self.assertEqual(body["allowed"], reason == "ok", body)
        self.assertIsInstance(body["detail"], str)
        self.assertEqual(body["best_channel"], best, body)
        self.assertEqual(body["channel"], channel)
        self.assertEqual(body["purpose"], purpose)
        return body

    def test_no_consent(self):
        cid = new_customer()
        body = self.check(cid, "no_consent")
        self.assertEqual(body["customer_id"], cid)
        self.assertEqual(body["at"], "2026-06-01T12:00:00.000000Z")
        consent(cid, purpose="service", channel="any")       # other purpose
        self.check(cid, "no_consent")
        consent(cid, channel="sms")                           # other channel
        self.check(cid, "no_consent")
        consent(cid, channel="email", at="2026-07-01T00:00:00Z")  # not yet given at AT
        self.check(cid, "no_consent")

    def test_ok_by_channel_or_any(self):
        a = new_customer()
        consent(a, channel="email")
        self.check(a, "ok")
        b = new_customer()
        consent(b, channel="any")
        self.check(b, "ok")
        self.check(b, "ok", channel="phone")

    def test_consent_withdrawn(self):
        cid = new_customer()
        consent(cid, channel="email", at="2026-01-01T00:00:00Z")
        consent(cid, channel="any", status="withdrawn", at="2026-02-01T00:00:00Z")
        body = self.check(cid, "consent_withdrawn")
        self.assertIn("withdrawn", body["detail"])
        self.check(cid, "consent_withdrawn", channel="sms")
        # at a time before the withdrawal the earlier grant still holds
        self.check(cid, "ok", at="2026-01-15T00:00:00Z")
        # a channel grant after the global withdrawal counts
        consent(cid, channel="email", at="2026-03-01T00:00:00Z")
        self.check(cid, "ok")
        self.check(cid, "consent_withdrawn", channel="sms")

    def test_channel_opted_out(self):
        cid = new_customer()
        consent(cid, channel="any", at="2026-01-01T00:00:00Z")
        consent(cid, channel="email", status="withdrawn", at="2026-01-02T00:00:00Z")
        self.check(cid, "channel_opted_out")
        self.check(cid, "ok", channel="sms")
        # a later general grant does not lift the channel opt-out
        consent(cid, channel="any", at="2026-02-01T00:00:00Z")
        self.check(cid, "channel_opted_out")
        consent(cid, channel="email", at="2026-03-01T00:00:00Z")
        self.check(cid, "ok")

    def test_quiet_hours_in_customer_time_zone(self):
        cid = new_customer()
        consent(cid, channel="any")
        set_prefs(cid, {"quiet_hours": {"start": "22:00", "end": "08:00",
                                        "time_zone": "Europe/Paris"}})
        # Paris is UTC+2 in June: 20:00Z = 22:00 local (quiet), 19:59Z = 21:59 (ok)
        body = self.check(cid, "quiet_hours", at="2026-06-01T20:00:00Z")
        self.assertIn("22:00", body["detail"])
        self.assertIn("Europe/Paris", body["detail"])
        self.check(cid, "ok", at="2026-06-01T19:59:00Z")
        self.check(cid, "quiet_hours", at="2026-06-02T05:59:00Z")   # 07:59 local
        self.check(cid, "ok", at="2026-06-02T06:00:00Z")            # 08:00 local
        # winter: UTC+1
        self.check(cid, "quiet_hours", at="2026-01-10T21:30:00Z")   # 22:30 local
        self.check(cid, "ok", at="2026-01-10T20:30:00Z")            # 21:30 local
        # a window that does not wrap midnight
        set_prefs(cid, {"quiet_hours": {"start": "12:00", "end": "14:00",
                                        "time_zone": "Asia/Tokyo"}})   # UTC+9
        self.check(cid, "quiet_hours", at="2026-06-01T03:30:00Z")
        self.check(cid, "ok", at="2026-06-01T05:00:00Z")
        self.check(cid, "ok", at="2026-06-01T02:59:00Z")

    def test_quiet_hours_after_consent(self):
        cid = new_customer()
        set_prefs(cid, {"quiet_hours": {"start": "00:00", "end": "23:59", "time_zone": "UTC"}})
        self.check(cid, "no_consent")   # consent is checked first

    def test_frequency_cap(self):
        cid = new_customer()
        consent(cid, channel="any")
        set_prefs(cid, {"frequency_cap": {"max_messages": 2, "period_days": 7}})
        interaction(cid, occurred_at="2026-05-28T12:00:00Z")
        interaction(cid, channel="app", type="page_view", occurred_at="2026-05-30T12:00:00Z")
        self.check(cid, "ok")
        interaction(cid, channel="sms", occurred_at="2026-05-31T12:00:00Z")
        body = self.check(cid, "frequency_cap")
        self.assertIn("2 outbound messages", body["detail"])
        # messages after `at` do not count; the window is the last 7 days
        self.check(cid, "ok", at="2026-05-31T11:00:00Z")
        self.check(cid, "ok", at="2026-06-04T12:00:01Z")
        self.check(cid, "frequency_cap", at="2026-06-04T11:59:59Z")
        # cap 0: no outbound messages at all
        set_prefs(cid, {"frequency_cap": {"max_messages": 0, "period_days": 1}})
        self.check(cid, "frequency_cap", at="2027-01-01T00:00:00Z")

    def test_best_channel(self):
        cid = new_customer()
        self.check(cid, "no_consent")   # no preferred channels: null
        set_prefs(cid, {"preferred_channels": ["sms", "app", "email"]})
        self.check(cid, "no_consent")   # nothing allowed: null
        consent(cid, channel="any")
        consent(cid, channel="sms", status="withdrawn")
        self.check(cid, "ok", best="app")
        self.check(cid, "channel_opted_out", channel="sms", best="app")
        consent(cid, channel="app", status="withdrawn")
        self.check(cid, "ok", channel="phone", best="email")
        # quiet hours and the cap hold for every channel: nothing is allowed
        set_prefs(cid, {"quiet_hours": {"start": "13:00", "end": "15:00",
                                        "time_zone": "Europe/Paris"}})
        self.check(cid, "quiet_hours", best=None)
        set_prefs(cid, {"quiet_hours": None,
                        "frequency_cap": {"max_messages": 1, "period_days": 1}})
        self.check(cid, "ok", best="email")
        interaction(cid, occurred_at="2026-06-01T11:00:00Z")
        self.check(cid, "frequency_cap", best=None)
        # best channel per purpose
        consent(cid, purpose="service", channel="sms")
        set_prefs(cid, {"frequency_cap": None})
        self.check(cid, "ok", purpose="service", channel="sms", best="sms")

    def test_now_by_default(self):
        cid = new_customer()
        consent(cid, channel="email", at=None)
        body = self.assertJson(decision(cid, at=None), 200)
        self.assertEqual(body["reason"], "ok")

    def test_query_validation(self):
        cid = new_customer()
        base = "/v1/customers/%s/contact-decision" % cid
        for params in ({"purpose": "marketing"}, {"channel": "email"},
                       {"channel": "fax", "purpose": "marketing"},
                       {"channel": "any", "purpose": "marketing"},
                       {"channel": "email", "purpose": "ads"},
                       {"channel": "email", "purpose": "marketing", "at": "tomorrow"}):
            with self.subTest(params=params):
                self.assertProblem(get(query(base, params)), 400, "invalid-query")
        self.assertProblem(decision(str(uuid.uuid4())), 404, "not-found")


def setting(test, key, value):
    """Set crm.settings[key] (JSON text; None removes the row) until test ends."""
    old = sql("SELECT value::text FROM crm.settings WHERE key = %s" % lit(key))

    def put(v):
        if v is None:
            sql("DELETE FROM crm.settings WHERE key = %s" % lit(key))
        else:
            sql("INSERT INTO crm.settings (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value" % (lit(key), lit(v)))
    test.addCleanup(put, old or None)
    put(value)


class ServiceContactTests(Base):
    """Quiet hours and frequency caps hold for the purposes their settings
    name (default every purpose but service); a purpose of
    contact_opt_out_purposes needs no grant, only no opt-out (default none)."""

    QUIET = {"start": "13:00", "end": "15:00", "time_zone": "Europe/Paris"}   # AT is 14:00
    check = ContactDecisionTests.check

    def setting(self, key, value):
        setting(self, key, value)

    def customer(self):
        cid = new_customer()
        for purpose in ("service", "marketing", "profiling", "partner_sharing"):
            consent(cid, purpose=purpose, channel="any")
        return cid

    def test_service_call_back_in_quiet_hours(self):
        cid = self.customer()
        set_prefs(cid, {"quiet_hours": self.QUIET, "preferred_channels": ["phone", "email"]})
        body = self.check(cid, "ok", channel="phone", purpose="service", best="phone")
        self.assertIn("quiet hours and the frequency cap do not apply to service",
                      body["detail"])
        self.check(cid, "quiet_hours", channel="phone", purpose="marketing")
        self.check(cid, "quiet_hours", channel="email", purpose="profiling")
        # outside the quiet hours both may call
        self.check(cid, "ok", channel="phone", purpose="marketing", at="2026-06-01T14:00:00Z",
                   best="phone")

    def test_service_is_not_capped(self):
        cid = self.customer()
        set_prefs(cid, {"frequency_cap": {"max_messages": 0, "period_days": 7}})
        self.check(cid, "ok", channel="phone", purpose="service")
        self.check(cid, "frequency_cap", channel="phone", purpose="marketing")
        self.check(cid, "frequency_cap", channel="sms", purpose="partner_sharing")

    def test_service_refused_when_the_customer_opted_out_of_the_channel(self):
        cid = self.customer()
        set_prefs(cid, {"quiet_hours": self.QUIET, "preferred_channels": ["phone", "email"]})
        consent(cid, purpose="service", channel="phone", status="withdrawn",
                at="2026-05-01T00:00:00Z")
        self.check(cid, "channel_opted_out", channel="phone", purpose="service", best="email")
        self.check(cid, "ok", channel="email", purpose="service", best="email")
        # and without any consent, service is refused as before (default settings)
        other = new_customer()
        self.check(other, "no_consent", channel="phone", purpose="service")

    def test_which_purposes_quiet_hours_and_caps_hold_for_is_a_setting(self):
        cid = self.customer()
        set_prefs(cid, {"quiet_hours": self.QUIET})
        self.setting("contact_quiet_hours_purposes", '["marketing", "service"]')
        self.check(cid, "quiet_hours", channel="phone", purpose="service")
        self.check(cid, "ok", channel="email", purpose="profiling")   # no longer listed
        set_prefs(cid, {"quiet_hours": None,
                        "frequency_cap": {"max_messages": 0, "period_days": 7}})
        self.check(cid, "ok", channel="phone", purpose="service")
        self.setting("contact_frequency_cap_purposes", '["service"]')
        self.check(cid, "frequency_cap", channel="phone", purpose="service")
        body = self.check(cid, "ok", channel="phone", purpose="marketing")
        self.assertIn("the frequency cap does not apply to marketing", body["detail"])
        # a missing or malformed setting falls back to every purpose but service
        self.setting("contact_frequency_cap_purposes", None)
        self.check(cid, "ok", channel="phone", purpose="service")
        self.check(cid, "frequency_cap", channel="phone", purpose="marketing")
        self.setting("contact_frequency_cap_purposes", '"service"')
        self.check(cid, "frequency_cap", channel="phone", purpose="marketing")

    def test_service_without_a_grant_when_configured(self):
        self.setting("contact_opt_out_purposes", '["service"]')
        cid = new_customer()
        set_prefs(cid, {"preferred_channels": ["sms", "phone"]})
        body = self.check(cid, "ok", channel="phone", purpose="service", best="sms")
        self.assertIn("no opt-out of service by phone", body["detail"])
        self.check(cid, "no_consent", channel="phone", purpose="marketing")
        consent(cid, purpose="service", channel="sms", status="withdrawn")
        self.check(cid, "channel_opted_out", channel="sms", purpose="service", best="phone")
        self.check(cid, "ok", channel="phone", purpose="service", best="phone")
        consent(cid, purpose="service", channel="any", status="withdrawn")
        self.check(cid, "consent_withdrawn", channel="phone", purpose="service")


# ---------------------------------------------------------------------------
# moments

class MomentsTests(Base):
    def setUp(self):
        self.tag = "m-" + uid()
        r = post("/v1/segments", {"name": "e2e-cust-" + self.tag, "rule": {
            "field": "traits.attributes.moment_test", "op": "eq", "value": self.tag}})
        self.assertEqual(r.status, 201, r.body)
        self.segment = r.body["segment_id"]

    def customer(self, **traits):
        traits.setdefault("attributes", {})["moment_test"] = self.tag
        return new_customer(traits)

    def moments(self, kind, days=30, at=AT, **params):
        params.update({"kind": kind, "days": days, "at": at, "segment_id": self.segment})
        return self.assertJson(get(query("/v1/moments", params)), 200)

    def test_birthdays(self):
        today = self.customer(birthday="1990-06-01")
        soon = self.customer(birthday="1985-06-06")
        edge = self.customer(birthday="2000-07-01")      # exactly 30 days ahead
        self.customer(birthday="1970-07-02")              # 31 days: out
        self.customer(birthday="1990-05-31")              # yesterday: next year
        self.customer()                                   # no birthday
        unborn = self.customer(birthday="2026-06-03")     # first birthday next year
        body = self.moments("birthday")
        self.assertEqual(body["kind"], "birthday")
        self.assertEqual(body["from"], "2026-06-01")
        self.assertEqual(body["to"], "2026-07-01")
        self.assertIsNone(body["next_cursor"])
        self.assertEqual(body["items"], [
            {"customer_id": today, "kind": "birthday", "date": "2026-06-01", "days_until": 0,
             "years": 36},
            {"customer_id": soon, "kind": "birthday", "date": "2026-06-06", "days_until": 5,
             "years": 41},
            {"customer_id": edge, "kind": "birthday", "date": "2026-07-01", "days_until": 30,
             "years": 26}])
        self.assertNotIn(unborn, [i["customer_id"] for i in body["items"]])
        # without the segment filter they are there too
        allp = get(query("/v1/moments", {"kind": "birthday", "days": 5, "at": AT,
                                         "limit": 1000}))
        ids = [i["customer_id"] for i in self.assertJson(allp, 200)["items"]]
        self.assertIn(today, ids)
        self.assertIn(soon, ids)

    def test_leap_day_birthday(self):
        leap = self.customer(birthday="2000-02-29")
        body = self.moments("birthday", days=3, at="2027-02-27T00:00:00Z")
        self.assertEqual(body["items"], [{"customer_id": leap, "kind": "birthday",
                                          "date": "2027-02-28", "days_until": 1, "years": 27}])
        body = self.moments("birthday", days=3, at="2028-02-28T00:00:00Z")
        self.assertEqual([i["date"] for i in body["items"]], ["2028-02-29"])

    def test_anniversaries(self):
        two = self.customer()
        interaction(two, channel="store", type="purchase", amount=10, currency="EUR",
                    occurred_at="2024-06-10T09:00:00Z")
        interaction(two, channel="store", type="purchase", amount=10, currency="EUR",
                    occurred_at="2025-06-03T09:00:00Z")   # later purchases do not count
        recent = self.customer()                          # first purchase < 1 year ago
        interaction(recent, channel="web", type="purchase", amount=5, currency="EUR",
                    occurred_at="2026-01-05T09:00:00Z")
        visitor = self.customer()                         # no purchase
        interaction(visitor, channel="web", type="page_view", occurred_at="2024-06-05T09:00:00Z")
        body = self.moments("anniversary")
        self.assertEqual(body["items"], [{"customer_id": two, "kind": "anniversary",
                                          "date": "2026-06-10", "days_until": 9, "years": 2}])

    def test_warranty(self):
        a = self.customer()
        ia = interaction(a, channel="store", type="purchase", amount=300, currency="EUR",
                         occurred_at="2024-06-15T10:00:00Z",
                         payload={"sku": "TV-1", "warranty_until": "2026-06-15"})
        ia2 = interaction(a, channel="store", type="purchase", amount=30, currency="EUR",
                          occurred_at="2024-06-20T10:00:00Z",
                          payload={"product": "Kettle K2", "sku": "K2",
                                   "warranty_until": "2026-06-20"})   # same customer: listed too
        b = self.customer()
        interaction(b, channel="web", type="purchase", payload={"warranty_until": "2026-09-01"})
        c = self.customer()
        interaction(c, channel="web", type="purchase", payload={"warranty_until": "2026-06-31"})
        interaction(c, channel="web", type="inquiry", payload={"warranty_until": "2026-06-05"})
        interaction(c, channel="web", type="purchase", payload={"warranty_until": "soon"})
        body = self.moments("warranty")
        self.assertEqual(body["items"], [
            {"customer_id": a, "kind": "warranty", "date": "2026-06-15", "days_until": 14,
             "interaction_id": ia, "product": "TV-1"},
            {"customer_id": a, "kind": "warranty", "date": "2026-06-20", "days_until": 19,
             "interaction_id": ia2, "product": "Kettle K2"}])
        self.assertEqual([i["customer_id"] for i in self.moments("warranty", days=100)["items"]],
                         [a, a, b])

    def test_every_warranty_of_a_day_pages_through(self):
        # three purchases of one customer whose warranties end the same day:
        # the cursor goes on within the customer's moments of that day
        a = self.customer()
        bought = sorted(interaction(a, channel="store", type="purchase",
                                    payload={"sku": "S-%d" % n, "warranty_until": "2026-06-10"})
                        for n in range(3))
        b = self.customer()
        interaction(b, channel="store", type="purchase", payload={"warranty_until": "2026-06-10"})
        seen, cursor = [], None
        for _ in range(10):
            params = {"limit": 1}
            if cursor:
                params["cursor"] = cursor
            body = self.moments("warranty", **params)
            seen += [(i["customer_id"], i["interaction_id"]) for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual([x for x in seen if x[0] == a], [(a, i) for i in bought])
        self.assertEqual(len(seen), 4)
        # a cursor of the earlier form (date|customer) goes on after that customer
        old = base64.urlsafe_b64encode(("2026-06-10|%s" % min(a, b)).encode()).decode().rstrip("=")
        body = self.moments("warranty", cursor=old)
        self.assertEqual([i["customer_id"] for i in body["items"]], [max(a, b)] * (
            3 if max(a, b) == a else 1))

    def declare(self, kinds):
        """PUT the moment kinds, restoring the ones before at the end of the test."""
        before = self.assertJson(get("/v1/settings/moments"), 200)["kinds"]
        restore = [{k: v for k, v in kind.items() if k != "builtin"} for kind in before]
        self.addCleanup(lambda: self.assertJson(
            request("PUT", "/v1/settings/moments", {"kinds": restore}), 200))
        return self.assertJson(request("PUT", "/v1/settings/moments", {"kinds": kinds}), 200)

    WEDDING = {"kind": "wedding_anniversary", "trait": "attributes.wedding_date",
               "purpose": "marketing", "lead_days": 0}
    MEMBER = {"kind": "membership_anniversary", "trait": "attributes.member_since",
              "purpose": "service", "lead_days": 7}

    def test_personal_dates_are_moments_once_declared(self):
        wed = self.customer(attributes={"wedding_date": "2011-06-04"})
        member = self.customer(attributes={"member_since": "2020-06-30",
                                           "wedding_date": "2026-06-02"})  # first one next year
        self.assertProblem(get(query("/v1/moments", {"kind": "wedding_anniversary"})), 400,
                           "invalid-query")
        body = self.declare([self.WEDDING, self.MEMBER,
                             {"kind": "warranty", "purpose": "service", "lead_days": 30}])
        self.assertEqual(body["kinds"], [
            {"kind": "anniversary", "purpose": "marketing", "lead_days": 0, "builtin": True},
            {"kind": "birthday", "trait": "birthday", "purpose": "marketing", "lead_days": 0,
             "builtin": True},
            {"kind": "warranty", "purpose": "service", "lead_days": 30, "builtin": True},
            dict(self.MEMBER, builtin=False), dict(self.WEDDING, builtin=False)])
        self.assertEqual(self.assertJson(get("/v1/settings/moments"), 200), body)
        self.assertEqual(self.moments("wedding_anniversary")["items"], [
            {"customer_id": wed, "kind": "wedding_anniversary", "date": "2026-06-04",
             "days_until": 3, "years": 15}])
        self.assertEqual(self.moments("membership_anniversary")["items"], [
            {"customer_id": member, "kind": "membership_anniversary", "date": "2026-06-30",
             "days_until": 29, "years": 6}])
        # the change is audited with the kinds before and after
        detail = sql("SELECT detail->'after' FROM crm.audit_log WHERE action = "
                     "'settings.moments.changed' ORDER BY audit_id DESC LIMIT 1")
        self.assertIn("attributes.member_since", detail)
        # a declared trait must be a date from now on: PATCH traits and resolve
        for bad in ("soon", "2026-02-30", 20260601, "1899-12-31"):
            with self.subTest(value=bad):
                self.assertProblem(
                    patch("/v1/customers/%s/traits" % wed,
                          {"source": "e2e", "traits": {"attributes": {"wedding_date": bad}}}),
                    422, "validation-failed", pointers=("/traits/attributes/wedding_date",))
                self.assertProblem(
                    post("/v1/customers:resolve",
                         {"source": "e2e", "identifiers": [{"kind": "email",
                                                            "value": uid() + "@ex.org"}],
                          "traits": {"attributes": {"member_since": bad}}}),
                    422, "validation-failed", pointers=("/traits/attributes/member_since",))
        self.assertJson(patch("/v1/customers/%s/traits" % wed,
                              {"source": "e2e", "traits": {"attributes": {
                                  "wedding_date": "2012-06-05", "other": "x"}}}), 200)
        self.assertEqual([(i["date"], i["years"]) for i in
                          self.moments("wedding_anniversary")["items"]], [("2026-06-05", 14)])
        self.assertJson(patch("/v1/customers/%s/traits" % wed,
                              {"source": "e2e", "traits": {"attributes": {"wedding_date": None}}}),
                        200)
        self.assertEqual(self.moments("wedding_anniversary")["items"], [])
        # no longer declared: no longer a kind, and any value is accepted again
        self.declare([])
        self.assertProblem(get(query("/v1/moments", {"kind": "wedding_anniversary"})), 400,
                           "invalid-query")
        self.assertJson(patch("/v1/customers/%s/traits" % wed,
                              {"source": "e2e", "traits": {"attributes": {"wedding_date": "soon"}}}),
                        200)

    def test_moment_settings_validation(self):
        ok = dict(self.WEDDING)
        for kinds, pointer in (
                ([dict(ok, kind="Wedding")], "/kinds/0/kind"),
                ([dict(ok, kind="")], "/kinds/0/kind"),
                ([dict(ok, trait="wedding_date")], "/kinds/0/trait"),
                ([dict(ok, trait="attributes.")], "/kinds/0/trait"),
                ([{k: v for k, v in ok.items() if k != "trait"}], "/kinds/0/trait"),
                ([dict(ok, purpose="ads")], "/kinds/0/purpose"),
                ([dict(ok, lead_days=367)], "/kinds/0/lead_days"),
                ([dict(ok, lead_days="1")], "/kinds/0/lead_days"),
                ([dict(ok, extra=1)], "/kinds/0/extra"),
                ([ok, dict(ok, trait="attributes.x")], "/kinds/1/kind"),
                ([ok, dict(ok, kind="other")], "/kinds/1/trait"),
                ([{"kind": "birthday", "trait": "attributes.b", "purpose": "marketing",
                   "lead_days": 0}], "/kinds/0/trait"),
                ([7], "/kinds/0"),
                ("x", "/kinds")):
            with self.subTest(kinds=kinds):
                self.assertProblem(request("PUT", "/v1/settings/moments", {"kinds": kinds}), 422,
                                   "validation-failed", pointers=(pointer,))
        self.assertProblem(request("PUT", "/v1/settings/moments", {"kinds": [], "x": 1}), 422,
                           "validation-failed", pointers=("/x",))
        self.assertProblem(request("PUT", "/v1/settings/moments", {}), 422,
                           "validation-failed", pointers=("/kinds",))
        # two declared kinds may swap their traits in one change
        self.declare([self.WEDDING, self.MEMBER])
        swapped = self.assertJson(request("PUT", "/v1/settings/moments", {"kinds": [
            dict(self.WEDDING, trait=self.MEMBER["trait"]),
            dict(self.MEMBER, trait=self.WEDDING["trait"])]}), 200)
        self.assertEqual({k["kind"]: k.get("trait") for k in swapped["kinds"]
                          if not k["builtin"]},
                         {"wedding_anniversary": "attributes.member_since",
                          "membership_anniversary": "attributes.wedding_date"})

    def test_consent_filter(self):
        granted = self.customer(birthday="1990-06-02")
        by_any = self.customer(birthday="1990-06-03")
        withdrawn = self.customer(birthday="1990-06-04")
        nothing = self.customer(birthday="1990-06-05")
        sms_only = self.customer(birthday="1990-06-06")
        consent(granted, channel="email")
        consent(by_any, channel="any")
        consent(withdrawn, channel="email")
        consent(withdrawn, channel="email", status="withdrawn", at="2026-05-01T00:00:00Z")
        consent(sms_only, channel="sms")
        ids = lambda body: [i["customer_id"] for i in body["items"]]  # noqa: E731
        self.assertEqual(ids(self.moments("birthday")),
                         [granted, by_any, withdrawn, nothing, sms_only])
        self.assertEqual(ids(self.moments("birthday", purpose="marketing", channel="email")),
                         [granted, by_any])
        self.assertEqual(ids(self.moments("birthday", purpose="marketing", channel="sms")),
                         [by_any, sms_only])
        # purpose alone means consent for 'any' channel
        self.assertEqual(ids(self.moments("birthday", purpose="marketing")), [by_any])
        self.assertEqual(ids(self.moments("birthday", purpose="service", channel="email")), [])
        # A purpose that needs no grant (contact_opt_out_purposes): everyone
        # but those who opted out of it.
        setting(self, "contact_opt_out_purposes", '["service"]')
        consent(sms_only, purpose="service", channel="email", status="withdrawn")
        consent(by_any, purpose="service", channel="any", status="withdrawn")
        self.assertEqual(ids(self.moments("birthday", purpose="service", channel="email")),
                         [granted, withdrawn, nothing])
        self.assertEqual(ids(self.moments("birthday", purpose="marketing", channel="email")),
                         [granted, by_any])

    def test_paging(self):
        made = sorted(((d, self.customer(birthday="1991-06-%02d" % d)) for d in (2, 2, 2, 9, 20)))
        expected = sorted(((("2026-06-%02d" % d), c) for d, c in made))
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            body = self.moments("birthday", **params)
            pages += 1
            self.assertLessEqual(len(body["items"]), 2)
            seen += [(i["date"], i["customer_id"]) for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, expected)

    def test_erased_customers_are_left_out(self):
        gone = self.customer(birthday="1990-06-02")
        kept = self.customer(birthday="1990-06-03")
        self.assertJson(request("DELETE", "/v1/customers/%s" % gone), 200)
        self.assertEqual([i["customer_id"] for i in self.moments("birthday")["items"]], [kept])

    def test_query_validation(self):
        bad_cursor = base64.urlsafe_b64encode(b"2026-13-01|x").decode().rstrip("=")
        for params in ({}, {"kind": "christmas"}, {"kind": "birthday", "days": 0},
                       {"kind": "birthday", "days": 367}, {"kind": "birthday", "days": "x"},
                       {"kind": "birthday", "limit": 0}, {"kind": "birthday", "limit": 1001},
                       {"kind": "birthday", "cursor": "!!"},
                       {"kind": "birthday", "cursor": bad_cursor},
                       {"kind": "birthday", "at": "now"},
                       {"kind": "birthday", "channel": "email"},
                       {"kind": "birthday", "purpose": "ads"},
                       {"kind": "birthday", "purpose": "marketing", "channel": "fax"},
                       {"kind": "birthday", "segment_id": "nope"}):
            with self.subTest(params=params):
                self.assertProblem(get(query("/v1/moments", params)), 400, "invalid-query")
        self.assertProblem(get(query("/v1/moments", {"kind": "birthday",
                                                     "segment_id": str(uuid.uuid4())})),
                           404, "not-found")
        body = self.assertJson(get(query("/v1/moments", {"kind": "warranty", "days": 366})), 200)
        self.assertIn("items", body)


# ---------------------------------------------------------------------------
# roles

class RoleTests(Base):
    def test_role_matrix(self):
        cid = new_customer()
        prefs = "/v1/customers/%s/preferences" % cid
        cons = "/v1/customers/%s/consents" % cid
        calls = {
            "prefs_get": lambda k: get(prefs, key=k),
            "prefs_patch": lambda k: set_prefs(cid, {"language": "en"}, key=k),
            "consents_get": lambda k: get(cons, key=k),
            "consent_post": lambda k: consent(cid, key=k),
            "decision": lambda k: decision(cid, key=k),
            "moments": lambda k: get(query("/v1/moments", {"kind": "birthday", "days": 1}),
                                     key=k),
            "export": lambda k: get("/v1/customers/%s/export" % cid, key=k),
            "erase": lambda k: request("DELETE", "/v1/customers/%s" % str(uuid.uuid4()), key=k),
        }
        allowed = {
            "front_office": {"prefs_get", "prefs_patch", "consents_get", "consent_post",
                             "decision"},
            "call_center": {"prefs_get", "prefs_patch", "consents_get", "consent_post",
                            "decision"},
            "marketing": {"decision", "moments"},
            "partner": set(),
        }
        r = post("/v1/admin/keys", {"name": "e2e-cust-partner", "role": "partner",
                                    "namespace": "e2ecust"})
        self.assertEqual(r.status, 201, r.body)
        _KEYS["partner"] = r.body["api_key"]
        for role, ok in allowed.items():
            k = key_for(role)
            for name, call in calls.items():
                with self.subTest(role=role, call=name):
                    r = call(k)
                    if name in ok:
                        self.assertIn(r.status, (200, 201), r.body)
                    else:
                        self.assertProblem(r, 403, "forbidden")
        self.assertProblem(get(prefs, key=None), 401, "unauthorized")


# ---------------------------------------------------------------------------
# export

class ExportTests(Base):
    def test_export_holds_everything(self):
        ea, eb = "xa-%s@example.com" % uid(), "xb-%s@example.com" % uid()
        a = new_customer({"first_name": "Ann", "birthday": "1990-04-01",
                          "attributes": {"vip": True}}, email=ea)
        b = new_customer({"last_name": "Smith"}, email=eb)
        r = post("/v1/customers:resolve", {
            "identifiers": [{"kind": "email", "value": ea}, {"kind": "email", "value": eb},
                            {"kind": "phone",
                             "value": "+3361%07d" % (uuid.uuid4().int % 10000000)}],
            "source": "e2e-cust"})
        self.assertEqual(r.body["merged_ids"], [b])
        set_prefs(a, FULL_PREFS)
        consent(a, channel="email")
        consent(a, channel="email", status="withdrawn", at="2026-02-01T00:00:00Z")
        i1 = interaction(a, channel="store", type="purchase", amount=42.5, currency="EUR",
                         payload={"basket": ["x"]}, tags=["shoes"])
        i2 = interaction(b, type="outbound_message")
        get("/v1/customers/%s" % a)   # an audited read
        # read-audit rows are written in batches (--audit-flush-ms): wait for it
        deadline = time.monotonic() + 15
        while harness.sql("SELECT count(*) FROM crm.audit_log WHERE action = 'customer.read' "
                          "AND customer_id = '%s'" % a) == "0" and time.monotonic() < deadline:
            time.sleep(0.05)

        body = self.assertJson(get("/v1/customers/%s/export" % b), 200)
        self.assertEqual(body["customer_id"], a)
        self.assertEqual(body["customer_ids"], [a, b])
        self.assertRegex(body["exported_at"], r"^\d{4}-")
        self.assertEqual(body["profile"]["customer_id"], a)
        self.assertEqual(body["profile"]["merged_ids"], [b])
        self.assertEqual(sorted(i["value"] for i in body["identifiers"]
                                if i["kind"] == "email"), sorted([ea, eb]))
        self.assertEqual(len(body["identifiers"]), 3)
        traits = {t["name"]: t["value"] for t in body["traits"]}
        self.assertEqual(traits, {"first_name": "Ann", "birthday": "1990-04-01",
                                  "attributes.vip": True, "last_name": "Smith"})
        self.assertEqual(body["preferences"]["preferences"]["language"], "fr-CA")
        self.assertIn("quiet_hours", body["preferences"]["sources"])
        self.assertEqual([e["status"] for e in body["consents"]["history"]],
                         ["granted", "withdrawn"])
        self.assertEqual(body["consents"]["current"][0]["status"], "withdrawn")
        inter = {i["interaction_id"]: i for i in body["interactions"]}
        self.assertEqual(set(inter), {i1, i2})
        self.assertEqual(inter[i1]["payload"], {"basket": ["x"]})
        self.assertEqual(inter[i1]["tags"], ["shoes"])
        self.assertEqual(inter[i1]["amount"], 42.5)
        self.assertEqual(len(body["merges"]), 1)
        self.assertEqual(body["merges"][0]["absorbed_id"], b)
        self.assertIn("value", body)
        actions = [e["action"] for e in body["audit"]]
        self.assertIn("customer.read", actions)
        self.assertEqual(actions[-1], "customer.export")
        self.assertIn("identity_conflicts", body)

    def test_unknown(self):
        self.assertProblem(get("/v1/customers/%s/export" % uuid.uuid4()), 404, "not-found")


# ---------------------------------------------------------------------------
# erasure

class EraseTests(Base):
    FROM, TO = "2031-03-01T00:00:00Z", "2031-03-02T00:00:00Z"

    def kpis(self):
        return self.assertJson(get(query("/v1/kpis", {"from": self.FROM, "to": self.TO})), 200)

    def test_erase(self):
        email = "er-%s@example.com" % uid()
        other = "er2-%s@example.com" % uid()
        cid = new_customer({"first_name": "Eve", "birthday": "1980-01-01",
                            "attributes": {"interests": ["golf"]}}, email=email)
        absorbed = new_customer({"last_name": "Doe"}, email=other)
        r = post("/v1/customers:resolve", {"identifiers": [{"kind": "email", "value": email},
                                                           {"kind": "email", "value": other}],
                                           "source": "e2e-cust"})
        self.assertEqual(r.body["merged_ids"], [absorbed])
        set_prefs(cid, FULL_PREFS)
        consent(cid, channel="email")
        ids = [interaction(cid, channel="store", type="purchase", amount=100, currency="EUR",
                           occurred_at="2031-03-01T10:00:00Z", tags=["shoes"],
                           payload={"address": "1 rue X", "warranty_until": "2031-04-01"}),
               interaction(cid, channel="phone", type="complaint",
                           occurred_at="2031-03-01T11:00:00Z", tags=["late"],
                           payload={"text": "my name is Eve"})]
        profile_before = self.assertJson(get("/v1/customers/%s" % cid), 200)
        kpis_before = self.kpis()
        stats_before = sql("SELECT string_agg(channel || type || n || amount, ',' ORDER BY 1) "
                           "FROM crm.interaction_stats WHERE customer_id = %s" % lit(cid))

        r = request("DELETE", "/v1/customers/%s" % absorbed)   # an absorbed id erases all
        body = self.assertJson(r, 200)
        self.assertEqual(body["customer_id"], cid)
        self.assertEqual(body["erased_ids"], [absorbed])
        self.assertEqual(body["identifiers_deleted"], 2)
        self.assertEqual(body["traits_deleted"], 4)
        self.assertEqual(body["preferences_deleted"], 8)
        self.assertEqual(body["interactions_anonymised"], 2)
        self.assertRegex(body["erased_at"], r"^\d{4}-")

        # 410 everywhere, for both ids, and no audit row for those attempts
        audit_q = ("SELECT count(*) FROM crm.audit_log WHERE customer_id = %s "
                   "AND action IN ('customer.timeline', 'customer.merges')" % lit(cid))
        audited_before = sql(audit_q)
        for cust in (cid, absorbed):
            for path in ("/v1/customers/%s", "/v1/customers/%s/preferences",
                         "/v1/customers/%s/consents", "/v1/customers/%s/export",
                         "/v1/customers/%s/interactions", "/v1/customers/%s/merges"):
                with self.subTest(path=path % cust):
                    p = self.assertProblem(get(path % cust), 410, "gone")
                    self.assertIn(cid, p["detail"])
            self.assertProblem(decision(cust), 410, "gone")
            self.assertProblem(set_prefs(cust, {"language": "fr"}), 410, "gone")
            self.assertProblem(consent(cust), 410, "gone")
            self.assertProblem(request("DELETE", "/v1/customers/%s" % cust), 410, "gone")
        self.assertEqual(sql(audit_q), audited_before)
        # nothing can be written to it any more
        self.assertProblem(patch("/v1/customers/%s/traits" % cid,
                                 {"source": "x", "traits": {"first_name": "Eve"}}),
                           404, "not-found")
        r = post("/v1/interactions", {"customer_id": cid, "source": "e2e-cust",
                                      "external_id": "x-" + uid(), "channel": "web",
                                      "type": "visit", "occurred_at": AT})
        self.assertProblem(r, 404, "not-found")

        # nothing personal left
        q = "SELECT count(*) FROM %s WHERE customer_id IN (%s, %s)" % ("%s", lit(cid),
                                                                      lit(absorbed))
        self.assertEqual(sql(q % "crm.identifiers"), "0")
        self.assertEqual(sql(q % "crm.traits"), "0")
        self.assertEqual(sql(q % "crm.preferences"), "0")
        self.assertEqual(sql("SELECT count(*) FROM crm.customers WHERE customer_id IN (%s, %s) "
                             "AND erased_at IS NOT NULL" % (lit(cid), lit(absorbed))), "2")
        rows = sql("SELECT payload::text || '|' || array_to_string(tags, ',') || '|' || "
                   "coalesce(resolved_by::text, '') FROM crm.interactions WHERE customer_id = %s "
                   "ORDER BY occurred_at" % lit(cid)).splitlines()
        self.assertEqual(rows, ["{}|shoes|", "{}|late|"])
        self.assertEqual(sql("SELECT count(*) FROM crm.merges WHERE absorbed_id = %s AND "
                             "(trigger_identifiers <> '[]' OR absorbed_identifiers <> '[]' OR "
                             "absorbed_traits <> '[]' OR survivor_traits <> '[]')"
                             % lit(absorbed)), "0")
        self.assertEqual(sql("SELECT count(*) FROM crm.merges m, LATERAL (SELECT to_jsonb(m) "
                             "AS j) x WHERE m.absorbed_id = %s AND x.j::text LIKE %s"
                             % (lit(absorbed), lit("%" + email + "%"))), "0")
        # consent history kept (documented choice), without identifiers
        self.assertEqual(sql("SELECT count(*) FROM crm.consent_events WHERE customer_id = %s"
                             % lit(cid)), "1")
        # aggregates and KPIs still add up
        self.assertEqual(sql("SELECT string_agg(channel || type || n || amount, ',' ORDER BY 1) "
                             "FROM crm.interaction_stats WHERE customer_id = %s" % lit(cid)),
                         stats_before)
        self.assertEqual(profile_before["aggregates"]["revenue"], {"EUR": 100})
        kpis_after = self.kpis()
        # the journey stage's counts and transitions are of customers still
        # here (docs/stage.md): the erased one leaves onboarding; its
        # complaint still counts in the phases, as in every interaction KPI
        self.assertEqual(kpis_after["stage"]["customers_by_stage"]["onboarding"],
                         kpis_before["stage"]["customers_by_stage"]["onboarding"] - 1)
        for k in (kpis_after, kpis_before):
            del k["stage"]["customers_by_stage"], k["stage"]["transitions"]
        self.assertEqual(kpis_after, kpis_before)
        # the audit log has the erasure
        self.assertEqual(sql("SELECT action || '|' || role || '|' || (detail->>'identifiers_deleted') "
                             "FROM crm.audit_log WHERE customer_id = %s AND action = "
                             "'customer.erase'" % lit(cid)), "customer.erase|admin|2")
        # the identifiers are free again: the same email makes a NEW customer
        r = post("/v1/customers:resolve", {"identifiers": [{"kind": "email", "value": email}],
                                           "source": "e2e-cust"})
        self.assertEqual(r.status, 201, r.body)
        self.assertNotIn(r.body["customer_id"], (cid, absorbed))
        self.assertEqual(r.body["customer"]["traits"], {"attributes": {}})
        self.assertEqual(r.body["customer"]["preferences"], {"custom": {}})
        self.assertEqual(r.body["customer"]["consents"], [])
        # a redelivered interaction of the erased customer stays a duplicate
        self.assertEqual(sql("SELECT count(*) FROM crm.interactions WHERE interaction_id IN "
                             "(%s, %s)" % (lit(ids[0]), lit(ids[1]))), "2")

    def test_unknown_and_role(self):
        self.assertProblem(request("DELETE", "/v1/customers/%s" % uuid.uuid4()), 404,
                           "not-found")
        self.assertProblem(request("DELETE", "/v1/customers/nope"), 400, "invalid-uuid")
        cid = new_customer()
        self.assertProblem(request("DELETE", "/v1/customers/%s" % cid,
                                   key=key_for("call_center")), 403, "forbidden")
        self.assertJson(get("/v1/customers/%s" % cid), 200)


if __name__ == "__main__":
    sys.exit(harness.main())
