#!/usr/bin/env python3
"""End-to-end tests of cases (issue 16, part 1; docs/cases.md): opening,
reading, listing and changing cases (status transitions, 409
case-transition), roles and read audit; interactions that carry a case_id
or open a case by rule (a complaint), the 422 for a case of another
customer (single and batch, nothing written), first_response_at; the open
cases on the profile through the profile cache; the case KPIs; the
case.opened and case.status_changed events; and cases through merge,
unmerge and erasure.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_cases.py [TestClass[.test_method] ...]

Every test uses fresh customers; KPIs are restricted to a per-test segment
(an attribute unique to the test), so the database need not be empty.
"""

import datetime
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get, patch, post, query, uid  # noqa: E402

sql = harness.sql
lit = harness.lit
NO_CASE = "00000000-0000-4000-8000-000000000000"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def new_customer(attributes=None, email=None):
    body = {"identifiers": [{"kind": "email",
                             "value": email or "case-%s@example.com" % uid()}],
            "source": "e2e-cases"}
    if attributes:
        body["traits"] = {"attributes": attributes}
    r = post("/v1/customers:resolve", body)
    assert r.status == 201, r
    return r.body["customer_id"]


def item(cid=None, type="complaint", channel="phone", at="2026-03-01T10:00:00Z", **fields):
    body = {"source": "e2e-cases", "external_id": "c-" + uid(), "channel": channel,
            "type": type, "occurred_at": at}
    if cid is not None:
        body["customer_id"] = cid
    body.update(fields)
    return body


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh_profile(cid):
    """The profile built from the tables now, bypassing the cache."""
    return json.loads(sql("SELECT coalesce(crm.gone_doc(%s), crm.profile(%s))"
                          % (lit(cid), lit(cid))))


def make_key(role):
    r = post("/v1/admin/keys", {"name": "e2e-cases-%s-%s" % (role, uid()), "role": role,
                                **({"namespace": "e2e-cases"} if role == "partner" else {})})
    assert r.status == 201, r
    return r.body["api_key"]


class Base(harness.CrmTestCase):
    def open_case(self, cid, status=201, **fields):
        body = {"source": "e2e-cases", "channel": "phone"}
        body.update(fields)
        r = post("/v1/customers/%s/cases" % cid, body)
        if status != 201:
            return r
        doc = self.assertJson(r, 201)
        self.assertEqual(r.headers.get("Content-Location"), "/v1/cases/" + doc["case_id"])
        return doc

    def case(self, case_id):
        return self.assertJson(get("/v1/cases/" + case_id), 200)

    def set_case(self, case_id, **fields):
        return self.assertJson(patch("/v1/cases/" + case_id, fields), 200)

    def ingest(self, cid=None, status=201, **kw):
        r = post("/v1/interactions", item(cid, **kw))
        return self.assertJson(r, status)

    def cases_of(self, cid, **params):
        return self.assertJson(get(query("/v1/customers/%s/cases" % cid, params)), 200)


# ---------------------------------------------------------------------------
# The API

