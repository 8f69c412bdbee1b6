#!/usr/bin/env python3
"""End-to-end tests of access control: API keys, roles, partner scope,
revocation and the audit log (src/auth.c, src/access.c, src/handlers_admin.c,
sql/003_access.sql, sql/functions/access.sql).

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_access.py [TestClass[.test_method] ...]

Requests send the harness's bootstrap admin key unless a test passes key=...;
every test creates its own keys and uuid-based identifiers, so the database
does not need to be empty. The audit checks read crm.audit_log with psql.
"""

import http.client
import json
import os
import re
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ADMIN_KEY, email_id, get, patch, post, query, request, uid  # noqa: E402

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KEY_RE = re.compile(r"^crm_([0-9a-f]{32})_[A-Za-z0-9_-]{43}$")

ROLES = ("front_office", "call_center", "marketing", "partner", "admin")
PARTNER_NS = "acme"


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


# ---------------------------------------------------------------------------
# helpers

def new_email(prefix="e2e-access"):
    return "%s-%s@example.com" % (prefix, uid())


def ext_id(value, namespace=PARTNER_NS):
    return {"kind": "external", "namespace": namespace, "value": value}


def key_id_of(api_key):
    """The key id (uuid text) carried in an API key."""
    h = KEY_RE.match(api_key).group(1)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


ADMIN_KEY_ID = key_id_of(ADMIN_KEY)


def fake_key(key_id_hex=None, secret=None):
    """A well-formed key (crm_<32 hex>_<43 base64url>) that the server never issued."""
    key_id_hex = key_id_hex or uuid.uuid4().hex
    secret = secret or ("Zz9-_" * 9)[:43]
    return "crm_%s_%s" % (key_id_hex, secret)


sql = harness.sql
sql_literal = harness.lit


def interaction_body(identifiers=None, customer_id=None, **fields):
    """harness.interaction with this suite's source and date."""
    fields.setdefault("source", "e2e-access")
    fields.setdefault("occurred_at", "2025-11-20T15:04:05Z")
    return harness.interaction(customer_id, identifiers, **fields)


def marker_rule(marker):
    return {"field": "traits.attributes.run_marker", "op": "eq", "value": marker}


def desc(r):
    body = r.body
    if isinstance(body, bytes) and len(body) > 300:
        body = body[:300] + b"..."
    return "HTTP %d %r" % (r.status, body)


def create_key(role, name=None, namespace=None):
    """Create a key as admin; return the creation answer (with api_key)."""
    body = {"name": name or "e2e-%s-%s" % (role, uid()), "role": role}
    if namespace is not None:
        body["namespace"] = namespace
    r = post("/v1/admin/keys", body)
    if r.status != 201:
        raise AssertionError("creating a %s key: %s" % (role, desc(r)))
    return r.body


class AccessTestCase(harness.CrmTestCase):
    def assertUnauthorized(self, r):
        doc = self.assertProblem(r, 401, "unauthorized")
        challenge = r.headers.get("WWW-Authenticate")
        self.assertIsNotNone(challenge, "401 without WWW-Authenticate; %s" % desc(r))
        self.assertTrue(challenge.lower().startswith("bearer"), challenge)
        return doc

    def assertForbidden(self, r):
        doc = self.assertProblem(r, 403, "forbidden")
        self.assertIsNone(r.headers.get("WWW-Authenticate"), "403 with a challenge")
        return doc

    def create_customer(self, identifiers=None, traits=None):
        body = {"identifiers": identifiers or [email_id(new_email())], "source": "e2e-access"}
        if traits is not None:
            body["traits"] = traits
        doc = self.assertJson(post("/v1/customers:resolve", body), 201)
        return doc["customer_id"]


# ---------------------------------------------------------------------------
# 1. authentication

