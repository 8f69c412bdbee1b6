#!/usr/bin/env python3
"""End-to-end tests of live segment membership (docs/segments.md): the
refresher moves customers in and out of segments when their inputs change
(an interaction, traits, a value run), with segment.entered /
segment.exited events in the feed and entered_at on the members; PATCH of
a segment recomputes it; the profile and GET /v1/customers/{id}/segments
show memberships; merge and erasure; the webhook segment filter; two
server instances write each event once.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_membership.py [TestClass[.test_method] ...]

Every test marks its customers with a unique trait attribute and selects
them with segments on it, so the database need not be empty. The server
runs with the default refresher period (1 s); anything asynchronous is
polled for up to WAIT seconds.
"""

import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, patch, post, query, request, uid  # noqa: E402
import test_activation  # noqa: E402  (the loopback webhook receiver)
from test_activation import Receiver, drop_webhook, feed_since, feed_tail  # noqa: E402

SERVER_ARGS = test_activation.SERVER_ARGS
WAIT = 15.0
SEGMENT_TYPES = "segment.entered,segment.exited"
sql = harness.sql
lit = harness.lit


def setUpModule():
    harness.SERVER = harness.extra_server(*SERVER_ARGS)


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

def must(r, status):
    if r.status != status:
        raise AssertionError("expected HTTP %d, got %d: %r" % (status, r.status, r.body))
    return r.body


def marker_rule(marker):
    return {"field": "traits.attributes.mship", "op": "eq", "value": marker}


def new_customer(marker, **traits):
    traits = dict(traits)
    traits["attributes"] = {"mship": marker}
    r = harness.resolve([{"kind": "email", "value": "mship-%s@example.com" % uid()}],
                        source="e2e-mship", traits=traits)
    if r.status not in (200, 201):
        raise AssertionError("resolve: %d %r" % (r.status, r.body))
    return r.body["customer_id"]


def purchase(cid, amount=20):
    return must(harness.ingest(customer_id=cid, channel="store", type="purchase", amount=amount,
                               currency="EUR"), 201)


def new_segment(rule, name=None, **kw):
    return must(post("/v1/segments", {"name": name or "e2e-mship-%s" % uid(), "rule": rule},
                     **kw), 201)


def delete_segment(sid):
    request("DELETE", "/v1/segments/%s" % sid)


def members(sid):
    """{customer_id: entered_at} of the segment's members page."""
    page = must(get(query("/v1/segments/%s/customers" % sid, {"limit": 1000})), 200)
    return {it["customer_id"]: it["entered_at"] for it in page["items"]}


def stored_members(sid):
    out = sql("SELECT coalesce(jsonb_object_agg(customer_id, entered_at), '{}') "
              "FROM crm.segment_members WHERE segment_id = %s" % lit(sid))
    return json.loads(out)