class CaseApiTests(Base):
    def test_open_read_change_and_list(self):
        cid = new_customer()
        doc = self.open_case(cid, subject="lid broken", priority="high", assignee="agent 7")
        self.assertEqual((doc["customer_id"], doc["status"], doc["priority"], doc["channel"],
                          doc["subject"], doc["assignee"], doc["reopen_count"],
                          doc["interactions"]),
                         (cid, "open", "high", "phone", "lid broken", "agent 7", 0, []))
        for k in ("opened_at", "created_at", "updated_at"):
            self.assertTimestamp(doc[k], k)
        for k in ("first_response_at", "resolved_at", "closed_at", "purchase_id", "opened_by"):
            self.assertIsNone(doc[k], k)
        self.assertEqual(self.case(doc["case_id"]), doc)

        work = self.set_case(doc["case_id"], status="in_progress", assignee=None, priority="urgent")
        self.assertEqual((work["status"], work["assignee"], work["priority"]),
                         ("in_progress", None, "urgent"))
        done = self.set_case(doc["case_id"], status="resolved")
        self.assertTimestamp(done["resolved_at"])
        self.assertIsNone(done["closed_at"])
        closed = self.set_case(doc["case_id"], status="closed")
        self.assertEqual(closed["resolved_at"], done["resolved_at"])
        self.assertTimestamp(closed["closed_at"])

        other = self.open_case(cid, channel="email", opened_at="2026-01-05T08:00:00+01:00")
        self.assertEqual(other["opened_at"], "2026-01-05T07:00:00.000000Z")
        self.assertEqual(other["priority"], "normal")
        listed = self.cases_of(cid)
        self.assertEqual(listed["customer_id"], cid)
        self.assertEqual([c["case_id"] for c in listed["items"]],
                         [doc["case_id"], other["case_id"]])  # newest opened first
        self.assertEqual([c["case_id"] for c in self.cases_of(cid, status="open")["items"]],
                         [other["case_id"]])
        self.assertEqual(len(self.cases_of(cid, limit="1")["items"]), 1)
        self.assertProblem(get("/v1/customers/%s/cases?status=pending" % cid), 400,
                           "invalid-query")
        self.assertProblem(get("/v1/customers/%s/cases?limit=0" % cid), 400, "invalid-query")

    def test_unknown_customer_and_case(self):
        self.assertProblem(self.open_case(NO_CASE, status=404), 404, "not-found")
        self.assertProblem(get("/v1/cases/" + NO_CASE), 404, "not-found")
        self.assertProblem(patch("/v1/cases/" + NO_CASE, {"status": "closed"}), 404, "not-found")
        self.assertProblem(get("/v1/customers/%s/cases" % NO_CASE), 404, "not-found")
        self.assertProblem(get("/v1/cases/not-a-uuid"), 400, "invalid-uuid")

    def test_transitions(self):
        cid = new_customer()
        case_id = self.open_case(cid)["case_id"]
        self.set_case(case_id, status="in_progress")
        r = patch("/v1/cases/" + case_id, {"status": "open"})
        doc = self.assertProblem(r, 409, "case-transition")
        self.assertEqual((doc["from"], doc["to"], doc["allowed"]),
                         ("in_progress", "open", ["resolved", "closed"]))
        # nothing else of a refused patch is written
        r = patch("/v1/cases/" + case_id, {"status": "open", "subject": "changed"})
        self.assertProblem(r, 409, "case-transition")
        self.assertIsNone(self.case(case_id)["subject"])

        self.set_case(case_id, status="closed")
        doc = self.assertProblem(patch("/v1/cases/" + case_id, {"status": "resolved"}), 409,
                                 "case-transition")
        self.assertEqual(doc["allowed"], ["open"])
        # asking for the status it has changes nothing
        before = self.case(case_id)
        same = self.set_case(case_id, status="closed")
        self.assertEqual((same["closed_at"], same["reopen_count"]),
                         (before["closed_at"], 0))
        # reopen: counted, the resolution and closing forgotten
        again = self.set_case(case_id, status="open")
        self.assertEqual((again["status"], again["reopen_count"], again["closed_at"]),
                         ("open", 1, None))
        self.assertTimestamp(again["reopened_at"])
        self.set_case(case_id, status="resolved")
        self.assertEqual(self.set_case(case_id, status="open")["reopen_count"], 2)

    def test_validation(self):
        cid = new_customer()
        self.assertProblem(self.open_case(cid, status=422, channel="fax", priority="asap",
                                          extra=1),
                           422, "validation-failed", pointers=("/channel", "/priority", "/extra"))
        self.assertProblem(post("/v1/customers/%s/cases" % cid, {"channel": "web"}), 422,
                           "validation-failed", pointers=("/source",))
        case_id = self.open_case(cid)["case_id"]
        self.assertProblem(patch("/v1/cases/" + case_id, {}), 422, "validation-failed",
                           pointers=("",))
        self.assertProblem(patch("/v1/cases/" + case_id, {"status": "reopened"}), 422,
                           "validation-failed", pointers=("/status",))
        # purchase_id: a purchase of the case's customer only
        other = new_customer()
        theirs = self.ingest(other, type="purchase", amount="10", currency="EUR")
        mine_view = self.ingest(cid, type="page_view")
        mine = self.ingest(cid, type="purchase", amount="20", currency="EUR")
        for wrong in (theirs["interaction_id"], mine_view["interaction_id"], NO_CASE):
            self.assertProblem(patch("/v1/cases/" + case_id, {"purchase_id": wrong}), 422,
                               "validation-failed", pointers=("/purchase_id",))
            self.assertProblem(self.open_case(cid, status=422, purchase_id=wrong), 422,
                               "validation-failed", pointers=("/purchase_id",))
        self.assertEqual(self.set_case(case_id, purchase_id=mine["interaction_id"])["purchase_id"],
                         mine["interaction_id"])
        opened = self.open_case(cid, purchase_id=mine["interaction_id"])
        self.assertEqual(opened["purchase_id"], mine["interaction_id"])
        self.assertEqual(sql("SELECT count(*) FROM crm.cases WHERE customer_id = %s" % lit(cid)),
                         "2")

    def test_roles(self):
        cid = new_customer()
        case_id = self.open_case(cid)["case_id"]
        keys = {role: make_key(role) for role in
                ("front_office", "call_center", "marketing", "partner")}
        body = {"source": "e2e-cases", "channel": "store"}
        path = "/v1/customers/%s/cases" % cid
        # front office opens cases, the call centre works them
        self.assertJson(post(path, body, key=keys["front_office"]), 201)
        self.assertJson(post(path, body, key=keys["call_center"]), 201)
        self.assertJson(get(path, key=keys["call_center"]), 200)
        self.assertJson(get("/v1/cases/" + case_id, key=keys["call_center"]), 200)
        self.assertJson(patch("/v1/cases/" + case_id, {"priority": "low"},
                              key=keys["call_center"]), 200)
        for role in ("front_office", "marketing", "partner"):
            self.assertProblem(get(path, key=keys[role]), 403, "forbidden")
            self.assertProblem(get("/v1/cases/" + case_id, key=keys[role]), 403, "forbidden")
            self.assertProblem(patch("/v1/cases/" + case_id, {"priority": "low"}, key=keys[role]),
                               403, "forbidden")
        for role in ("marketing", "partner"):
            self.assertProblem(post(path, body, key=keys[role]), 403, "forbidden")

    def test_reads_are_audited(self):
        cid = new_customer()
        case_id = self.open_case(cid)["case_id"]
        count = ("SELECT count(*) FROM crm.audit_log WHERE customer_id = %s AND action = %s")
        self.assertEqual(sql(count % (lit(cid), lit("case.read"))), "0")
        self.case(case_id)
        self.cases_of(cid)
        self.assertEqual(sql(count % (lit(cid), lit("case.read"))), "1")
        self.assertEqual(sql(count % (lit(cid), lit("customer.cases.read"))), "1")