class AuthenticationTests(AccessTestCase):
    SECURED = "/v1/segments"  # a GET route any admin may call

    def test_no_key_is_401_with_challenge(self):
        for method, path in (("GET", "/v1/segments"), ("GET", "/v1/admin/keys"),
                             ("GET", "/v1/customers/%s" % uuid.uuid4()),
                             ("GET", query("/v1/customers", {"email": new_email()})),
                             ("GET", query("/v1/kpis", {"from": "2025-01-01T00:00:00Z",
                                                         "to": "2025-02-01T00:00:00Z"}))):
            with self.subTest(path=path):
                r = request(method, path, key=None)
                self.assertUnauthorized(r)
                self.assertEqual(r.headers.get("WWW-Authenticate"), 'Bearer realm="crm"')

    def test_no_key_on_post_routes(self):
        r = post("/v1/customers:resolve",
                 {"identifiers": [email_id(new_email())], "source": "e2e"}, key=None)
        self.assertUnauthorized(r)
        r = post("/v1/interactions", interaction_body([email_id(new_email())]), key=None)
        self.assertUnauthorized(r)
        r = request("DELETE", "/v1/admin/keys/%s" % ADMIN_KEY_ID, key=None)
        self.assertUnauthorized(r)
        # The bootstrap admin key must still work (nothing was revoked).
        self.assertStatus(get("/v1/admin/keys"), 200)

    def test_malformed_keys_are_401(self):
        good = ADMIN_KEY
        cases = {
            "not a key": "Bearer nonsense",
            "empty bearer": "Bearer ",
            "basic scheme": "Basic " + good,
            "no scheme": good,
            "too short": "Bearer " + good[:-1],
            "too long": "Bearer " + good + "A",
            "upper-case hex id": "Bearer crm_" + good[4:36].upper() + good[36:],
            "wrong prefix": "Bearer crx_" + good[4:],
            "bad separator": "Bearer " + good[:36] + "." + good[37:],
            "bad secret char": "Bearer " + good[:-1] + "!",
        }
        for name, authz in cases.items():
            with self.subTest(case=name):
                self.assertUnauthorized(get(self.SECURED, headers={"Authorization": authz}))
        for name, xkey in (("x-api-key garbage", "garbage"), ("x-api-key empty", "")):
            with self.subTest(case=name):
                self.assertUnauthorized(get(self.SECURED, headers={"X-API-Key": xkey}))

    def test_unknown_well_formed_key_is_401(self):
        r = get(self.SECURED, key=fake_key())
        self.assertUnauthorized(r)
        r = get(self.SECURED, headers={"X-API-Key": fake_key()})
        self.assertUnauthorized(r)

    def test_wrong_secret_for_existing_key_id_is_401(self):
        # The bootstrap admin key's id with another secret.
        admin_hex = ADMIN_KEY[4:36]
        self.assertUnauthorized(get(self.SECURED, key=fake_key(admin_hex)))
        # A freshly created key's id with another (well-formed) secret.
        created = create_key("marketing")
        hex_id = KEY_RE.match(created["api_key"]).group(1)
        secret = created["api_key"][37:]
        other = ("A" if secret[0] != "A" else "B") + secret[1:]
        self.assertUnauthorized(get(self.SECURED, key=fake_key(hex_id, other)))
        # ...and the genuine key still works.
        self.assertStatus(get(self.SECURED, key=created["api_key"]), 200)

    def test_health_and_ready_need_no_key(self):
        r = get("/health", key=None)
        self.assertEqual(self.assertJson(r, 200), {"status": "ok"})
        r = get("/ready", key=None)
        self.assertEqual(self.assertJson(r, 200), {"status": "ready"})
        # A bad key does not matter on public routes either.
        self.assertStatus(get("/health", key=fake_key()), 200)
        self.assertStatus(get("/ready", headers={"Authorization": "Bearer junk"}), 200)

    def test_x_api_key_header_works_like_bearer(self):
        r = get("/v1/admin/keys", key=None, headers={"X-API-Key": ADMIN_KEY})
        self.assertIsInstance(self.assertJson(r, 200).get("items"), list)
        mk = create_key("marketing")["api_key"]
        r = get("/v1/segments", key=None, headers={"X-API-Key": mk})
        self.assertJson(r, 200)
        r = get("/v1/admin/keys", key=None, headers={"X-API-Key": mk})
        self.assertForbidden(r)
        # Bearer scheme is case-insensitive.
        r = get("/v1/segments", key=None, headers={"Authorization": "bearer " + mk})
        self.assertJson(r, 200)

    def test_401_before_body_validation(self):
        path = "/v1/customers:resolve"
        cases = {
            "malformed json": dict(raw=b"{not json"),
            "empty body": dict(raw=b""),
            "not an object": dict(raw=b"[1, 2]"),
            "wrong content type": dict(raw=b"{}", content_type="text/plain"),
            "invalid utf-8": dict(raw=b'{"source": "\xff"}'),
            "invalid fields": dict(raw=b'{"identifiers": 5}'),
        }
        for name, kw in cases.items():
            with self.subTest(case=name):
                self.assertUnauthorized(request("POST", path, key=None, **kw))
                self.assertUnauthorized(request("POST", path, key=fake_key(), **kw))
        # Same check with the admin key gives the body error (sanity of the cases).
        self.assertProblem(request("POST", path, raw=b"{not json"), 400, "malformed-json")

    def test_401_before_payload_too_large(self):
        # A chunked body (no Content-Length) over the limit is read, then the
        # missing key is reported first.
        big = b'{"x": "' + b"a" * (harness.BODY_LIMIT + 100) + b'"}'
        conn = http.client.HTTPConnection(harness.HOST, harness.SERVER.port,
                                          timeout=harness.REQUEST_TIMEOUT)
        try:
            conn.request("POST", "/v1/interactions",
                         body=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
                         headers={"Content-Type": "application/json"}, encode_chunked=True)
            resp = conn.getresponse()
            data = resp.read()
            r = harness.Response(resp.status, resp.headers, json.loads(data.decode("utf-8")))
        finally:
            conn.close()
        self.assertUnauthorized(r)
        # A declared Content-Length over the limit is refused with 413 before
        # the request is even routed (src/http.c on_request), key or not.
        r = request("POST", "/v1/interactions", raw=big, key=None)
        self.assertProblem(r, 413, "payload-too-large")

    def test_403_before_body_validation(self):
        mk = create_key("marketing")["api_key"]
        r = request("POST", "/v1/customers:resolve", raw=b"{not json", key=mk)
        self.assertForbidden(r)
        r = request("POST", "/v1/interactions", raw=b"{}", content_type="text/plain", key=mk)
        self.assertForbidden(r)