def wait_until(what, predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %.0f s: %s" % (timeout, what))
        time.sleep(0.1)


def segment_events(cursor, sid):
    """The segment events of segment sid after cursor."""
    items, _ = feed_since(cursor, types=SEGMENT_TYPES)
    return [e for e in items if e["data"].get("segment_id") == sid]


def wait_events(cursor, sid, predicate, what, timeout=WAIT):
    return wait_until(what, lambda: (lambda evs: evs if predicate(evs) else None)(
        segment_events(cursor, sid)), timeout)


def history(cid, **kw):
    return must(get("/v1/customers/%s/segments" % cid, **kw), 200)


# ---------------------------------------------------------------------------

class LiveMembershipTests(harness.CrmTestCase):
    def segment(self, rule, **kw):
        seg = new_segment(rule, **kw)
        self.addCleanup(delete_segment, seg["segment_id"])
        return seg

    def test_an_interaction_moves_a_customer_in(self):
        m = "in-" + uid()
        cid = new_customer(m)
        seg = self.segment({"all": [marker_rule(m), {"interaction": {"type": "purchase"}}]})
        sid = seg["segment_id"]
        self.assertEqual(seg["depends"], ["interactions", "traits"])
        self.assertEqual(stored_members(sid), {})
        cursor = feed_tail()
        t0 = time.monotonic()
        purchase(cid)
        # read (and cache) the profile before the refresher's round: the round
        # must invalidate the cached document
        self.assertEqual(must(get("/v1/customers/%s" % cid), 200)["segments"], [])
        evs = wait_events(cursor, sid, lambda evs: evs, "segment.entered after a purchase")
        sys.stderr.write("membership: entered event %.2f s after the purchase\n"
                         % (time.monotonic() - t0))
        self.assertEqual([(e["type"], e["customer_id"]) for e in evs],
                         [("segment.entered", cid)])
        self.assertEqual(evs[0]["data"], {"segment_id": sid, "name": seg["name"]})
        self.assertRegex(evs[0]["id"], r"^evt_\d+$")
        got = members(sid)
        self.assertEqual(list(got), [cid])
        self.assertTimestamp(got[cid])
        # the profile shows the segment, with the same entered_at
        profile = must(get("/v1/customers/%s" % cid), 200)
        self.assertEqual(profile["segments"], [{"segment_id": sid, "name": seg["name"],
                                                "entered_at": got[cid]}])
        doc = history(cid)
        self.assertEqual(doc["customer_id"], cid)
        self.assertEqual(doc["items"], [{"segment_id": sid, "name": seg["name"],
                                         "entered_at": got[cid], "exited_at": None}])
        # A second purchase changes nothing: no second event.
        cursor = feed_tail()
        purchase(cid)
        time.sleep(2.5)
        self.assertEqual(segment_events(cursor, sid), [])
        self.assertEqual(members(sid), got)

    def test_a_traits_change_moves_a_customer_out(self):
        m = "out-" + uid()
        ann = new_customer(m, first_name="Ann")
        other = new_customer(m, first_name="Bea")
        cursor = feed_tail()
        seg = self.segment({"all": [marker_rule(m),
                                    {"field": "traits.first_name", "op": "eq", "value": "Ann"}]})
        sid = seg["segment_id"]
        # The first fill is synchronous and writes no events.
        self.assertEqual(list(stored_members(sid)), [ann])
        self.assertEqual(list(members(sid)), [ann])
        entered_at = members(sid)[ann]
        self.assertTimestamp(entered_at)
        time.sleep(1.5)
        self.assertEqual(segment_events(cursor, sid), [])
        must(patch("/v1/customers/%s/traits" % ann, {"source": "e2e-mship",
                                                      "traits": {"first_name": "Anne"}}), 200)
        evs = wait_events(cursor, sid, lambda evs: evs, "segment.exited after a traits change")
        self.assertEqual([(e["type"], e["customer_id"]) for e in evs], [("segment.exited", ann)])
        self.assertEqual(stored_members(sid), {})
        self.assertEqual(members(sid), {})
        self.assertEqual(must(get("/v1/customers/%s" % ann), 200)["segments"], [])
        items = [it for it in history(ann)["items"] if it["segment_id"] == sid]
        self.assertEqual(len(items), 1)
        self.assertEqual(items[0]["entered_at"], entered_at)
        self.assertTimestamp(items[0]["exited_at"])
        # and back in: a new period, the old one kept
        cursor = feed_tail()
        must(patch("/v1/customers/%s/traits" % ann, {"source": "e2e-mship",
                                                      "traits": {"first_name": "Ann"}}), 200)
        wait_events(cursor, sid, lambda evs: evs, "segment.entered again")
        items = [it for it in history(ann)["items"] if it["segment_id"] == sid]
        self.assertEqual([it["exited_at"] is None for it in items], [True, False])
        self.assertNotIn(other, stored_members(sid))

    def test_patch_recomputes_and_emits_the_difference(self):
        m = "patch-" + uid()
        ann, bea = new_customer(m, first_name="Ann"), new_customer(m, first_name="Bea")
        seg = self.segment({"all": [marker_rule(m),
                                    {"field": "traits.first_name", "op": "eq", "value": "Ann"}]})
        sid = seg["segment_id"]
        self.assertEqual(list(stored_members(sid)), [ann])
        cursor = feed_tail()
        rule = {"all": [marker_rule(m), {"field": "traits.first_name", "op": "in",
                                         "value": ["Bea"]}]}
        doc = must(patch("/v1/segments/%s" % sid, {"rule": rule}), 200)
        self.assertEqual(doc["rule"], rule)
        self.assertEqual(doc["recomputed"], {"entered": 1, "exited": 1})
        self.assertEqual(list(stored_members(sid)), [bea])   # in the PATCH's transaction
        evs = wait_events(cursor, sid, lambda evs: len(evs) >= 2, "the PATCH's events")
        self.assertEqual(sorted((e["type"], e["customer_id"]) for e in evs),
                         [("segment.entered", bea), ("segment.exited", ann)])
        got = must(get("/v1/segments/%s" % sid), 200)
        self.assertEqual(got["rule"], rule)
        self.assertGreater(got["updated_at"], got["created_at"])
        # name and description only: no recompute; the next events carry the new name
        name = "e2e-mship-renamed-%s" % uid()
        doc = must(patch("/v1/segments/%s" % sid, {"name": name, "description": "d"}), 200)
        self.assertEqual((doc["name"], doc["description"], doc["rule"]), (name, "d", rule))
        self.assertNotIn("recomputed", doc)
        doc = must(patch("/v1/segments/%s" % sid, {"description": None}), 200)
        self.assertNotIn("description", doc)
        self.assertEqual(must(get("/v1/customers/%s" % bea), 200)["segments"][0]["name"], name)
        cursor = feed_tail()
        must(patch("/v1/customers/%s/traits" % bea, {"source": "e2e-mship",
                                                      "traits": {"first_name": "B"}}), 200)
        evs = wait_events(cursor, sid, lambda evs: evs, "exit after the rename")
        self.assertEqual(evs[0]["data"]["name"], name)

    def test_patch_validation_and_roles(self):
        seg = self.segment(marker_rule("val-" + uid()))
        sid = seg["segment_id"]
        path = "/v1/segments/%s" % sid
        self.assertProblem(patch(path, {}), 422, "validation-failed")
        self.assertProblem(patch(path, {"rule": {"field": "value.clv", "op": "gt",
                                                 "value": "1"}}), 422, "validation-failed",
                           pointers=["/rule/value"])
        self.assertProblem(patch(path, {"name": ""}), 422, "validation-failed",
                           pointers=["/name"])
        self.assertProblem(patch(path, {"name": None}), 422, "validation-failed",
                           pointers=["/name"])
        self.assertProblem(patch(path, {"colour": "red"}), 422, "validation-failed",
                           pointers=["/colour"])
        other = self.segment(marker_rule("val2-" + uid()))
        self.assertProblem(patch(path, {"name": other["name"]}), 409, "conflict")
        self.assertProblem(patch("/v1/segments/00000000-0000-4000-8000-000000000000",
                                 {"name": "x" + uid()}), 404, "not-found")
        self.assertEqual(must(get(path), 200)["name"], seg["name"])
        mk = must(post("/v1/admin/keys", {"name": "mship-" + uid(), "role": "marketing"}),
                  201)["api_key"]
        cc = must(post("/v1/admin/keys", {"name": "mship-" + uid(), "role": "call_center"}),
                  201)["api_key"]
        must(patch(path, {"description": "by marketing"}, key=mk), 200)
        self.assertProblem(patch(path, {"description": "by cc"}, key=cc), 403, "forbidden")

    def test_a_value_run_diffs_the_value_segments(self):
        m = "value-" + uid()
        cid = new_customer(m)
        purchase(cid, amount=120)
        seg = self.segment({"all": [marker_rule(m),
                                    {"field": "value.tier", "op": "exists"}]})
        sid = seg["segment_id"]
        self.assertEqual(seg["depends"], ["traits", "value"])
        self.assertEqual(stored_members(sid), {})   # never valued yet
        test_value.make_fit_population()  # a live run needs data BG/NBD can fit
        cursor = feed_tail()
        must(post("/v1/value:recompute", {}), 200)
        evs = wait_events(cursor, sid, lambda evs: evs, "segment.entered after a value run")
        self.assertEqual([(e["type"], e["customer_id"]) for e in evs],
                         [("segment.entered", cid)])
        self.assertEqual(list(members(sid)), [cid])

    def test_merge_ends_the_absorbed_memberships(self):
        m = "merge-" + uid()
        a, b = new_customer(m), new_customer(m)
        seg = self.segment(marker_rule(m))
        sid = seg["segment_id"]
        before = stored_members(sid)
        self.assertEqual(set(before), {a, b})
        cursor = feed_tail()
        must(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b, "reason": "same"}),
             200)
        evs = wait_events(cursor, sid, lambda evs: evs, "segment.exited of the absorbed id")
        self.assertEqual([(e["type"], e["customer_id"]) for e in evs], [("segment.exited", b)])
        after = stored_members(sid)
        self.assertEqual(after, {a: before[a]})   # the survivor stays, since it entered
        # the absorbed id's history is kept under its own id; reading it shows the survivor
        self.assertEqual(int(sql("SELECT count(*) FROM crm.segment_history WHERE customer_id = %s "
                                 "AND segment_id = %s" % (lit(b), lit(sid)))), 1)
        self.assertEqual(history(b)["customer_id"], a)
        # unmerge: the absorbed id is a customer again and enters again
        cursor = feed_tail()
        must(post("/v1/admin/unmerge", {"customer_id": b, "reason": "not the same"}), 200)
        wait_events(cursor, sid, lambda evs: any(e["customer_id"] == b for e in evs),
                    "segment.entered of the unmerged id")
        self.assertEqual(set(stored_members(sid)), {a, b})

    def test_erasure_removes_memberships_and_history(self):
        m = "erase-" + uid()
        cid = new_customer(m, first_name="Ann")
        seg_now = self.segment(marker_rule(m))
        seg_past = self.segment({"all": [marker_rule(m), {"field": "traits.first_name",
                                                          "op": "eq", "value": "Ann"}]})
        must(patch("/v1/customers/%s/traits" % cid, {"source": "e2e-mship",
                                                      "traits": {"first_name": "Zoe"}}), 200)
        wait_until("the exit", lambda: int(sql(
            "SELECT count(*) FROM crm.segment_history WHERE customer_id = %s" % lit(cid))) == 1)
        cursor = feed_tail()
        must(request("DELETE", "/v1/customers/%s" % cid), 200)
        count = ("SELECT (SELECT count(*) FROM crm.segment_members WHERE customer_id = %s) + "
                 "(SELECT count(*) FROM crm.segment_history WHERE customer_id = %s)"
                 % (lit(cid), lit(cid)))
        self.assertEqual(int(sql(count)), 0)   # in the erasure's transaction
        time.sleep(2.5)                          # and the refresher puts nothing back
        self.assertEqual(int(sql(count)), 0)
        for s in (seg_now, seg_past):
            self.assertEqual(segment_events(cursor, s["segment_id"]), [])
        self.assertProblem(get("/v1/customers/%s/segments" % cid), 410, "gone")

    def test_customer_segments_route(self):
        self.assertProblem(get("/v1/customers/00000000-0000-4000-8000-000000000000/segments"),
                           404, "not-found")
        self.assertProblem(get("/v1/customers/nope/segments"), 400, "invalid-uuid")
        m = "route-" + uid()
        cid = new_customer(m)
        seg = self.segment(marker_rule(m))
        doc = history(cid)
        self.assertEqual([it["segment_id"] for it in doc["items"]], [seg["segment_id"]])
        self.assertEqual(history(cid)["items"][:1], doc["items"][:1])
        doc = must(get(query("/v1/customers/%s/segments" % cid, {"limit": 1})), 200)
        self.assertEqual(len(doc["items"]), 1)
        self.assertProblem(get(query("/v1/customers/%s/segments" % cid, {"limit": 0})), 400,
                           "invalid-query")
        n = int(sql("SELECT count(*) FROM crm.audit_log WHERE action = 'customer.segments.read' "
                    "AND customer_id = %s" % lit(cid)))
        self.assertGreaterEqual(n, 2)
        partner = must(post("/v1/admin/keys", {"name": "mship-" + uid(), "role": "partner",
                                               "namespace": "mship"}), 201)["api_key"]
        self.assertProblem(get("/v1/customers/%s/segments" % cid, key=partner), 403,
                           "forbidden")

    def test_deleting_a_segment_removes_its_members(self):
        m = "del-" + uid()
        cid = new_customer(m)
        seg = new_segment(marker_rule(m))
        sid = seg["segment_id"]
        self.assertEqual(list(stored_members(sid)), [cid])
        cursor = feed_tail()
        self.assertEqual(must(request("DELETE", "/v1/segments/%s" % sid), 200), {"deleted": True})
        self.assertEqual(stored_members(sid), {})
        self.assertEqual(must(get("/v1/customers/%s" % cid), 200)["segments"], [])
        time.sleep(1.5)
        self.assertEqual(segment_events(cursor, sid), [])