# ---------------------------------------------------------------------------
# Interactions and cases

class IngestTests(Base):
    def test_a_complaint_opens_a_case(self):
        cid = new_customer()
        doc = self.ingest(cid, channel="chat", at="2026-03-02T09:30:00Z", tags=["delivery"])
        self.assertTrue(doc["case_opened"])
        case = self.case(doc["case_id"])
        self.assertEqual((case["customer_id"], case["status"], case["channel"], case["opened_at"],
                          case["opened_by"], case["source"]),
                         (cid, "open", "chat", "2026-03-02T09:30:00.000000Z",
                          doc["interaction_id"], "e2e-cases"))
        self.assertEqual([i["interaction_id"] for i in case["interactions"]],
                         [doc["interaction_id"]])
        timeline = self.assertJson(get("/v1/customers/%s/interactions" % cid), 200)
        self.assertEqual(timeline["items"][0]["case_id"], doc["case_id"])
        # other types open none
        plain = self.ingest(cid, type="support_call")
        self.assertNotIn("case_id", plain)
        self.assertEqual(sql("SELECT count(*) FROM crm.cases WHERE customer_id = %s" % lit(cid)),
                         "1")

    def test_a_complaint_naming_a_case_follows_it_and_reopens_it(self):
        cid = new_customer()
        first = self.ingest(cid, at="2026-03-01T10:00:00Z")
        again = self.ingest(cid, at="2026-03-01T11:00:00Z", case_id=first["case_id"])
        self.assertEqual((again["case_id"], again["case_opened"]), (first["case_id"], False))
        self.assertEqual(sql("SELECT count(*) FROM crm.cases WHERE customer_id = %s" % lit(cid)),
                         "1")
        self.set_case(first["case_id"], status="resolved")
        # a complaint from before the resolution (arriving late) reopens nothing
        self.ingest(cid, at="2026-03-01T12:00:00Z", case_id=first["case_id"])
        self.assertEqual(self.case(first["case_id"])["status"], "resolved")
        # one after it does
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        self.ingest(cid, at=iso(now), case_id=first["case_id"])
        case = self.case(first["case_id"])
        self.assertEqual((case["status"], case["reopen_count"], case["resolved_at"]),
                         ("open", 1, None))
        self.assertEqual(len(case["interactions"]), 4)

    def test_first_response(self):
        cid = new_customer()
        case_id = self.ingest(cid, at="2026-03-01T10:00:00Z")["case_id"]
        # follow-ups of the customer's side, and a response dated before the case, do not count
        self.ingest(cid, type="page_view", at="2026-03-01T10:05:00Z", case_id=case_id)
        self.ingest(cid, type="outbound_message", at="2026-03-01T09:00:00Z", case_id=case_id)
        self.assertIsNone(self.case(case_id)["first_response_at"])
        self.ingest(cid, type="outbound_message", channel="email", at="2026-03-01T12:00:00Z",
                    case_id=case_id)
        self.assertEqual(self.case(case_id)["first_response_at"], "2026-03-01T12:00:00.000000Z")
        # an earlier response arriving later wins; a later one does not
        self.ingest(cid, type="support_call", at="2026-03-01T11:00:00Z", case_id=case_id)
        self.ingest(cid, type="support_call", at="2026-03-01T13:00:00Z", case_id=case_id)
        self.assertEqual(self.case(case_id)["first_response_at"], "2026-03-01T11:00:00.000000Z")
        # without a case_id a response is no response
        other = self.ingest(cid, at="2026-03-02T10:00:00Z")["case_id"]
        self.ingest(cid, type="outbound_message", at="2026-03-02T10:10:00Z")
        self.assertIsNone(self.case(other)["first_response_at"])

    def test_a_case_of_another_customer_is_refused_and_nothing_is_written(self):
        a, b = new_customer(), new_customer()
        case_id = self.open_case(a)["case_id"]
        body = item(b, type="support_call", case_id=case_id)
        self.assertProblem(post("/v1/interactions", body), 422, "validation-failed",
                           pointers=("/case_id",))
        self.assertProblem(post("/v1/interactions", item(b, case_id=NO_CASE)), 422,
                           "validation-failed", pointers=("/case_id",))
        self.assertProblem(post("/v1/interactions", item(b, case_id="nope")), 422,
                           "validation-failed", pointers=("/case_id",))
        # by identifiers: a new email would make a new customer; it is not made
        email = "case-new-%s@example.com" % uid()
        by_ids = item(identifiers=[{"kind": "email", "value": email}], case_id=case_id)
        self.assertProblem(post("/v1/interactions", by_ids), 422, "validation-failed",
                           pointers=("/case_id",))
        self.assertEqual(sql("SELECT count(*) FROM crm.identifiers WHERE value = %s" % lit(email)),
                         "0")
        # by identifiers of the case's customer: accepted
        a_email = sql("SELECT value FROM crm.identifiers WHERE customer_id = %s" % lit(a))
        ok = self.ingest(identifiers=[{"kind": "email", "value": a_email}], type="support_call",
                         case_id=case_id)
        self.assertEqual(ok["customer_id"], a)
        # in a batch, the item fails alone
        batch = {"items": [item(b, type="support_call", case_id=case_id),
                           item(b, type="page_view"),
                           dict(by_ids, external_id="c-" + uid())]}
        doc = self.assertJson(post("/v1/interactions:batch", batch), 200)
        self.assertEqual((doc["created"], doc["failed"]), (1, 2))
        for i in (0, 2):
            self.assertProblemDoc(doc["results"][i]["problem"], 422, "validation-failed")
            self.assertEqual(doc["results"][i]["problem"]["errors"][0]["pointer"],
                             "/items/%d/case_id" % i)
        self.assertEqual(sql("SELECT count(*) FROM crm.interactions WHERE customer_id = %s"
                             % lit(b)), "1")
        self.assertEqual(sql("SELECT count(*) FROM crm.identifiers WHERE value = %s" % lit(email)),
                         "0")

    def test_batch(self):
        cid = new_customer()
        case_id = self.open_case(cid, opened_at="2026-03-01T08:00:00Z")["case_id"]
        complaint = item(cid, at="2026-03-01T09:00:00Z")
        answer = item(cid, type="outbound_message", channel="email", at="2026-03-01T09:30:00Z",
                      case_id=case_id)
        batch = {"items": [complaint, item(cid, type="page_view"), answer, complaint]}
        doc = self.assertJson(post("/v1/interactions:batch", batch), 200)
        self.assertEqual((doc["created"], doc["duplicates"], doc["failed"]), (3, 1, 0), doc)
        r = doc["results"]
        self.assertTrue(r[0]["case_opened"])
        self.assertNotIn("case_id", r[1])
        self.assertEqual((r[2]["case_id"], r[2]["case_opened"]), (case_id, False))
        self.assertEqual((r[3]["status"], r[3]["interaction_id"]),
                         ("duplicate", r[0]["interaction_id"]))
        self.assertEqual(self.case(case_id)["first_response_at"], "2026-03-01T09:30:00.000000Z")
        self.assertEqual(self.case(r[0]["case_id"])["opened_by"], r[0]["interaction_id"])
        # a redelivery of the whole batch opens no second case
        again = self.assertJson(post("/v1/interactions:batch", batch), 200)
        self.assertEqual(again["duplicates"], 4)
        self.assertEqual(sql("SELECT count(*) FROM crm.cases WHERE customer_id = %s" % lit(cid)),
                         "2")