# ---------------------------------------------------------------------------
# 2. key management

class RateLimitTests(AccessTestCase):
    def test_each_key_has_its_own_bucket(self):
        # --rate-limit 1: a burst of 2 requests per key, then 429 with
        # Retry-After until a token comes back (1 per second); another key
        # has a bucket of its own.
        server = harness.extra_server("--rate-limit", "1")
        try:
            other = create_key("call_center")["api_key"]
            path = "/v1/customers?email=" + new_email()
            self.assertEqual([get(path, port=server.port).status for _ in range(2)], [404, 404])
            r = get(path, port=server.port)
            self.assertProblem(r, 429, "too-many-requests")
            self.assertEqual(r.headers.get("Retry-After"), "1")
            self.assertEqual(get(path, port=server.port, key=other).status, 404)
            time.sleep(1.1)  # one token back
            self.assertEqual([get(path, port=server.port).status for _ in range(2)], [404, 429])
        finally:
            self.assertEqual(server.stop(), 0, server.log_tail())


class KeyCacheTests(AccessTestCase):
    def test_two_hundred_keys_stay_verified(self):
        # Verified keys are kept for 30 s per server (README): 200 keys used
        # once each, then revoked behind the server's back, still answer
        # from its cache. With the old 128-entry cache at most 128 did.
        server = harness.extra_server()
        try:
            prefix = "e2e-cache-%s-" % uid()
            keys = [create_key("call_center", name=prefix + str(i))["api_key"]
                    for i in range(200)]
            path = "/v1/customers?email=" + new_email()
            for k in keys:
                self.assertEqual(get(path, port=server.port, key=k).status, 404)
            harness.sql("UPDATE crm.api_keys SET revoked_at = now() WHERE name LIKE '%s%%'"
                        % prefix)
            still = sum(get(path, port=server.port, key=k).status == 404 for k in keys)
            self.assertGreaterEqual(still, 190, "keys answered from the cache")
            # the main server never saw these keys: for it they are revoked
            self.assertUnauthorized(get(path, key=keys[0]))
        finally:
            self.assertEqual(server.stop(), 0, server.log_tail())


class KeyManagementTests(AccessTestCase):
    def test_create_one_key_per_role(self):
        created = {}
        for role in ROLES:
            with self.subTest(role=role):
                body = {"name": "e2e %s %s" % (role, uid()), "role": role}
                if role == "partner":
                    body["namespace"] = PARTNER_NS
                r = post("/v1/admin/keys", body)
                doc = self.assertJson(r, 201)
                self.assertRegex(doc.get("api_key", ""), KEY_RE, doc)
                self.assertRegex(doc.get("key_id", ""), UUID_RE, doc)
                self.assertEqual(key_id_of(doc["api_key"]), doc["key_id"])
                self.assertEqual(doc["name"], body["name"])
                self.assertEqual(doc["role"], role)
                self.assertEqual(doc.get("namespace"), PARTNER_NS if role == "partner" else None)
                self.assertEqual(doc.get("created_by"), ADMIN_KEY_ID)
                self.assertRegex(doc.get("created_at", ""), harness.TS_RE)
                self.assertIsNone(doc.get("revoked_at"))
                self.assertNotIn("key_hash", doc)
                created[role] = doc
        self.assertEqual(len({d["api_key"] for d in created.values()}), len(created))

        listing = self.assertJson(get("/v1/admin/keys"), 200)
        items = listing.get("items")
        self.assertIsInstance(items, list)
        by_id = {it["key_id"]: it for it in items}
        for it in items:
            self.assertNotIn("api_key", it, it)
            self.assertNotIn("key_hash", it, it)
        self.assertIn(ADMIN_KEY_ID, by_id)
        for role, doc in created.items():
            with self.subTest(role=role):
                self.assertIn(doc["key_id"], by_id)
                listed = by_id[doc["key_id"]]
                expected = {k: v for k, v in doc.items() if k != "api_key"}
                self.assertEqual(listed, expected)
                # Every created key authenticates.
                r = get("/v1/admin/keys", key=doc["api_key"])
                if role == "admin":
                    self.assertStatus(r, 200)
                else:
                    self.assertForbidden(r)
        text = repr(listing)
        for doc in created.values():
            self.assertNotIn(doc["api_key"][37:], text)

    def test_partner_namespace_is_normalised(self):
        doc = create_key("partner", namespace="ACME")
        self.assertEqual(doc["namespace"], "acme")

    def test_key_validation(self):
        cases = {
            "unknown role": ({"name": "x", "role": "superuser"}, "/role"),
            "role missing": ({"name": "x"}, "/role"),
            "role not a string": ({"name": "x", "role": 1}, "/role"),
            "partner without namespace": ({"name": "x", "role": "partner"}, "/namespace"),
            "partner with null namespace": ({"name": "x", "role": "partner", "namespace": None},
                                            "/namespace"),
            "partner with bad namespace": ({"name": "x", "role": "partner",
                                            "namespace": "ac me!"}, "/namespace"),
            "partner with empty namespace": ({"name": "x", "role": "partner", "namespace": ""},
                                             "/namespace"),
            "namespace on marketing": ({"name": "x", "role": "marketing", "namespace": "acme"},
                                       "/namespace"),
            "namespace on admin": ({"name": "x", "role": "admin", "namespace": "acme"},
                                   "/namespace"),
            "unknown field": ({"name": "x", "role": "marketing", "scopes": ["all"]}, "/scopes"),
            "name missing": ({"role": "marketing"}, "/name"),
            "name empty": ({"name": "", "role": "marketing"}, "/name"),
            "name too long": ({"name": "n" * 101, "role": "marketing"}, "/name"),
        }
        before = len(self.assertJson(get("/v1/admin/keys"), 200)["items"])
        for name, (body, pointer) in cases.items():
            with self.subTest(case=name):
                r = post("/v1/admin/keys", body)
                doc = self.assertProblem(r, 422, "validation-failed", pointers=[pointer])
                self.assertNotIn("api_key", doc)
        after = len(self.assertJson(get("/v1/admin/keys"), 200)["items"])
        self.assertEqual(after, before, "rejected key requests must not create keys")

    def test_key_body_errors(self):
        self.assertProblem(request("POST", "/v1/admin/keys", raw=b"{"), 400, "malformed-json")
        self.assertProblem(request("POST", "/v1/admin/keys", raw=b"{}",
                                   content_type="text/plain"), 415, "unsupported-media-type")


