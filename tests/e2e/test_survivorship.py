#!/usr/bin/env python3
"""End-to-end tests of trait survivorship (issue 18, "Survivorship"; issue
16 part 5; docs/identity.md, "Survivorship"): every source's value of a
trait is kept (crm.trait_values); the rules of GET/PUT
/v1/settings/survivorship (validation, roles, audit) decide which one the
trait holds, and a change of rules resolves the stored traits again; the
profile's trait_sources shows the losing values; merge takes the union of
both sides' source values and resolves it by the rules, unmerge restores
both sides exactly, erasure deletes every source value; a small storm of
merging resolves from several sources leaves every trait equal to the
winner of its source values.

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_survivorship.py [TestClass[.test_method] ...]

Each test writes an attribute of its own (attributes.sv_<random>) and sets
rules only for it, so other data in the database does not matter; the
rules are reset to the default after each test.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import email_id, get, patch, post, request, uid  # noqa: E402

sql = harness.sql
lit = harness.lit
RULES = "/v1/settings/survivorship"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def put(path, body, **kw):
    return request("PUT", path, body, **kw)


def make_key(role):
    r = post("/v1/admin/keys", {"name": "e2e-surv-%s-%s" % (role, uid()), "role": role,
                                **({"namespace": "e2e-surv"} if role == "partner" else {})})
    assert r.status == 201, r
    return r.body["api_key"]


class Base(harness.CrmTestCase):
    def setUp(self):
        self.attr = "sv_" + uid()[:12]
        self.name = "attributes." + self.attr
        self.addCleanup(lambda: self.assertJson(put(RULES, {}), 200))

    def rules(self, traits=None, default=None, status=200):
        body = {"traits": traits or {}}
        if default is not None:
            body["default"] = default
        return self.assertJson(put(RULES, body), status)

    def customer(self, source, value, email=None):
        body = {"identifiers": [email_id(email or "sv-%s@example.com" % uid())],
                "source": source, "traits": {"attributes": {self.attr: value}}}
        return self.assertJson(post("/v1/customers:resolve", body), 201)["customer_id"]

    def write(self, cid, source, value):
        r = patch("/v1/customers/%s/traits" % cid,
                  {"source": source, "traits": {"attributes": {self.attr: value}}})
        return self.assertJson(r, 200)

    def profile(self, cid):
        return self.assertJson(get("/v1/customers/%s" % cid), 200)

    def value(self, cid):
        return self.profile(cid)["traits"]["attributes"].get(self.attr)

    def sources(self, cid):
        return self.profile(cid)["trait_sources"].get(self.name)

    def stored(self, cid):
        """crm.trait_values rows of the customer for this test's attribute:
        [(source, value text, times_seen)] by source."""
        out = sql("SELECT source, value #>> '{}', times_seen FROM crm.trait_values "
                  "WHERE customer_id = %s AND name = %s ORDER BY source"
                  % (lit(cid), lit(self.name)))
        return [tuple(line.split("|")[:2]) + (int(line.split("|")[2]),)
                for line in out.splitlines() if line]


# ---------------------------------------------------------------------------
# 1. the settings route

class SettingsTests(Base):
    def test_default_rules_and_round_trip(self):
        self.assertEqual(self.assertJson(get(RULES), 200),
                         {"default": {"rule": "most_recent"}, "traits": {}})
        body = {"default": {"rule": "first_seen"},
                "traits": {self.name: {"rule": "source_priority", "sources": ["crm", "web"]},
                           "first_name": {"rule": "most_frequent"}}}
        doc = self.assertJson(put(RULES, body), 200)
        self.assertIsInstance(doc.pop("traits_changed"), int)
        self.assertEqual(doc, body)
        self.assertEqual(self.assertJson(get(RULES), 200), body)
        # most_recent as the default is the same as no default
        doc = self.rules({}, default={"rule": "most_recent"})
        self.assertEqual(doc["default"], {"rule": "most_recent"})

    def test_validation(self):
        cases = [
            ({"default": {"rule": "newest"}}, "/default/rule"),
            ({"default": {"rule": "source_priority"}}, "/default/sources"),
            ({"default": {"rule": "source_priority", "sources": []}}, "/default/sources"),
            ({"default": {"rule": "most_recent", "sources": ["a"]}}, "/default/sources"),
            ({"traits": {self.name: {"rule": "source_priority", "sources": ["a", "a"]}}},
             "/traits/%s/sources/1" % self.name),
            ({"traits": {self.name: {"rule": "source_priority", "sources": ["a", ""]}}},
             "/traits/%s/sources/1" % self.name),
            ({"traits": {"shoe_size": {"rule": "most_recent"}}}, "/traits/shoe_size"),
            ({"traits": {"attributes.": {"rule": "most_recent"}}}, "/traits/attributes."),
            ({"traits": {self.name: "most_recent"}}, "/traits/%s" % self.name),
            ({"traits": []}, "/traits"),
            ({"rules": {}}, "/rules"),
            ({"default": {"rule": "first_seen", "extra": 1}}, "/default/extra"),
        ]
        for body, pointer in cases:
            with self.subTest(body=body):
                self.assertProblem(put(RULES, body), 422, "validation-failed", pointers=[pointer])
        self.assertProblem(put(RULES, [1]), 400, "malformed-json")
        # nothing was stored by the refused requests
        self.assertEqual(self.assertJson(get(RULES), 200)["traits"], {})

    def test_admin_only_and_audited(self):
        for role in ("call_center", "marketing", "front_office"):
            key = make_key(role)
            with self.subTest(role=role):
                self.assertProblem(get(RULES, key=key), 403, "forbidden")
                self.assertProblem(put(RULES, {}, key=key), 403, "forbidden")
        self.rules({self.name: {"rule": "first_seen"}})
        detail = sql("SELECT detail::text FROM crm.audit_log "
                     "WHERE action = 'settings.survivorship.changed' "
                     "AND detail->'after'->'traits' ? %s" % lit(self.name))
        self.assertTrue(detail, "the change is audited")
        self.assertIn('"before"', detail)


# ---------------------------------------------------------------------------
# 2. source values and the rules

class RuleTests(Base):
    def test_every_source_value_is_kept_and_the_profile_shows_the_losers(self):
        cid = self.customer("shop", "red")
        self.assertEqual(self.stored(cid), [("shop", "red", 1)])
        self.assertEqual(set(self.sources(cid)), {"source", "updated_at"},
                         "one source: no conflict to show")
        self.write(cid, "crm", "blue")
        self.assertEqual(self.value(cid), "blue", "most_recent is the default")
        ts = self.sources(cid)
        self.assertEqual((ts["source"], ts["rule"]), ("crm", "most_recent"))
        self.assertEqual(len(ts["losing"]), 1)
        lose = ts["losing"][0]
        self.assertEqual((lose["source"], lose["value"], lose["times_seen"]), ("shop", "red", 1))
        self.assertTimestamp(lose["first_seen"])
        self.assertTimestamp(lose["last_seen"])
        # The same value again counts; the trait row is not rewritten.
        updated = ts["updated_at"]
        self.write(cid, "crm", "blue")
        self.assertEqual(self.stored(cid), [("crm", "blue", 2), ("shop", "red", 1)])
        self.assertEqual(self.sources(cid)["updated_at"], updated)
        # A source changing its value starts counting again.
        self.write(cid, "shop", "green")
        self.assertEqual(self.stored(cid), [("crm", "blue", 2), ("shop", "green", 1)])
        self.assertEqual(self.value(cid), "green")
        self.assertEqual([(v["source"], v["value"], v["times_seen"])
                          for v in self.sources(cid)["losing"]], [("crm", "blue", 2)])
        # Two sources agreeing is no conflict.
        self.write(cid, "crm", "green")
        self.assertNotIn("losing", self.sources(cid))
        # null removes the trait and every source's value of it.
        self.write(cid, "crm", None)
        self.assertIsNone(self.value(cid))
        self.assertEqual(self.stored(cid), [])

    def test_source_priority_and_a_rule_change_resolves_stored_traits(self):
        cid = self.customer("crm", "gold")
        self.write(cid, "web", "silver")
        other = self.customer("web", "bronze")  # one source only: unchanged by any rule
        self.assertEqual(self.value(cid), "silver")
        doc = self.rules({self.name: {"rule": "source_priority", "sources": ["crm", "web"]}})
        self.assertEqual(doc["traits_changed"], 1)
        self.assertEqual(self.value(cid), "gold", "the rule change resolved the stored trait")
        self.assertEqual(self.value(other), "bronze")
        ts = self.sources(cid)
        self.assertEqual((ts["source"], ts["rule"]), ("crm", "source_priority"))
        self.assertEqual([(v["source"], v["value"]) for v in ts["losing"]], [("web", "silver")])
        self.write(cid, "web", "platinum")
        self.assertEqual(self.value(cid), "gold", "a lower source does not win")
        self.write(cid, "app", "tin")
        self.assertEqual(self.value(cid), "gold", "an unlisted source comes last")
        self.write(cid, "crm", None)
        self.assertIsNone(self.value(cid))
        cid2 = self.customer("app", "tin")
        self.write(cid2, "other", "lead")
        self.assertEqual(self.value(cid2), "lead", "unlisted sources: the most recent")
        self.write(cid2, "web", "iron")
        self.assertEqual(self.value(cid2), "iron")
        # Back to the default: most recent again.
        cid3 = self.customer("crm", "gold")
        self.write(cid3, "web", "silver")
        self.assertEqual(self.value(cid3), "gold")
        doc = self.rules({})
        self.assertEqual(doc["traits_changed"], 1)
        self.assertEqual(self.value(cid3), "silver")
        self.assertEqual(self.value(cid2), "iron")

    def test_most_frequent(self):
        self.rules({self.name: {"rule": "most_frequent"}})
        cid = self.customer("a", "x")
        self.write(cid, "b", "y")
        self.assertEqual(self.value(cid), "y", "a tie: the most recent")
        self.write(cid, "c", "x")
        self.assertEqual(self.value(cid), "x", "two sources say x")
        self.write(cid, "d", "y")
        self.write(cid, "d", "y")
        self.assertEqual(self.value(cid), "y", "two sources each, y given more times")
        self.assertEqual(self.sources(cid)["rule"], "most_frequent")

    def test_a_rule_change_shows_on_cached_profiles(self):
        cid = self.customer("crm", "gold")
        self.write(cid, "web", "silver")
        self.assertEqual(self.sources(cid)["rule"], "most_recent")
        self.sources(cid)  # cached now
        self.rules({self.name: {"rule": "source_priority", "sources": ["web"]}})
        ts = self.sources(cid)
        self.assertEqual((ts["source"], ts["rule"]), ("web", "source_priority"),
                         "same winner, another rule")

    def test_a_losing_source_seen_again_shows_on_the_cached_profile(self):
        self.rules({self.name: {"rule": "source_priority", "sources": ["crm"]}})
        cid = self.customer("crm", "gold")
        self.write(cid, "web", "silver")
        self.assertEqual(self.sources(cid)["losing"][0]["times_seen"], 1)
        self.sources(cid)  # cached now
        self.write(cid, "web", "silver")  # the trait row does not change
        self.assertEqual(self.sources(cid)["losing"][0]["times_seen"], 2)

    def test_first_seen_and_default_rule(self):
        self.rules({}, default={"rule": "first_seen"})
        cid = self.customer("a", "old")
        self.write(cid, "b", "new")
        self.assertEqual(self.value(cid), "old")
        self.write(cid, "a", "old")  # seen again: still held since the first time
        self.write(cid, "c", "newer")
        self.assertEqual(self.value(cid), "old")
        self.write(cid, "a", "changed")  # a's value changed: held since now
        self.assertEqual(self.value(cid), "new")
        # A trait with a rule of its own is not governed by the default.
        self.rules({self.name: {"rule": "most_recent"}}, default={"rule": "first_seen"})
        self.assertEqual(self.value(cid), "changed")
        self.rules({})
        self.assertEqual(self.value(cid), "changed")


# ---------------------------------------------------------------------------
# 3. merge, unmerge, erasure

class MergeTests(Base):
    def pair(self):
        a = self.customer("crm", "gold")
        b = self.customer("web", "silver")
        return a, b

    def test_merge_unions_source_values_and_unmerge_restores_exactly(self):
        self.rules({self.name: {"rule": "source_priority", "sources": ["crm", "web"]}})
        a, b = self.pair()
        self.write(b, "app", "tin")
        before = {c: self.profile(c) for c in (a, b)}
        stored = {c: self.stored(c) for c in (a, b)}
        doc = self.assertJson(post("/v1/admin/merges", {"survivor_id": b, "absorbed_id": a,
                                                        "reason": "e2e"}), 200)
        self.assertEqual(doc["status"], "merged")
        self.assertEqual(self.stored(b), [("app", "tin", 1), ("crm", "gold", 1),
                                          ("web", "silver", 1)])
        self.assertEqual(self.stored(a), [])
        self.assertEqual(self.value(b), "gold", "crm's value wins on the survivor")
        ts = self.sources(b)
        self.assertEqual(ts["source"], "crm")
        self.assertEqual(sorted((v["source"], v["value"]) for v in ts["losing"]),
                         [("app", "tin"), ("web", "silver")])

        r = self.assertJson(post("/v1/admin/unmerge", {"customer_id": a, "reason": "e2e"}), 200)
        self.assertEqual(r["status"], "unmerged")
        for c in (a, b):
            self.assertEqual(self.profile(c), before[c], c)
            self.assertEqual(self.stored(c), stored[c], c)

    def test_same_source_on_both_sides(self):
        a = self.customer("crm", "gold")
        b = self.customer("crm", "silver")
        self.write(a, "crm", "gold")  # a's value is now the later one
        before = {c: self.profile(c) for c in (a, b)}
        stored = {c: self.stored(c) for c in (a, b)}
        self.assertJson(post("/v1/admin/merges", {"survivor_id": b, "absorbed_id": a}), 200)
        self.assertEqual(self.stored(b), [("crm", "gold", 2)], "the source's last value")
        self.assertEqual(self.value(b), "gold")
        self.assertJson(post("/v1/admin/unmerge", {"customer_id": a}), 200)
        for c in (a, b):
            self.assertEqual(self.profile(c), before[c], c)
            self.assertEqual(self.stored(c), stored[c], c)

    def test_merge_reports_the_winner_it_keeps(self):
        a, b = self.pair()
        self.write(a, "crm", "gold")  # given again: a's value is the later one
        doc = self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b,
                                                        "dry_run": True}), 200)
        conflict = [c for c in doc["trait_conflicts"] if c["trait"] == self.name]
        self.assertEqual(len(conflict), 1, doc["trait_conflicts"])
        self.assertEqual(conflict[0]["winner"], "survivor")
        self.assertEqual(doc["customer"]["traits"]["attributes"][self.attr], "gold")

    def test_write_after_the_merge_stays_with_the_survivor(self):
        self.rules({self.name: {"rule": "most_frequent"}})
        a, b = self.pair()
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b}), 200)
        self.write(a, "app", "silver")
        self.assertEqual(self.value(a), "silver", "two sources say silver")
        self.assertJson(post("/v1/admin/unmerge", {"customer_id": b}), 200)
        self.assertEqual(self.stored(a), [("app", "silver", 1), ("crm", "gold", 1)])
        self.assertEqual(self.stored(b), [("web", "silver", 1)])
        self.assertEqual(self.value(b), "silver")
        self.assertIn(self.value(a), ("gold", "silver"))
        self.assertEqual(self.value(a), "silver", "a tie: the most recent")

    def test_erasure_deletes_every_source_value(self):
        a, b = self.pair()
        self.write(a, "app", "tin")
        self.assertJson(post("/v1/admin/merges", {"survivor_id": a, "absorbed_id": b}), 200)
        export = self.assertJson(get("/v1/customers/%s/export" % a), 200)
        self.assertEqual([(v["source"], v["value"], v["times_seen"])
                          for v in export["trait_values"] if v["name"] == self.name],
                         [("app", "tin", 1), ("crm", "gold", 1), ("web", "silver", 1)])
        self.assertJson(request("DELETE", "/v1/customers/%s" % a), 200)
        for c in (a, b):
            self.assertEqual(self.stored(c), [])
        self.assertEqual(sql("SELECT count(*) FROM crm.merge_trait_values v JOIN crm.merges m "
                             "USING (merge_id) WHERE m.absorbed_id = %s "
                             "AND (v.absorbed_values <> '[]' OR v.survivor_values <> '[]')"
                             % lit(b)), "0", "the merge snapshot keeps no values")


# ---------------------------------------------------------------------------
# 4. a storm of merging resolves from several sources

class StormTests(Base):
    def test_merging_resolves_from_many_sources_keep_traits_resolved(self):
        self.rules({self.name: {"rule": "source_priority", "sources": ["s0", "s1"]}})
        n = 16
        emails = ["storm-%s-%02d@example.com" % (uid()[:8], i) for i in range(n)]
        ids = [self.customer("s%d" % (i % 4), "v%d" % i, email=emails[i]) for i in range(n)]
        failures = []

        def worker(t):
            for k in range(8):
                i, j = (t + k) % n, (t * 3 + k + 1) % n
                body = {"identifiers": [email_id(emails[i]), email_id(emails[j])],
                        "source": "s%d" % ((t + k) % 4),
                        "traits": {"attributes": {self.attr: "w%d-%d" % (t, k)}}}
                r = post("/v1/customers:resolve", body)
                if r.status not in (200, 201):
                    failures.append((r.status, r.body))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        ids_sql = "ARRAY[%s]::uuid[]" % ", ".join(lit(c) for c in ids)
        # No absorbed customer keeps source values or trait rows.
        self.assertEqual(sql("SELECT count(*) FROM crm.trait_values v JOIN crm.customers c "
                             "USING (customer_id) WHERE c.customer_id = ANY (%s) "
                             "AND c.merged_into IS NOT NULL" % ids_sql), "0")
        # Every trait is its source values' winner under the rule.
        self.assertEqual(sql("SELECT count(*) FROM crm.trait_winners(%s, ARRAY[%s]) w "
                             "FULL JOIN (SELECT * FROM crm.traits WHERE customer_id = ANY (%s) "
                             "AND name = %s) t USING (customer_id, name) "
                             "WHERE t.value IS DISTINCT FROM w.value "
                             "OR t.source IS DISTINCT FROM w.source"
                             % (ids_sql, lit(self.name), ids_sql, lit(self.name))), "0")
        survivors = sql("SELECT count(DISTINCT crm.survivor_of(c)) FROM unnest(%s) c" % ids_sql)
        self.assertLess(int(survivors), n, "the storm merged customers")
        # s0 gave a value to every survivor that has one of s0's sources.
        bad = sql("SELECT count(*) FROM crm.traits t WHERE t.customer_id = ANY (%s) "
                  "AND t.name = %s AND t.source <> 's0' AND EXISTS (SELECT 1 FROM "
                  "crm.trait_values v WHERE v.customer_id = t.customer_id AND v.name = t.name "
                  "AND v.source = 's0')" % (ids_sql, lit(self.name)))
        self.assertEqual(bad, "0")


if __name__ == "__main__":
    raise SystemExit(harness.main())