# ---------------------------------------------------------------------------
# Profile, KPIs, events

def segment_for(tag):
    r = post("/v1/segments", {"name": "cases-" + tag,
                              "rule": {"field": "traits.attributes.case_test", "op": "eq",
                                       "value": tag}})
    assert r.status == 201, r
    return r.body["segment_id"]


class ProfileKpiEventTests(Base):
    def profile(self, cid):
        return self.assertJson(get("/v1/customers/" + cid), 200)

    def test_open_cases_on_the_profile(self):
        cid = new_customer()
        self.assertEqual(self.profile(cid)["cases"], {"open": [], "open_count": 0, "total": 0})
        complaint = self.ingest(cid, at="2026-03-01T10:00:00Z")
        manual = self.open_case(cid, subject="call back", opened_at="2026-03-02T10:00:00Z")
        cases = self.profile(cid)["cases"]  # the cached document follows every change
        self.assertEqual(([c["case_id"] for c in cases["open"]], cases["open_count"],
                          cases["total"]),
                         ([manual["case_id"], complaint["case_id"]], 2, 2))
        self.set_case(manual["case_id"], status="resolved")
        cases = self.profile(cid)["cases"]
        self.assertEqual(([c["case_id"] for c in cases["open"]], cases["total"]),
                         ([complaint["case_id"]], 2))
        self.set_case(complaint["case_id"], status="in_progress", assignee="agent 9")
        cases = self.profile(cid)["cases"]
        self.assertEqual((cases["open"][0]["status"], cases["open"][0]["assignee"]),
                         ("in_progress", "agent 9"))
        self.ingest(cid, type="outbound_message", at="2026-03-01T10:20:00Z",
                    case_id=complaint["case_id"])
        doc = self.profile(cid)
        self.assertEqual(doc["cases"]["open"][0]["first_response_at"],
                         "2026-03-01T10:20:00.000000Z")
        self.assertEqual(doc, fresh_profile(cid))

    def test_kpis(self):
        tag = uid()
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        t0 = now - datetime.timedelta(hours=2)
        c1, c2 = new_customer({"case_test": tag}), new_customer({"case_test": tag})
        outsider = new_customer()
        k1 = self.open_case(c1, channel="phone", opened_at=iso(t0))["case_id"]
        k2 = self.open_case(c2, channel="email", opened_at=iso(t0))["case_id"]
        k3 = self.open_case(c2, channel="email", opened_at=iso(t0))["case_id"]
        self.open_case(outsider, opened_at=iso(t0))
        self.open_case(c1, opened_at="2020-01-01T00:00:00Z")  # opened before the period
        self.ingest(c1, type="outbound_message", at=iso(t0 + datetime.timedelta(seconds=600)),
                    case_id=k1)
        self.ingest(c2, type="support_call", at=iso(t0 + datetime.timedelta(seconds=1200)),
                    case_id=k2)
        self.set_case(k1, status="resolved")
        self.set_case(k2, status="closed")
        self.set_case(k2, status="open")
        self.set_case(k3, status="in_progress")
        frm, to = iso(now - datetime.timedelta(days=1)), iso(now + datetime.timedelta(days=1))
        doc = self.assertJson(get(query("/v1/kpis", {"from": frm, "to": to,
                                                     "segment_id": segment_for(tag)})), 200)
        cases = doc["cases"]
        resolution = cases.pop("median_resolution_seconds")
        self.assertTrue(7200 <= resolution < 7200 + 600, resolution)
        phone = cases["by_channel"].pop("phone")
        self.assertTrue(7200 <= phone.pop("median_resolution_seconds") < 7800)
        self.assertEqual(cases, {
            "opened": 3, "open_at_end": 3, "resolved": 1, "closed": 0, "responded": 2,
            "reopened": 1, "reopen_rate": 0.333333, "median_first_response_seconds": 900,
            "by_channel": {"email": {
                "opened": 2, "open_at_end": 2, "resolved": 0, "closed": 0, "responded": 1,
                "reopened": 1, "reopen_rate": 0.5, "median_first_response_seconds": 1200,
                "median_resolution_seconds": None}}})
        # phone: k1 (resolved) and the case opened in 2020, still open at the end
        self.assertEqual(phone, {"opened": 1, "open_at_end": 1, "resolved": 1, "closed": 0,
                                 "responded": 1, "reopened": 0, "reopen_rate": 0,
                                 "median_first_response_seconds": 600})

    def test_events(self):
        cid = new_customer()
        case_id = self.ingest(cid)["case_id"]
        self.set_case(case_id, status="in_progress", subject="secret subject")
        self.set_case(case_id, priority="high")  # no status change: no event
        rows = sql("SELECT type || ' ' || data::text FROM crm.events WHERE customer_id = %s "
                   "AND type LIKE 'case.%%' ORDER BY seq" % lit(cid)).splitlines()
        self.assertEqual(len(rows), 2, rows)
        opened = json.loads(rows[0].split(" ", 1)[1])
        self.assertTrue(rows[0].startswith("case.opened "))
        self.assertEqual((opened["case_id"], opened["status"], opened["channel"]),
                         (case_id, "open", "phone"))
        changed = json.loads(rows[1].split(" ", 1)[1])
        self.assertEqual(changed, {"case_id": case_id, "from": "open", "to": "in_progress",
                                   "reopen_count": 0})
        self.assertNotIn("secret", "".join(rows))
        # the feed knows the types
        self.assertJson(get("/v1/events?types=case.opened,case.status_changed&limit=1"), 200)