# ---------------------------------------------------------------------------
# 3. role x endpoint matrix

FO, CC, MK, PA = "front_office", "call_center", "marketing", "partner"


class RoleMatrixTests(AccessTestCase):
    """One representative call per endpoint class per role: allowed roles get
    the endpoint's success status, the others 403 forbidden."""

    @classmethod
    def setUpClass(cls):
        cls.keys = {}
        for role in ROLES:
            cls.keys[role] = create_key(role, namespace=PARTNER_NS if role == PA else None)
        cls.marker = "access-" + uid()
        cls.email = new_email()
        body = {"identifiers": [email_id(cls.email), ext_id("matrix-" + uid())],
                "source": "e2e-access", "traits": {"attributes": {"run_marker": cls.marker}}}
        r = post("/v1/customers:resolve", body)
        if r.status != 201:
            raise AssertionError("setup resolve: %s" % desc(r))
        cls.customer_id = r.body["customer_id"]
        r = post("/v1/segments", {"name": "e2e-access-%s" % uid(),
                                  "rule": marker_rule(cls.marker)})
        if r.status != 201:
            raise AssertionError("setup segment: %s" % desc(r))
        cls.segment_id = r.body["segment_id"]

    def check_matrix(self, allowed, call, ok_statuses, roles=ROLES):
        """allowed: the roles (besides admin) allowed; call(key) -> Response."""
        for role in roles:
            with self.subTest(role=role):
                r = call(self.keys[role]["api_key"])
                if role == "admin" or role in allowed:
                    self.assertNotIn(r.status, (401, 403), desc(r))
                    self.assertIn(r.status, ok_statuses, desc(r))
                else:
                    doc = self.assertForbidden(r)
                    self.assertIn(role, doc.get("detail", ""), doc)

    def test_resolve(self):
        self.check_matrix(
            {FO, CC, PA},
            lambda k: post("/v1/customers:resolve",
                           {"identifiers": [ext_id("m-" + uid())], "source": "e2e"}, key=k),
            (201,))

    def test_interaction_create(self):
        self.check_matrix(
            {FO, CC, PA},
            lambda k: post("/v1/interactions", interaction_body([ext_id("m-" + uid())]), key=k),
            (201,))

    def test_interaction_batch(self):
        def call(k):
            r = post("/v1/interactions:batch",
                     {"items": [interaction_body([ext_id("m-" + uid())])]}, key=k)
            if r.status == 200:
                self.assertEqual(r.body.get("created"), 1, r.body)
            return r
        self.check_matrix({FO, CC, PA}, call, (200,))

    def test_traits_patch(self):
        self.check_matrix(
            {FO, CC},
            lambda k: patch("/v1/customers/%s/traits" % self.customer_id,
                            {"source": "e2e", "traits": {"first_name": "Ann"}}, key=k),
            (200,))

    def test_customer_get(self):
        self.check_matrix(
            {CC}, lambda k: get("/v1/customers/%s" % self.customer_id, key=k), (200,))

    def test_lookup(self):
        self.check_matrix(
            {CC}, lambda k: get(query("/v1/customers", {"email": self.email}), key=k), (200,))

    def test_timeline(self):
        self.check_matrix(
            {CC}, lambda k: get("/v1/customers/%s/interactions" % self.customer_id, key=k),
            (200,))

    def test_segment_create(self):
        self.check_matrix(
            {MK},
            lambda k: post("/v1/segments", {"name": "e2e-access-%s" % uid(),
                                            "rule": marker_rule(self.marker)}, key=k),
            (201,))

    def test_segment_list(self):
        self.check_matrix({MK}, lambda k: get("/v1/segments", key=k), (200,))

    def test_segment_get(self):
        self.check_matrix({MK}, lambda k: get("/v1/segments/%s" % self.segment_id, key=k),
                          (200,))

    def test_segment_delete(self):
        # An unknown id: allowed roles get 404, the others 403.
        self.check_matrix({MK}, lambda k: request("DELETE", "/v1/segments/%s" % uuid.uuid4(),
                                                  key=k), (404,))

    def test_segment_preview(self):
        def call(k):
            r = post("/v1/segments:preview", {"rule": marker_rule(self.marker)}, key=k)
            if r.status == 200:
                self.assertEqual([it["customer_id"] for it in r.body["items"]],
                                 [self.customer_id], r.body)
            return r
        self.check_matrix({MK}, call, (200,))

    def test_segment_customers(self):
        self.check_matrix(
            {MK}, lambda k: get("/v1/segments/%s/customers" % self.segment_id, key=k), (200,))

    def test_segment_export(self):
        def call(k):
            r = get("/v1/segments/%s/export" % self.segment_id, key=k)
            if r.status == 200:
                self.assertIn("ndjson", r.content_type)
                # One member: the harness parses the single line as JSON.
                body = r.body if isinstance(r.body, dict) else json.loads(r.body)
                self.assertEqual(body.get("customer_id"), self.customer_id, r.body)
            return r
        self.check_matrix({MK}, call, (200,))

    def test_kpis(self):
        self.check_matrix(
            {MK}, lambda k: get(query("/v1/kpis", {"from": "2025-01-01T00:00:00Z",
                                                   "to": "2025-02-01T00:00:00Z"}), key=k),
            (200,))

    def test_value_recompute(self):
        # The recompute is heavy: it runs once, for marketing; admin is not run.
        roles = [r for r in ROLES if r != "admin"]
        # 422 model-not-fitted is an allowed answer too: whether the model
        # converges depends on the data the suite left, not on the role
        self.check_matrix({MK}, lambda k: post("/v1/value:recompute", {}, key=k), (200, 422),
                          roles=roles)

    def test_value_runs(self):
        self.check_matrix({MK}, lambda k: get("/v1/value/runs?limit=1", key=k), (200,))

    def test_value_settings(self):
        self.check_matrix({MK}, lambda k: get("/v1/settings/value", key=k), (200,))
        self.check_matrix(set(), lambda k: patch("/v1/settings/value", {"clv_margin": 1.0},
                                                 key=k), (200,))

    def test_admin_key_list(self):
        self.check_matrix(set(), lambda k: get("/v1/admin/keys", key=k), (200,))

    def test_admin_key_create(self):
        def call(k):
            return post("/v1/admin/keys", {"name": "e2e-matrix-%s" % uid(),
                                           "role": "front_office"}, key=k)
        self.check_matrix(set(), call, (201,))

    def test_me(self):
        self.check_matrix({FO, CC, MK, PA}, lambda k: get("/v1/me", key=k), (200,))

    def test_admin_key_revoke(self):
        # An unknown id: admin gets 404, the others 403.
        self.check_matrix(set(), lambda k: request("DELETE", "/v1/admin/keys/%s" % uuid.uuid4(),
                                                   key=k), (404,))


