#!/usr/bin/env python3
"""End-to-end tests of the identity rules an administrator sets by hand
(docs/identity.md, "Interactions report merges", "Never merge" and "Detach
an identifier"): merged_ids on single and batch ingest, never-merge pairs
(across merge, unmerge, erasure and a concurrent storm), and detaching one
identifier (moved with the interactions it brought, or deleted; the history;
unmerge afterwards; erasure; concurrent ingest).

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_identity_rules.py [TestClass[.test_method] ...]

Every test uses fresh, uuid-based identifiers: no clean database needed.
"""

import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (email_id, get, ingest, interaction, lit, phone_id, post, query,  # noqa: E402
                     random_digits, request, resolve, sql, uid)


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def new_email(prefix="rule"):
    return "%s-%s@example.com" % (prefix, uid())


def new_phone():
    return "+336" + random_digits(8)


def profile(cid):
    return get("/v1/customers/%s" % cid)


def timeline(cid):
    return get(query("/v1/customers/%s/interactions" % cid, {"limit": 500}))


def lookup(**params):
    return get(query("/v1/customers", params))


def history(cid):
    return get("/v1/customers/%s/merges" % cid)


def merge(survivor_id, absorbed_id, **fields):
    body = {"survivor_id": survivor_id, "absorbed_id": absorbed_id}
    body.update(fields)
    return post("/v1/admin/merges", body)


def unmerge(cid):
    return post("/v1/admin/unmerge", {"customer_id": cid})


def never_merge(a, b, **fields):
    body = {"customer_id": a, "other_id": b}
    body.update(fields)
    return post("/v1/admin/never-merge", body)


def never_merge_list(**params):
    return get(query("/v1/admin/never-merge", params))


def never_merge_remove(**params):
    return request("DELETE", query("/v1/admin/never-merge", params))


def detach(cid, identifier, mode, **fields):
    body = {"identifier": identifier, "mode": mode}
    body.update(fields)
    return post("/v1/customers/%s/identifiers:detach" % cid, body)


def batch(items):
    return post("/v1/interactions:batch", {"items": items})


def create_key(role):
    r = post("/v1/admin/keys", {"name": "e2e-rules-%s-%s" % (role, uid()), "role": role})
    assert r.status == 201, r
    return r.body["api_key"]


class RulesTestCase(harness.CrmTestCase):
    def create(self, identifiers, source="e2e"):
        body = self.assertJson(resolve(identifiers, source=source), 201)
        self.assertIs(body["created"], True, body)
        return body["customer_id"]

    def ingest_ok(self, customer_id=None, identifiers=None, **fields):
        body = self.assertJson(ingest(customer_id, identifiers, **fields), 201)
        self.assertEqual(body["status"], "created", body)
        return body

    def items(self, cid):
        body = self.assertJson(timeline(cid), 200)
        return sorted(i["interaction_id"] for i in body["items"])

    def count(self, cid):
        return self.assertJson(profile(cid), 200)["aggregates"]["interaction_count"]

    def owner(self, **params):
        return self.assertJson(lookup(**params), 200)["customer_id"]

    def pair(self):
        """Two customers: A (older) known by an email, B by a phone."""
        ea, pb = new_email("a"), new_phone()
        a = self.create([email_id(ea)])
        b = self.create([phone_id(pb)])
        return a, b, ea, pb

    def conflicts_of(self, cid):
        return sql("SELECT count(*) FROM crm.identity_conflicts WHERE reason = 'never_merge' "
                   "AND customer_ids @> ARRAY[%s]::uuid[]" % lit(cid))


# ---------------------------------------------------------------------------
# merged_ids on ingest