class RefresherTests(harness.CrmTestCase):
    def test_a_segment_saved_before_live_membership_is_compiled_and_filled(self):
        # As on a database upgraded from before 012: a segment row without a
        # compiled rule. The refresher compiles it and fills it, no events.
        m = "old-" + uid()
        cid = new_customer(m)
        sid = str(uuid.uuid4())
        cursor = feed_tail()
        sql("INSERT INTO crm.segments (segment_id, name, rule) VALUES (%s, %s, %s)"
            % (lit(sid), lit("e2e-mship-old-" + uid()), lit(json.dumps(marker_rule(m)))))
        self.addCleanup(delete_segment, sid)
        wait_until("the refresher compiled the old segment", lambda: sql(
            "SELECT compiler_version FROM crm.segments WHERE segment_id = %s" % lit(sid)))
        self.assertEqual(list(stored_members(sid)), [cid])
        doc = must(get("/v1/segments/%s" % sid), 200)
        self.assertEqual(doc["depends"], ["traits"])
        time.sleep(1.5)
        self.assertEqual(segment_events(cursor, sid), [])
        # A rule compiled by an older compiler is compiled again; its members
        # are recomputed with events (here: nothing changes, so none).
        sql("UPDATE crm.segments SET compiler_version = 0, condition = 'false' "
            "WHERE segment_id = %s" % lit(sid))
        wait_until("compiled again", lambda: sql(
            "SELECT compiler_version > 0 FROM crm.segments WHERE segment_id = %s" % lit(sid))
                   == "t")
        self.assertEqual(list(stored_members(sid)), [cid])
        self.assertEqual(segment_events(cursor, sid), [])

    def test_the_time_sweep_notices_what_only_time_changes(self):
        # A purchase that leaves the rule's one-day window 8 seconds
        # from now: no feed event says so; the time sweep (1 s on a second
        # instance) re-evaluates the time-dependent segments.
        other = harness.extra_server(*SERVER_ARGS, "--segment-time-sweep", "1")
        m = "time-" + uid()
        try:
            cid = new_customer(m)
            seg = new_segment({"all": [marker_rule(m), {"interaction": {
                "type": "purchase", "within_days": 1}}]})
            sid = seg["segment_id"]
            self.addCleanup(delete_segment, sid)
            self.assertEqual(seg["depends"], ["interactions", "traits", "time"])
            cursor = feed_tail()
            at = time.time() - 86400 + 8
            must(harness.ingest(customer_id=cid, channel="store", type="purchase", amount=5,
                                currency="EUR",
                                occurred_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(at))), 201)
            wait_events(cursor, sid, lambda evs: evs, "entered on the purchase")
            evs = wait_events(cursor, sid, lambda evs: any(
                e["type"] == "segment.exited" for e in evs), "exited by the time sweep", 20)
            self.assertEqual([(e["type"], e["customer_id"]) for e in evs],
                             [("segment.entered", cid), ("segment.exited", cid)])
        finally:
            self.assertEqual(other.stop(), 0)