# ---------------------------------------------------------------------------
# Merge, unmerge, erasure

class IdentityTests(Base):
    def test_merge_moves_cases_and_unmerge_gives_them_back(self):
        a, b = new_customer(), new_customer()
        b_email = sql("SELECT value FROM crm.identifiers WHERE customer_id = %s" % lit(b))
        mine = self.open_case(a, subject="a's case")["case_id"]
        theirs = self.open_case(b, subject="b's case")["case_id"]
        complaint = self.ingest(identifiers=[{"kind": "email", "value": b_email}])["case_id"]
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                  "reason": "e2e-cases: same person"}), 200)
        self.assertEqual(self.case(theirs)["customer_id"], a)
        self.assertEqual({c["case_id"] for c in self.cases_of(a)["items"]},
                         {mine, theirs, complaint})
        self.assertEqual(self.cases_of(b)["customer_id"], a)  # an absorbed id follows
        profile = self.assertJson(get("/v1/customers/" + a), 200)
        self.assertEqual(profile["cases"]["open_count"], 3)
        # while merged: a case opened through the absorbed id, one through the survivor
        via_b = self.open_case(b, subject="via b")["case_id"]
        via_a = self.open_case(a, subject="via a")["case_id"]
        # a case follows the survivor's interactions
        self.ingest(a, type="support_call", case_id=theirs)

        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b}), 200)
        self.assertEqual({c["case_id"] for c in self.cases_of(a)["items"]}, {mine, via_a})
        self.assertEqual({c["case_id"] for c in self.cases_of(b)["items"]},
                         {theirs, complaint, via_b})
        self.assertEqual(self.assertJson(get("/v1/customers/" + b), 200)["cases"]["open_count"],
                         3)
        self.assertEqual(self.assertJson(get("/v1/customers/" + a), 200)["cases"]["open_count"],
                         2)
        self.assertEqual(self.assertJson(get("/v1/customers/" + a), 200), fresh_profile(a))

    def test_erasure_removes_the_texts_and_keeps_the_counts(self):
        tag = uid()
        cid = new_customer({"case_test": tag})
        done = self.open_case(cid, subject="private matter", assignee="agent 1")["case_id"]
        self.set_case(done, status="resolved")
        still_open = self.ingest(cid)["case_id"]
        self.set_case(still_open, subject="another private matter")
        now = datetime.datetime.now(datetime.timezone.utc)
        params = {"from": iso(now - datetime.timedelta(days=400)),
                  "to": iso(now + datetime.timedelta(days=1))}
        before = self.assertJson(get(query("/v1/kpis", dict(params, segment_id=segment_for(tag)))),
                                 200)["cases"]
        self.assertEqual((before["opened"], before["resolved"], before["open_at_end"]), (2, 1, 1))
        kpis_of_cid = ("SELECT crm.case_kpis(%s, %s, ARRAY[%s]::uuid[])"
                       % (lit(params["from"]), lit(params["to"]), lit(cid)))
        self.assertEqual(json.loads(sql(kpis_of_cid)), before)

        doc = self.assertJson(harness.request("DELETE", "/v1/customers/%s" % cid), 200)
        self.assertEqual(doc["cases_anonymised"], 2)
        self.assertProblem(get("/v1/cases/" + done), 410, "gone")
        self.assertProblem(patch("/v1/cases/" + done, {"status": "open"}), 410, "gone")
        self.assertProblem(get("/v1/customers/%s/cases" % cid), 410, "gone")
        self.assertProblem(self.open_case(cid, status=410), 410, "gone")
        # the texts are gone, statuses and times stay: the KPIs are the same
        self.assertEqual(sql("SELECT string_agg(concat_ws(',', status, coalesce(subject, '-'), "
                             "coalesce(assignee, '-'), resolved_at IS NOT NULL, "
                             "closed_at IS NOT NULL), ' ' ORDER BY status) FROM crm.cases "
                             "WHERE customer_id = %s" % lit(cid)),
                         "open,-,-,f,f resolved,-,-,t,f")
        self.assertEqual(json.loads(sql(kpis_of_cid)), before)
        # no event of the customer's cases held the texts
        self.assertEqual(sql("SELECT count(*) FROM crm.events WHERE customer_id = %s "
                             "AND data::text LIKE '%%private%%'" % lit(cid)), "0")


if __name__ == "__main__":
    harness.main()