class InteractionMergeReportTests(RulesTestCase):
    def test_single_interaction_reports_the_absorbed_ids(self):
        a, b, ea, pb = self.pair()
        body = self.ingest_ok(identifiers=[email_id(ea), phone_id(pb)])
        self.assertEqual(body["customer_id"], a, body)
        self.assertEqual(body["merged_ids"], [b], body)
        # Known now: nothing merged, no merged_ids.
        body = self.ingest_ok(identifiers=[phone_id(pb), email_id(ea)])
        self.assertNotIn("merged_ids", body)
        self.assertNotIn("merged_ids", self.ingest_ok(a))
        # A redelivery of the merging event reports no merge again.
        c, d, ec, pd = self.pair()
        ext = "ext-" + uid()
        first = self.assertJson(ingest(identifiers=[email_id(ec), phone_id(pd)],
                                       external_id=ext), 201)
        self.assertEqual(first["merged_ids"], [d])
        again = self.assertJson(ingest(identifiers=[email_id(ec), phone_id(pd)],
                                       external_id=ext), 200)
        self.assertEqual(again["status"], "duplicate")
        self.assertNotIn("merged_ids", again)

    def test_batch_items_report_the_absorbed_ids(self):
        a, b, ea, pb = self.pair()
        c, d, ec, pd = self.pair()
        e = self.create([email_id(new_email("e"))])
        items = [interaction(identifiers=[email_id(ea), phone_id(pb)]),
                 interaction(identifiers=[email_id(ea)]),
                 interaction(customer_id=e),
                 interaction(identifiers=[phone_id(pd), email_id(ec)])]
        body = self.assertJson(batch(items), 200)
        self.assertEqual(body["created"], 4, body)
        res = body["results"]
        self.assertEqual((res[0]["customer_id"], res[0]["merged_ids"]), (a, [b]), res)
        self.assertNotIn("merged_ids", res[1])
        self.assertNotIn("merged_ids", res[2])
        self.assertEqual((res[3]["customer_id"], res[3]["merged_ids"]), (c, [d]), res)

    def test_storm_reports_each_merge_once(self):
        """48 threads send, for 24 pairs of customers, four interactions (two
        single, two batch items) each naming both: every pair is merged once,
        and exactly one answer per pair reports it. After an unmerge, the next
        such interaction merges and reports again."""
        pairs = [self.pair() for _ in range(24)]
        answers = []
        lock = threading.Lock()

        def one(i):
            a, b, ea, pb = pairs[i % 24]
            ids = [email_id(ea), phone_id(pb)] if i % 2 else [phone_id(pb), email_id(ea)]
            if i < 48:
                r = ingest(identifiers=ids)
                got = [r.body] if r.status == 201 else [r]
            else:
                r = batch([interaction(identifiers=ids)])
                got = r.body["results"] if r.status == 200 else [r]
            with lock:
                answers.extend((i % 24, x) for x in got)

        with ThreadPoolExecutor(48) as pool:
            list(pool.map(one, range(96)))
        bad = [x for x in answers if not isinstance(x[1], dict) or x[1].get("status") != "created"]
        self.assertEqual(bad, [])
        for k, (a, b, ea, pb) in enumerate(pairs):
            mine = [x[1] for x in answers if x[0] == k]
            self.assertEqual({x["customer_id"] for x in mine}, {a})
            self.assertEqual([x["merged_ids"] for x in mine if "merged_ids" in x], [[b]])
        a, b, ea, pb = pairs[0]
        self.assertJson(unmerge(b), 200)
        self.assertEqual(self.ingest_ok(identifiers=[email_id(ea), phone_id(pb)])["merged_ids"],
                         [b])


# ---------------------------------------------------------------------------
# never merge