# ---------------------------------------------------------------------------
# 4. partner scope

class PartnerScopeTests(AccessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.partner = create_key(PA, namespace=PARTNER_NS)["api_key"]

    def ppost(self, path, body):
        return post(path, body, key=self.partner)

    def test_resolve_in_scope_has_no_customer(self):
        ident = ext_id("p-" + uid())
        r = self.ppost("/v1/customers:resolve", {"identifiers": [ident], "source": "acme"})
        doc = self.assertJson(r, 201)
        self.assertRegex(doc.get("customer_id", ""), UUID_RE)
        self.assertIs(doc.get("created"), True)
        self.assertNotIn("customer", doc)
        r = self.ppost("/v1/customers:resolve", {"identifiers": [ident], "source": "acme"})
        doc2 = self.assertJson(r, 200)
        self.assertEqual(doc2["customer_id"], doc["customer_id"])
        self.assertIs(doc2.get("created"), False)
        self.assertNotIn("customer", doc2)
        # Upper-case namespace normalises to the key's namespace.
        r = self.ppost("/v1/customers:resolve",
                       {"identifiers": [ext_id(ident["value"], "ACME")], "source": "acme"})
        self.assertEqual(self.assertJson(r, 200)["customer_id"], doc["customer_id"])

    def test_resolve_of_customer_known_elsewhere_reveals_no_profile(self):
        ident = ext_id("p-" + uid())
        email = new_email()
        cid = self.create_customer([email_id(email), ident],
                                   traits={"first_name": "Secret", "last_name": "Person"})
        r = self.ppost("/v1/customers:resolve", {"identifiers": [ident], "source": "acme"})
        doc = self.assertJson(r, 200)
        self.assertEqual(doc["customer_id"], cid)
        self.assertNotIn("customer", doc)
        self.assertNotIn(email, repr(doc))
        self.assertNotIn("Secret", repr(doc))
        # Partners may not write traits (not even their own attributes).
        r = self.ppost("/v1/customers:resolve", {"identifiers": [ident], "source": "acme",
                                                 "traits": {"attributes": {"p": 1}}})
        self.assertForbidden(r)

    def test_resolve_out_of_scope_is_403(self):
        cases = {
            "other namespace": [ext_id("p-" + uid(), "shopify")],
            "email": [email_id(new_email())],
            "phone": [{"kind": "phone", "value": "+33612345678"}],
            "mixed": [ext_id("p-" + uid()), email_id(new_email())],
            "mixed namespaces": [ext_id("p-" + uid()), ext_id("p-" + uid(), "acme2")],
        }
        for name, ids in cases.items():
            with self.subTest(case=name):
                r = self.ppost("/v1/customers:resolve", {"identifiers": ids, "source": "acme"})
                self.assertForbidden(r)
        # Nothing was created for the forbidden email.
        email = cases["email"][0]["value"]
        self.assertProblem(get(query("/v1/customers", {"email": email})), 404, "not-found")

    def test_ingest_in_scope(self):
        ident = ext_id("p-" + uid())
        body = interaction_body([ident])
        doc = self.assertJson(self.ppost("/v1/interactions", body), 201)
        self.assertEqual(doc.get("status"), "created")
        self.assertRegex(doc.get("customer_id", ""), UUID_RE)
        doc2 = self.assertJson(self.ppost("/v1/interactions", body), 200)
        self.assertEqual(doc2.get("status"), "duplicate")
        self.assertEqual(doc2["interaction_id"], doc["interaction_id"])

    def test_ingest_out_of_scope_is_403(self):
        cid = self.create_customer([ext_id("p-" + uid())])
        cases = {
            "other namespace": interaction_body([ext_id("p-" + uid(), "shopify")]),
            "email": interaction_body([email_id(new_email())]),
            "customer_id of an acme customer": interaction_body(customer_id=cid),
            "customer_id unknown": interaction_body(customer_id=str(uuid.uuid4())),
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                self.assertForbidden(self.ppost("/v1/interactions", body))
        tl = self.assertJson(get("/v1/customers/%s/interactions" % cid), 200)
        self.assertEqual(tl["items"], [])

    def test_batch_mixes_scope(self):
        ok1 = interaction_body([ext_id("p-" + uid())])
        ok2 = interaction_body([ext_id("p-" + uid(), "Acme")])
        cid = self.create_customer([ext_id("p-" + uid())])
        items = [ok1,
                 interaction_body([ext_id("p-" + uid(), "shopify")]),
                 interaction_body(customer_id=cid),
                 ok2,
                 interaction_body([email_id(new_email())]),
                 {"source": "e2e"}]  # invalid: 422 still wins over scope
        r = self.ppost("/v1/interactions:batch", {"items": items})
        doc = self.assertJson(r, 200)
        self.assertEqual((doc.get("created"), doc.get("duplicates"), doc.get("failed")),
                         (2, 0, 4), doc)
        results = doc["results"]
        self.assertEqual([res["index"] for res in results], list(range(len(items))))
        for i in (0, 3):
            self.assertEqual(results[i]["status"], "created", results[i])
            self.assertRegex(results[i].get("interaction_id", ""), UUID_RE)
        for i in (1, 2, 4):
            self.assertEqual(results[i]["status"], "failed", results[i])
            self.assertProblemDoc(results[i].get("problem"), 403, "forbidden", results[i])
        self.assertEqual(results[5]["status"], "failed")
        self.assertProblemDoc(results[5].get("problem"), 422, "validation-failed", results[5])
        tl = self.assertJson(get("/v1/customers/%s/interactions" % cid), 200)
        self.assertEqual(tl["items"], [])

    def test_partner_cannot_read_profiles(self):
        cid = self.create_customer([ext_id("p-" + uid())])
        self.assertForbidden(get("/v1/customers/%s" % cid, key=self.partner))
        self.assertForbidden(get("/v1/customers/%s/interactions" % cid, key=self.partner))
        self.assertForbidden(patch("/v1/customers/%s/traits" % cid,
                                   {"source": "acme", "traits": {"first_name": "X"}},
                                   key=self.partner))


# ---------------------------------------------------------------------------
# 5. revocation

class RevocationTests(AccessTestCase):
    def test_revoke_before_first_use(self):
        doc = create_key(FO)
        key, kid = doc["api_key"], doc["key_id"]
        r = request("DELETE", "/v1/admin/keys/%s" % kid)
        revoked = self.assertJson(r, 200)
        self.assertEqual(revoked["key_id"], kid)
        self.assertEqual(revoked["role"], FO)
        self.assertRegex(revoked.get("revoked_at", ""), harness.TS_RE)
        self.assertNotIn("api_key", revoked)
        # The never-used key is refused, with either header.
        body = {"identifiers": [ext_id("r-" + uid())], "source": "e2e"}
        self.assertUnauthorized(post("/v1/customers:resolve", body, key=key))
        self.assertUnauthorized(get("/v1/segments", key=None, headers={"X-API-Key": key}))
        # Revoking again is idempotent and keeps the first time.
        again = self.assertJson(request("DELETE", "/v1/admin/keys/%s" % kid), 200)
        self.assertEqual(again.get("revoked_at"), revoked["revoked_at"])
        # The list shows revoked_at for that key only.
        items = {it["key_id"]: it for it in self.assertJson(get("/v1/admin/keys"), 200)["items"]}
        self.assertEqual(items[kid].get("revoked_at"), revoked["revoked_at"])
        self.assertIsNone(items[ADMIN_KEY_ID].get("revoked_at"))

    def test_revoke_does_not_affect_other_keys(self):
        a, b = create_key(MK), create_key(MK)
        self.assertJson(request("DELETE", "/v1/admin/keys/%s" % a["key_id"]), 200)
        self.assertUnauthorized(get("/v1/segments", key=a["api_key"]))
        self.assertJson(get("/v1/segments", key=b["api_key"]), 200)

    def test_revoke_after_use_is_at_once_on_this_server(self):
        # Used (so cached for 30 s), then revoked on this server: refused at
        # its very next request, not 30 s later.
        doc = create_key(CC)
        self.assertProblem(get("/v1/segments", key=doc["api_key"]), 403, "forbidden")
        self.assertJson(get("/v1/me", key=doc["api_key"]), 200)
        self.assertJson(request("DELETE", "/v1/admin/keys/%s" % doc["key_id"]), 200)
        self.assertUnauthorized(get("/v1/customers/%s" % uuid.uuid4(), key=doc["api_key"]))
        self.assertUnauthorized(get("/v1/me", key=doc["api_key"]))

    def test_me_reads_revocation_afresh(self):
        # Revoked behind the server's back (another instance): the cache
        # still admits the key for up to 30 s, /v1/me answers 401 at once.
        doc = create_key(MK)
        self.assertJson(get("/v1/segments", key=doc["api_key"]), 200)
        harness.sql("UPDATE crm.api_keys SET revoked_at = now() WHERE key_id = %s"
                    % harness.lit(doc["key_id"]))
        self.assertJson(get("/v1/segments", key=doc["api_key"]), 200)  # cached
        self.assertUnauthorized(get("/v1/me", key=doc["api_key"]))

    def test_revoke_unknown_id_is_404(self):
        r = request("DELETE", "/v1/admin/keys/%s" % uuid.uuid4())
        self.assertProblem(r, 404, "not-found")

    def test_revoke_bad_uuid_is_400(self):
        for bad in ("not-a-uuid", "1234", "%s0" % uuid.uuid4()):
            with self.subTest(id=bad):
                r = request("DELETE", "/v1/admin/keys/%s" % bad)
                self.assertProblem(r, 400, "invalid-uuid")


# ---------------------------------------------------------------------------
# GET /v1/me

class MeTests(AccessTestCase):
    def test_each_role_learns_its_own_key(self):
        for role in ROLES:
            with self.subTest(role=role):
                name = "e2e-me-%s-%s" % (role, uid())
                doc = create_key(role, name=name, namespace=PARTNER_NS if role == PA else None)
                me = self.assertJson(get("/v1/me", key=doc["api_key"]), 200)
                want = {"key_id": doc["key_id"], "role": role, "name": name}
                if role == PA:
                    want["namespace"] = PARTNER_NS
                self.assertEqual(me, want)

    def test_me_without_a_key_or_with_a_query(self):
        self.assertUnauthorized(get("/v1/me", key=None))
        self.assertUnauthorized(get("/v1/me", key=fake_key()))
        self.assertProblem(get("/v1/me?x=1"), 400, "invalid-query")
        self.assertProblem(post("/v1/me", {}), 405, "method-not-allowed")


# ---------------------------------------------------------------------------
# 6. audit log

class AuditTests(AccessTestCase):
    def audit_rows(self, key_id, customer_id=None):
        q = ("SELECT role || '|' || action || '|' || coalesce(customer_id::text, '') "
             "FROM crm.audit_log WHERE key_id = %s" % sql_literal(key_id))
        if customer_id is not None:
            q += " AND customer_id = %s" % sql_literal(customer_id)
        q += " ORDER BY audit_id"
        out = sql(q)
        return [line.split("|") for line in out.splitlines() if line]

    def wait_audit_rows(self, key_id, customer_id, count, timeout=5.0):
        deadline = time.time() + timeout
        rows = self.audit_rows(key_id, customer_id)
        while len(rows) < count and time.time() < deadline:
            time.sleep(0.05)
            rows = self.audit_rows(key_id, customer_id)
        return rows

    def test_call_center_reads_are_audited(self):
        cc = create_key(CC)
        email = new_email()
        cid = self.create_customer([email_id(email)])
        self.assertEqual(self.audit_rows(cc["key_id"]), [])
        self.assertJson(get("/v1/customers/%s" % cid, key=cc["api_key"]), 200)
        self.assertJson(get(query("/v1/customers", {"email": email}), key=cc["api_key"]), 200)
        self.assertJson(get("/v1/customers/%s/interactions" % cid, key=cc["api_key"]), 200)
        # Read-audit rows are written in batches (every 50 ms by default).
        rows = self.wait_audit_rows(cc["key_id"], cid, 3)
        self.assertEqual(rows, [["call_center", "customer.read", cid],
                                ["call_center", "customer.lookup", cid],
                                ["call_center", "customer.timeline", cid]])

    def test_unknown_customer_read_is_not_audited_as_read(self):
        cc = create_key(CC)
        self.assertProblem(get("/v1/customers/%s" % uuid.uuid4(), key=cc["api_key"]),
                           404, "not-found")
        self.assertProblem(get(query("/v1/customers", {"email": new_email()}),
                               key=cc["api_key"]), 404, "not-found")
        # A later successful read's row is written in the same or a later
        # batch, so once it is there, rows of the 404s would be too.
        cid = self.create_customer()
        self.assertJson(get("/v1/customers/%s" % cid, key=cc["api_key"]), 200)
        self.wait_audit_rows(cc["key_id"], cid, 1)
        rows = self.audit_rows(cc["key_id"])
        self.assertEqual(rows, [["call_center", "customer.read", cid]])

    def test_resolve_answer_follows_the_role(self):
        """Issue 13, item 3: resolve gives a profile only to roles that may read
        one, and then audits it like a GET."""
        email = new_email()
        digits = "61%07d" % (uuid.uuid4().int % 10 ** 7)
        cid = self.create_customer([email_id(email), {"kind": "phone", "value": "+33" + digits}],
                                   traits={"first_name": "Secret"})
        body = {"identifiers": [email_id(email)], "source": "e2e-access"}
        fo = create_key(FO)
        doc = self.assertJson(post("/v1/customers:resolve", body, key=fo["api_key"]), 200)
        self.assertEqual(doc["customer_id"], cid)
        self.assertLessEqual(set(doc), {"customer_id", "created", "merged_ids", "ignored",
                                        "conflicts"}, doc)
        self.assertNotIn("Secret", repr(doc))
        self.assertNotIn(digits, repr(doc))
        cc = create_key(CC)
        doc = self.assertJson(post("/v1/customers:resolve", body, key=cc["api_key"]), 200)
        self.assertEqual(doc["customer"]["traits"]["first_name"], "Secret")
        rows = self.wait_audit_rows(cc["key_id"], cid, 1)
        self.assertEqual(rows, [["call_center", "customer.resolve", cid]])
        # The front office's answer carried no personal data: no audit row.
        self.assertEqual(self.audit_rows(fo["key_id"]), [])

    def test_forbidden_read_is_not_audited(self):
        fo = create_key(FO)
        cid = self.create_customer()
        self.assertForbidden(get("/v1/customers/%s" % cid, key=fo["api_key"]))
        self.assertEqual(self.audit_rows(fo["key_id"]), [])

    def test_key_create_and_revoke_are_audited(self):
        doc = create_key(PA, namespace=PARTNER_NS)
        kid = doc["key_id"]
        q = ("SELECT key_id || '|' || role || '|' || action || '|' || (detail->>'role') "
             "FROM crm.audit_log WHERE action = 'key.create' AND detail->>'key_id' = %s"
             % sql_literal(kid))
        self.assertEqual(sql(q), "%s|admin|key.create|partner" % ADMIN_KEY_ID)
        self.assertJson(request("DELETE", "/v1/admin/keys/%s" % kid), 200)
        q = ("SELECT key_id || '|' || role || '|' || action FROM crm.audit_log "
             "WHERE action = 'key.revoke' AND detail->>'key_id' = %s" % sql_literal(kid))
        self.assertEqual(sql(q), "%s|admin|key.revoke" % ADMIN_KEY_ID)

    def test_secrets_are_not_stored(self):
        doc = create_key(MK)
        secret = doc["api_key"]
        q = ("SELECT count(*) FROM crm.api_keys WHERE key_id = %s AND key_hash = "
             "sha256(convert_to(%s, 'UTF8'))" % (sql_literal(doc["key_id"]), sql_literal(secret)))
        self.assertEqual(sql(q), "1")
        q = ("SELECT count(*) FROM crm.audit_log WHERE detail::text LIKE %s"
             % sql_literal("%" + secret[37:] + "%"))
        self.assertEqual(sql(q), "0")


if __name__ == "__main__":
    raise SystemExit(harness.main())