class WebhookSegmentFilterTests(harness.CrmTestCase):
    def test_only_members_events_are_delivered(self):
        m = "hook-" + uid()
        member = new_customer(m)
        outsider = new_customer("not-" + m)
        seg = new_segment({"all": [marker_rule(m)]})
        sid = seg["segment_id"]
        rec = Receiver()
        body = None
        try:
            r = post("/v1/webhooks", {"url": rec.url, "segment_id": sid, "event_types": [
                "interaction.created", "segment.entered", "segment.exited"]})
            body = self.assertJson(r, 201)
            rec.secret = body["secret"]
            self.assertEqual(body["segment_id"], sid)
            self.assertEqual(must(get("/v1/webhooks/%s" % body["webhook_id"]), 200)["segment_id"],
                             sid)
            # the segment cannot go while the webhook filters on it
            self.assertProblem(request("DELETE", "/v1/segments/%s" % sid), 409, "conflict")
            mine = purchase(member)["interaction_id"]
            theirs = purchase(outsider)["interaction_id"]
            # the filter applies at fan-out time: wait until the fan-out has
            # passed the outsider's purchase before it becomes a member
            wait_until("the fan-out passed the outsider's purchase", lambda: sql(
                "SELECT (a.fanout_xid, a.fanout_seq) >= (i.event_xid, i.event_seq) "
                "FROM crm.activation_state a, crm.interactions i "
                "WHERE i.interaction_id = %s" % lit(theirs)) == "t")
            # the outsider joins the segment: its entered event comes, then its interactions
            must(patch("/v1/customers/%s/traits" % outsider,
                       {"source": "e2e-mship", "traits": {"attributes": {"mship": m}}}), 200)
            wait_until("outsider is a member", lambda: outsider in stored_members(sid))
            later = purchase(outsider)["interaction_id"]
            recs = rec.wait_for(lambda rs: {mine, later} <= {
                (r["body"] or {}).get("data", {}).get("interaction_id") for r in rs})
            got = [r["body"] for r in recs if r["body"]]
            self.assertTrue(all(r["verified"] for r in recs))
            ids = {e["data"].get("interaction_id") for e in got
                   if e["type"] == "interaction.created"}
            self.assertIn(mine, ids)
            self.assertIn(later, ids)
            self.assertNotIn(theirs, ids)   # not a member at fan-out time
            self.assertTrue(all(e["customer_id"] in (member, outsider) for e in got), got)
            entered = [e for e in got if e["type"] == "segment.entered"]
            self.assertEqual([e["customer_id"] for e in entered], [outsider])
            # the segment's own exit is delivered though the customer is no member any more
            must(patch("/v1/customers/%s/traits" % outsider,
                       {"source": "e2e-mship", "traits": {"attributes": {"mship": "gone"}}}),
                 200)
            rec.wait_for(lambda rs: any((r["body"] or {}).get("type") == "segment.exited"
                                        for r in rs))
            # PATCH: the filter goes (null), comes back; validation
            hook = "/v1/webhooks/%s" % body["webhook_id"]
            self.assertIsNone(must(patch(hook, {"segment_id": None}), 200)["segment_id"])
            self.assertEqual(must(patch(hook, {"segment_id": sid.upper()}), 200)["segment_id"],
                             sid)
            self.assertProblem(patch(hook, {"segment_id": "00000000-0000-4000-8000-000000000000"}),
                               422, "validation-failed", pointers=["/segment_id"])
            self.assertProblem(patch(hook, {"segment_id": "nope"}), 422, "validation-failed",
                               pointers=["/segment_id"])
            self.assertEqual(must(get(hook), 200)["segment_id"], sid)
            self.assertProblem(post("/v1/webhooks", {"url": rec.url, "segment_id":
                                                     "00000000-0000-4000-8000-000000000000"}),
                               422, "validation-failed", pointers=["/segment_id"])
            self.assertProblem(post("/v1/webhooks", {"url": rec.url, "segment_id": 5}),
                               422, "validation-failed", pointers=["/segment_id"])
        finally:
            if body is not None:
                drop_webhook(body["webhook_id"])
            rec.stop()
            delete_segment(sid)


class TwoInstanceTests(harness.CrmTestCase):
    def test_two_instances_write_each_event_once(self):
        other = harness.extra_server(*SERVER_ARGS)
        m = "two-" + uid()
        seg = new_segment({"all": [marker_rule(m), {"interaction": {"type": "purchase"}}]})
        sid = seg["segment_id"]
        try:
            cursor = feed_tail()
            ids = [new_customer(m) for _ in range(20)]
            for cid in ids:
                purchase(cid)
            evs = wait_events(cursor, sid, lambda evs: {e["customer_id"] for e in evs} >= set(ids),
                              "an entered event for each of 20 customers")
            time.sleep(2.5)   # both refreshers had more rounds
            evs = segment_events(cursor, sid)
            per = {}
            for e in evs:
                per[e["customer_id"]] = per.get(e["customer_id"], 0) + 1
            self.assertEqual(sorted(per.values()), [1] * 20, per)
            self.assertEqual({e["type"] for e in evs}, {"segment.entered"})
            self.assertEqual(set(stored_members(sid)), set(ids))
        finally:
            self.assertEqual(other.stop(), 0)
            delete_segment(sid)


if __name__ == "__main__":
    sys.exit(harness.main())