class NeverMergeTests(RulesTestCase):
    def test_unmerged_pair_stays_apart(self):
        a, b, ea, pb = self.pair()
        body = self.assertJson(resolve([email_id(ea), phone_id(pb)]), 200)
        self.assertEqual(body["merged_ids"], [b])
        self.assertJson(unmerge(b), 200)
        rule = self.assertJson(never_merge(b, a, reason="two people"), 201)
        self.assertEqual((rule["customer_id"], rule["other_id"]), tuple(sorted([a, b])))
        self.assertEqual(rule["survivors"], sorted([a, b]))
        self.assertEqual(rule["reason"], "two people")
        self.assertTrue(rule["created_by"].startswith("key:"))
        # Stored again: 200, the first rule.
        self.assertEqual(self.assertJson(never_merge(a, b, reason="again"), 200), rule)

        before = int(self.conflicts_of(a))
        # resolve: the email's customer (more trusted kind), no merge, a conflict
        body = self.assertJson(resolve([phone_id(pb), email_id(ea)]), 200)
        self.assertEqual((body["customer_id"], body["merged_ids"]), (a, []), body)
        conflict = [c for c in body["conflicts"] if c["reason"] == "never_merge"]
        self.assertEqual(len(conflict), 1, body)
        self.assertEqual(sorted(conflict[0]["customer_ids"]), sorted([a, b]))
        self.assertEqual(conflict[0]["chosen"], a)
        self.assertEqual(conflict[0]["rules"], [{"customer_id": rule["customer_id"],
                                                 "other_id": rule["other_id"]}])
        # a single interaction and a batch item: stored on A, nothing merged
        one = self.ingest_ok(identifiers=[phone_id(pb), email_id(ea)])
        self.assertEqual(one["customer_id"], a)
        self.assertNotIn("merged_ids", one)
        self.assertEqual(one["conflicts"][0]["reason"], "never_merge")
        res = self.assertJson(batch([interaction(identifiers=[email_id(ea), phone_id(pb)])]),
                              200)["results"][0]
        self.assertEqual((res["status"], res["customer_id"]), ("created", a), res)
        self.assertNotIn("merged_ids", res)
        self.assertEqual(int(self.conflicts_of(a)), before + 3)
        self.assertEqual(self.owner(phone=pb), b)
        logged = self.assertJson(get("/v1/admin/identity-conflicts?limit=5"), 200)["items"]
        self.assertIn("never_merge", [c["reason"] for c in logged])

        # listed, filtered by either customer; removed: the next event merges
        self.assertIn(rule, self.assertJson(never_merge_list(), 200)["items"])
        self.assertEqual(self.assertJson(never_merge_list(customer_id=b), 200)["items"], [rule])
        self.assertJson(never_merge_remove(customer_id=a, other_id=b), 200)
        self.assertEqual(self.assertJson(never_merge_list(customer_id=a), 200)["items"], [])
        body = self.assertJson(resolve([email_id(ea), phone_id(pb)]), 200)
        self.assertEqual(body["merged_ids"], [b])

    def test_rule_follows_both_sides_through_later_merges(self):
        a, b, ea, pb = self.pair()
        c = self.create([email_id(new_email("c"))])
        ed = new_email("d")
        d = self.create([email_id(ed)])
        self.assertJson(never_merge(a, b), 201)
        # A is absorbed by C, B by D: C and D are kept apart now.
        self.assertJson(merge(c, a), 200)
        self.assertJson(merge(d, b), 200)
        body = self.assertJson(resolve([email_id(ea), email_id(ed)]), 200)
        self.assertEqual(body["merged_ids"], [], body)
        self.assertEqual(body["conflicts"][0]["reason"], "never_merge")
        self.assertEqual(sorted(body["conflicts"][0]["customer_ids"]), sorted([c, d]))
        items = self.assertJson(never_merge_list(customer_id=c), 200)["items"]
        self.assertEqual(items[0]["survivors"], [crm_sort_key(a, b, c, d)[0],
                                                 crm_sort_key(a, b, c, d)[1]])
        # An admin merge of the two needs force.
        r = merge(c, d)
        self.assertProblem(r, 409, "conflict")
        self.assertEqual(len(r.body["never_merge"]), 1, r.body)
        self.assertIn("never-merge", r.body["detail"])
        self.assertJson(merge(c, d, force=True), 200)
        # Unmerging D (B inside) makes the rule bite again.
        self.assertJson(unmerge(d), 200)
        body = self.assertJson(resolve([phone_id(pb), email_id(ea)]), 200)
        self.assertEqual(body["merged_ids"], [], body)
        self.assertEqual(body["conflicts"][0]["reason"], "never_merge")

    def test_errors_and_roles(self):
        a, b, ea, pb = self.pair()
        self.assertProblem(never_merge(a, a), 422, "validation-failed", pointers=["/other_id"])
        self.assertProblem(never_merge(a, "nope"), 422, "validation-failed",
                           pointers=["/other_id"])
        self.assertProblem(never_merge(a, b, extra=1), 422, "validation-failed",
                           pointers=["/extra"])
        self.assertProblem(never_merge(a, str(uuid.uuid4())), 404, "not-found")
        self.assertJson(merge(a, b), 200)
        self.assertProblem(never_merge(a, b), 409, "conflict")
        self.assertProblem(never_merge_remove(customer_id=a), 400, "invalid-query")
        self.assertProblem(never_merge_remove(customer_id=a, other_id="x"), 400, "invalid-query")
        self.assertProblem(never_merge_list(customer_id="x"), 400, "invalid-query")
        self.assertProblem(never_merge_remove(customer_id=a, other_id=b), 404, "not-found")
        key = create_key("call_center")
        self.assertProblem(get("/v1/admin/never-merge", key=key), 403, "forbidden")
        self.assertProblem(post("/v1/admin/never-merge", {"customer_id": a, "other_id": b},
                                key=key), 403, "forbidden")

    def test_erasure_removes_the_rules(self):
        a, b, ea, pb = self.pair()
        self.assertJson(never_merge(a, b), 201)
        self.assertJson(request("DELETE", "/v1/customers/%s" % a), 200)
        self.assertEqual(self.assertJson(never_merge_list(customer_id=b), 200)["items"], [])

    def test_storm_of_events_carrying_both_never_merges(self):
        """48 threads send interactions and resolves that carry both customers'
        identifiers (and merging pairs of their own) at once: the pair is never
        merged, every other pair is, every event is stored once."""
        a, b, ea, pb = self.pair()
        self.assertJson(never_merge(a, b), 201)
        others = [self.pair() for _ in range(8)]
        answers = []
        lock = threading.Lock()

        def one(i):
            if i % 3 == 0:
                r = resolve([email_id(ea), phone_id(pb)])
            elif i % 3 == 1:
                r = ingest(identifiers=[phone_id(pb), email_id(ea)])
            else:
                o = others[i % len(others)]
                r = ingest(identifiers=[email_id(o[2]), phone_id(o[3])])
            with lock:
                answers.append((i, r.status, r.body))

        with ThreadPoolExecutor(48) as pool:
            list(pool.map(one, range(192)))
        bad = [x for x in answers if x[1] not in (200, 201)]
        self.assertEqual(bad, [])
        self.assertEqual(self.owner(phone=pb), b)
        self.assertEqual(self.owner(email=ea), a)
        self.assertEqual(sql("SELECT count(*) FROM crm.merges WHERE unmerged_at IS NULL AND "
                             "%s::uuid IN (survivor_id, absorbed_id)" % lit(b)), "0")
        for o in others:
            self.assertEqual(self.owner(phone=o[3]), o[0])
        self.assertEqual(self.count(a), sum(1 for x in answers if x[0] % 3 == 1))
        self.assertEqual(self.count(b), 0)

    def test_rule_set_while_events_merge_the_pair(self):
        """An unmerge and then a rule on the pair, while 47 threads send events
        naming both: the rule and a merge never both hold. Either the rule was
        set (201) and the two stay apart to the end, or an event merged them
        back first and the rule was refused (409)."""
        # The events start at once, or a little later (so that both outcomes
        # are seen: the rule usually loses the first race and wins the last).
        for delay in (0, 0.05, 0.5):
            a, b, ea, pb = self.pair()
            self.assertJson(merge(a, b), 200)
            outcome = {}

            def one(i):
                if i == 0:
                    outcome["unmerge"] = unmerge(b).status
                    outcome["rule"] = never_merge(a, b).status
                    return 200
                time.sleep(delay)
                return ingest(identifiers=[email_id(ea), phone_id(pb)]).status

            with ThreadPoolExecutor(48) as pool:
                statuses = list(pool.map(one, range(96)))
            self.assertEqual([s for s in statuses if s not in (200, 201)], [])
            self.assertIn(outcome["unmerge"], (200, 409))
            self.assertIn(outcome["rule"], (201, 409), outcome)
            apart = self.owner(phone=pb) == b
            sys.stderr.write("rules storm: unmerge %d, rule %d, apart %s\n"
                             % (outcome["unmerge"], outcome["rule"], apart))
            self.assertEqual(apart, outcome["rule"] == 201, outcome)
            # and an event after the storm does not change that
            body = self.ingest_ok(identifiers=[phone_id(pb), email_id(ea)])
            self.assertEqual("merged_ids" in body, False)
            self.assertEqual(self.owner(phone=pb) == b, apart)


def crm_sort_key(a, b, c, d):
    """The survivors a rule on (a, b) lists once a is absorbed by c and b by
    d: in the order of the stored pair (smaller id first)."""
    return [c, d] if a < b else [d, c]


# ---------------------------------------------------------------------------
# detach

class DetachTests(RulesTestCase):
    def customer_with_wrong_phone(self):
        """A known by an email and a wrongly attached phone, with interactions:
        by email, by phone only (2), by both, by id."""
        ea, pw = new_email("det"), new_phone()
        a = self.create([email_id(ea), phone_id(pw)])
        kept = [self.ingest_ok(identifiers=[email_id(ea)])["interaction_id"],
                self.ingest_ok(identifiers=[email_id(ea), phone_id(pw)])["interaction_id"],
                self.ingest_ok(a)["interaction_id"]]
        moved = [self.ingest_ok(identifiers=[phone_id(pw)], type="purchase", amount=30,
                                currency="EUR", tags=["x"])["interaction_id"],
                 self.ingest_ok(identifiers=[phone_id(pw)])["interaction_id"]]
        return a, ea, pw, kept, moved

    def test_move_takes_the_interactions_the_identifier_brought(self):
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        body = self.assertJson(detach(a, phone_id(pw[:4] + " " + pw[4:]), "move",
                                      reason="not her phone"), 200)
        self.assertEqual((body["status"], body["mode"], body["customer_id"]),
                         ("detached", "move", a))
        self.assertEqual(body["identifier"], phone_id(pw))
        self.assertEqual(body["interactions_moved"], 2)
        n = body["new_customer_id"]
        self.assertNotEqual(n, a)
        self.assertEqual(self.owner(phone=pw), n)
        self.assertEqual(self.owner(email=ea), a)
        self.assertEqual(self.items(a), sorted(kept))
        self.assertEqual(self.items(n), sorted(moved))
        doc_a, doc_n = self.assertJson(profile(a), 200), self.assertJson(profile(n), 200)
        self.assertEqual(doc_a, body["customer"])
        self.assertEqual(doc_n, body["new_customer"])
        self.assertEqual(doc_a["aggregates"]["interaction_count"], 3)
        self.assertEqual(doc_n["aggregates"]["interaction_count"], 2)
        self.assertEqual(doc_n["aggregates"]["revenue"], {"EUR": 30})
        self.assertEqual([i["kind"] for i in doc_a["identifiers"]], ["email"])
        self.assertEqual(doc_n["identifiers"][0]["value"], pw)
        # The history of both says so.
        for cid in (a, n):
            d = self.assertJson(history(cid), 200)["detachments"]
            self.assertEqual(len(d), 1, d)
            self.assertEqual((d[0]["customer_id"], d[0]["new_customer_id"], d[0]["mode"],
                              d[0]["reason"]), (a, n, "move", "not her phone"))
            self.assertEqual(sorted(d[0]["interaction_ids"]), sorted(moved))
        # The change feed says so, on A.
        ev = json.loads(sql("SELECT data FROM crm.events WHERE type = 'identifier.detached' "
                            "AND customer_id = %s" % lit(a)))
        self.assertEqual(ev, {"detach_id": body["detach_id"], "mode": "move", "kind": "phone",
                              "namespace": "", "value": pw, "new_customer_id": n,
                              "interactions_moved": 2})
        # The data-subject export of either customer lists the detach and the rule.
        for cid in (a, n):
            ex = self.assertJson(get("/v1/customers/%s/export" % cid), 200)["identity_rules"]
            self.assertEqual([d["detach_id"] for d in ex["detachments"]], [body["detach_id"]])
            self.assertEqual(len(ex["never_merge"]), 1, ex)
        # New events by the phone go to the new customer; one carrying both
        # does not merge them back (the never-merge rule the move added).
        self.assertEqual(self.ingest_ok(identifiers=[phone_id(pw)])["customer_id"], n)
        self.assertIs(body["never_merge"], True)
        rules = self.assertJson(never_merge_list(customer_id=n), 200)["items"]
        self.assertEqual([sorted([r["customer_id"], r["other_id"]]) for r in rules],
                         [sorted([a, n])])
        both = self.ingest_ok(identifiers=[email_id(ea), phone_id(pw)])
        self.assertEqual(both["customer_id"], a)
        self.assertNotIn("merged_ids", both)

    def test_move_without_a_rule_is_merged_back_by_the_next_event(self):
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        body = self.assertJson(detach(a, phone_id(pw), "move", never_merge=False), 200)
        self.assertIs(body["never_merge"], False)
        n = body["new_customer_id"]
        both = self.ingest_ok(identifiers=[email_id(ea), phone_id(pw)])
        self.assertEqual((both["customer_id"], both["merged_ids"]), (a, [n]))

    def test_live_membership_follows_the_moved_interactions(self):
        """A is in a segment through a purchase the wrong phone brought; the
        move takes the purchase away, and the identifier.detached event
        makes the refresher take A out of the segment."""
        marker, ea, pw = "det-" + uid(), new_email("seg"), new_phone()
        r = resolve([email_id(ea), phone_id(pw)],
                    traits={"attributes": {"detach_seg": marker}})
        a = self.assertJson(r, 201)["customer_id"]
        self.ingest_ok(identifiers=[phone_id(pw)], type="purchase", amount=10, currency="EUR")
        seg = self.assertJson(post("/v1/segments", {
            "name": "e2e-detach-" + uid(),
            "rule": {"all": [{"field": "traits.attributes.detach_seg", "op": "eq",
                              "value": marker},
                             {"interaction": {"type": "purchase"}}]}}), 201)
        sid = seg["segment_id"]
        self.addCleanup(request, "DELETE", "/v1/segments/%s" % sid)

        def stored():  # the refresher's members (what the profile shows)
            return sql("SELECT coalesce(string_agg(customer_id::text, ','), '') "
                       "FROM crm.segment_members WHERE segment_id = %s" % lit(sid))

        def wait_for(want):
            deadline = time.monotonic() + 15
            while stored() != want and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertEqual(stored(), want)

        wait_for(a)
        self.assertJson(detach(a, phone_id(pw), "move"), 200)
        wait_for("")
        self.assertEqual(self.assertJson(profile(a), 200)["segments"], [])

    def test_a_case_stays_with_its_customer(self):
        """A complaint the wrong phone brought opened a case: the case and its
        interactions stay with the customer; the phone's other interactions move."""
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        complaint = self.ingest_ok(identifiers=[phone_id(pw)], channel="phone", type="complaint")
        self.assertIs(complaint["case_opened"], True, complaint)
        body = self.assertJson(detach(a, phone_id(pw), "move"), 200)
        self.assertEqual(body["interactions_moved"], len(moved))
        self.assertIn(complaint["interaction_id"], self.items(a))
        self.assertEqual(self.items(body["new_customer_id"]), sorted(moved))
        case = self.assertJson(get("/v1/cases/%s" % complaint["case_id"]), 200)
        self.assertEqual(case["customer_id"], a)

    def test_delete_keeps_every_interaction(self):
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        body = self.assertJson(detach(a, phone_id(pw), "delete"), 200)
        self.assertIsNone(body["new_customer_id"])
        self.assertIsNone(body["new_customer"])
        self.assertProblem(lookup(phone=pw), 404, "not-found")
        self.assertEqual(self.items(a), sorted(kept + moved))
        d = self.assertJson(history(a), 200)["detachments"]
        self.assertEqual((d[0]["mode"], d[0]["interaction_ids"]), ("delete", []))
        # The phone is free: it makes a new customer now.
        self.assertJson(resolve([phone_id(pw)]), 201)

    def test_merge_detach_unmerge_stays_exact(self):
        ea, eb, pb = new_email("a"), new_email("b"), new_phone()
        a = self.create([email_id(ea)])
        b = self.create([email_id(eb), phone_id(pb)])
        self.ingest_ok(a, type="purchase", amount=10, currency="EUR")
        ib_email = self.ingest_ok(identifiers=[email_id(eb)])["interaction_id"]
        ib_phone = self.ingest_ok(identifiers=[phone_id(pb)], tags=["p"])["interaction_id"]
        before_a = self.assertJson(profile(a), 200)
        before_b = self.assertJson(profile(b), 200)
        self.assertJson(merge(a, b), 200)
        body = self.assertJson(detach(a, phone_id(pb), "move"), 200)
        n = body["new_customer_id"]
        self.assertEqual(self.items(n), [ib_phone])
        res = self.assertJson(unmerge(b), 200)
        self.assertEqual(res["survivor_id"], a)
        # A exactly as before the merge; B as before but for what the phone took.
        self.assertEqual(self.assertJson(profile(a), 200), before_a)
        after_b = self.assertJson(profile(b), 200)
        self.assertEqual([i["value"] for i in after_b["identifiers"]], [eb])
        self.assertEqual(self.items(b), [ib_email])
        self.assertEqual(after_b["aggregates"]["interaction_count"], 1)
        self.assertEqual(after_b["traits"], before_b["traits"])
        self.assertEqual(self.owner(phone=pb), n)
        self.assertEqual(self.items(n), [ib_phone])
        # merged, then detached: the history of the survivor has both
        h = self.assertJson(history(a), 200)
        self.assertEqual([m["absorbed_id"] for m in h["items"]], [b])
        self.assertEqual([d["new_customer_id"] for d in h["detachments"]], [n])

    def test_deleted_identifier_leaves_the_merge_snapshot(self):
        """Merge A+B, delete B's phone, the phone comes back with A's email (so A
        holds it now), unmerge B: the phone stays with A; B's snapshot no
        longer holds it."""
        ea, eb, pb = new_email("a"), new_email("b"), new_phone()
        a = self.create([email_id(ea)])
        b = self.create([email_id(eb), phone_id(pb)])
        self.assertJson(merge(a, b), 200)
        self.assertJson(detach(b, phone_id(pb), "delete"), 200)
        self.assertEqual(self.ingest_ok(identifiers=[email_id(ea), phone_id(pb)])["customer_id"],
                         a)
        self.assertJson(unmerge(b), 200)
        self.assertEqual(self.owner(phone=pb), a)
        self.assertEqual([i["value"] for i in self.assertJson(profile(b), 200)["identifiers"]],
                         [eb])

    def test_erasure_clears_the_detached_identifier(self):
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        n = self.assertJson(detach(a, phone_id(pw), "move"), 200)["new_customer_id"]
        self.assertJson(request("DELETE", "/v1/customers/%s" % n), 200)
        self.assertEqual(sql("SELECT identifier::text FROM crm.identifier_detachments "
                             "WHERE new_customer_id = %s" % lit(n)), "{}")
        self.assertProblem(detach(n, phone_id(pw), "move"), 410, "gone")
        # The detach event on A no longer names the phone.
        self.assertEqual(sql("SELECT data::text FROM crm.events WHERE type = "
                             "'identifier.detached' AND customer_id = %s" % lit(a)),
                         '{"erased": true}')
        # A keeps its history (without the identifier).
        d = self.assertJson(history(a), 200)["detachments"]
        self.assertEqual(d[0]["identifier"], {})

    def test_errors_and_roles(self):
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        other = new_phone()
        self.assertProblem(detach(a, phone_id(other), "move"), 404, "not-found")
        self.assertProblem(detach(str(uuid.uuid4()), phone_id(pw), "move"), 404, "not-found")
        self.assertProblem(detach(a, phone_id(pw), "split"), 422, "validation-failed",
                           pointers=["/mode"])
        self.assertProblem(detach(a, {"kind": "phone", "value": "abc"}, "move"), 422,
                           "validation-failed", pointers=["/identifier/value"])
        self.assertProblem(post("/v1/customers/%s/identifiers:detach" % a, {"mode": "move"}),
                           422, "validation-failed", pointers=["/identifier"])
        self.assertProblem(detach("nope", phone_id(pw), "move"), 400, "invalid-uuid")
        key = create_key("call_center")
        self.assertProblem(post("/v1/customers/%s/identifiers:detach" % a,
                                {"identifier": phone_id(pw), "mode": "move"}, key=key),
                           403, "forbidden")
        self.assertEqual(self.owner(phone=pw), a)

    def test_detach_during_an_ingest_storm(self):
        """48 threads write through the phone, the email and both while the
        phone is detached: every event is stored once; those sent by the
        phone alone before the detach moved with it, those after it went to
        the new customer."""
        a, ea, pw, kept, moved = self.customer_with_wrong_phone()
        answers = []
        lock = threading.Lock()
        detached = {}

        def one(i):
            if i == 40:
                r = detach(a, phone_id(pw), "move")
                detached["body"] = r.body
            elif i % 3 == 0:
                r = ingest(identifiers=[phone_id(pw)])
            elif i % 3 == 1:
                r = ingest(identifiers=[email_id(ea)])
            else:
                r = ingest(identifiers=[email_id(ea), phone_id(pw)])
            with lock:
                answers.append((i, r.status, r.body))

        with ThreadPoolExecutor(48) as pool:
            list(pool.map(one, range(160)))
        self.assertEqual([x for x in answers if x[1] not in (200, 201)], [])
        n = detached["body"]["new_customer_id"]
        phone_only = {x[2]["interaction_id"] for x in answers if x[0] % 3 == 0 and x[0] != 40}
        email = {x[2]["interaction_id"] for x in answers if x[0] % 3 == 1 and x[0] != 40}
        both = {x[2]["interaction_id"] for x in answers if x[0] % 3 == 2 and x[0] != 40}
        on_a, on_n = set(self.items(a)), set(self.items(n))
        self.assertEqual(on_a & on_n, set())
        self.assertTrue(phone_only | set(moved) <= on_n, phone_only - on_n)
        self.assertTrue(email | set(kept) <= on_a)
        # sent with both: on A, before the detach and after it (the detach's
        # never-merge rule keeps A and N apart; the email is more trusted)
        self.assertTrue(both <= on_a, both - on_a)
        self.assertEqual(self.count(a), len(on_a))
        self.assertEqual(self.count(n), len(on_n))
        self.assertEqual(self.owner(phone=pw), n)


if __name__ == "__main__":
    harness.main()
