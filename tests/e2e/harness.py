"""End-to-end test harness for the CRM server (Python 3 standard library only).

Environment:
  CRM_BIN            path of the server binary (required)
  CRM_DATABASE_URL   PostgreSQL conninfo passed as --db (required)
  CRM_E2E_LOGDIR     directory for the server log (default: a fresh temp dir)

One server is started per test run (see start_server/stop_server, called from
setUpModule/tearDownModule) on a free loopback port with a deliberately small
body limit so that 413 is easy to trigger.
"""

import collections
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

HOST = "127.0.0.1"
# The server installs this as its bootstrap admin key (CRM_BOOTSTRAP_ADMIN_KEY)
# when the database has no admin key yet; every request sends it unless the
# test passes its own Authorization/X-API-Key header or key=None. Test
# databases only: override with CRM_E2E_ADMIN_KEY.
ADMIN_KEY = os.environ.get(
    "CRM_E2E_ADMIN_KEY",
    "crm_00000000e2e04000a000000000000001_e2e-test-admin-key-not-a-secret-00000000000")
BODY_LIMIT = 65536
POOL_SIZE = 8
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0
LOG_TAIL_LINES = 80

_MISSING = object()


class Server:
    def __init__(self, binary, db_url, log_dir, extra_args=(), tls_context=None):
        self.binary = binary
        self.tls_context = tls_context  # ssl.SSLContext when the server speaks HTTPS
        self.extra_args = list(extra_args)
        self.db_url = db_url
        self.log_dir = log_dir
        self.port = None
        self.proc = None
        self.log_path = None
        self._log_file = None

    @property
    def base_url(self):
        return "http://%s:%d" % (HOST, self.port)

    def log_tail(self, lines=LOG_TAIL_LINES):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no server log)"
        with open(self.log_path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(data[-lines:])

    def start(self):
        last_error = None
        # A free port can be taken by someone else between probing and the
        # server's bind(); retry a couple of times if the server dies early.
        for attempt in range(3):
            self.port = free_port()
            os.makedirs(self.log_dir, exist_ok=True)
            self.log_path = os.path.join(
                self.log_dir, "crm-server-%d-%d.log" % (os.getpid(), self.port))
            self._log_file = open(self.log_path, "wb")
            argv = [self.binary, "--listen", HOST, "--port", str(self.port),
                    "--db", self.db_url, "--pool-size", str(POOL_SIZE),
                    "--body-limit", str(BODY_LIMIT)] + self.extra_args
            env = dict(os.environ, CRM_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY)
            try:
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                    stderr=subprocess.STDOUT, env=env)
            except OSError as e:
                self._log_file.close()
                raise RuntimeError("cannot start %s: %s" % (self.binary, e))
            try:
                self._wait_healthy()
                sys.stderr.write("e2e: server pid %d on %s, log %s\n"
                                 % (self.proc.pid, self.base_url, self.log_path))
                return
            except RuntimeError as e:
                last_error = e
                exited = self.proc.poll() is not None
                if not exited:
                    self.proc.kill()
                    self.proc.wait()
                self._log_file.close()
                sys.stderr.write("e2e: server failed to start (attempt %d): %s\n"
                                 "---- server log tail (%s) ----\n%s\n"
                                 "---- end of server log ----\n"
                                 % (attempt + 1, e, self.log_path, self.log_tail()))
                tail = self.log_tail().lower()
                if not exited or not ("in use" in tail or "eaddrinuse" in tail):
                    break  # only a lost port race is worth another attempt
        self.proc = None
        raise RuntimeError("server did not become healthy: %s" % last_error)

    def _wait_healthy(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError("server exited with code %d during startup" % rc)
            try:
                status, _, body = request("GET", "/health", timeout=2.0, port=self.port,
                                          tls_context=self.tls_context)
                if status == 200:
                    return
                last = "GET /health -> %d %r" % (status, body)
            except (OSError, http.client.HTTPException) as e:
                last = "GET /health: %s" % e
            time.sleep(0.1)
        raise RuntimeError("no 200 from GET /health within %.0f s (%s)"
                           % (STARTUP_TIMEOUT, last))

    def stop(self):
        """SIGTERM the server; return its exit code (None if it had to be killed)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._log_file.close()
                return None
        self._log_file.close()
        return proc.returncode


SERVER = None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server():
    """Start the shared server (idempotent). Called from setUpModule."""
    global SERVER
    if SERVER is not None:
        return SERVER
    binary = os.environ.get("CRM_BIN")
    db_url = os.environ.get("CRM_DATABASE_URL")
    if not binary:
        raise RuntimeError("CRM_BIN is not set (path of the crm server binary)")
    if not os.access(binary, os.X_OK):
        raise RuntimeError("CRM_BIN=%s is not an executable file" % binary)
    if not db_url:
        raise RuntimeError("CRM_DATABASE_URL is not set (PostgreSQL conninfo)")
    log_dir = os.environ.get("CRM_E2E_LOGDIR") or tempfile.mkdtemp(prefix="crm-e2e-")
    server = Server(binary, db_url, log_dir)
    server.start()
    SERVER = server
    return server


def extra_server(*args, tls_context=None):
    """Start another server on the suite's database with extra command-line
    arguments (tls_context: it serves HTTPS, checked with that context); the
    caller stops it (Server.stop)."""
    server = Server(os.environ["CRM_BIN"], os.environ["CRM_DATABASE_URL"],
                    os.environ.get("CRM_E2E_LOGDIR") or "/tmp", extra_args=args,
                    tls_context=tls_context)
    server.start()
    return server


def stop_server():
    """Graceful shutdown check: SIGTERM must make the server exit 0 within 10 s."""
    global SERVER
    server, SERVER = SERVER, None
    if server is None:
        return
    rc = server.stop()
    if rc != 0:
        msg = ("server did not exit within %.0f s of SIGTERM (killed)" % SHUTDOWN_TIMEOUT
               if rc is None else "server exited with code %d after SIGTERM" % rc)
        raise AssertionError("%s\n---- server log tail (%s) ----\n%s"
                             % (msg, server.log_path, server.log_tail()))
    sys.stderr.write("e2e: server stopped cleanly (exit 0), log %s\n" % server.log_path)


# ---------------------------------------------------------------------------
# Request builders shared by the suites

def uid():
    return uuid.uuid4().hex[:16]


def random_digits(n):
    return "".join(random.choice("0123456789") for _ in range(n))


def email_id(value):
    return {"kind": "email", "value": value}


def phone_id(value):
    return {"kind": "phone", "value": value}


def resolve(identifiers, source="e2e", traits=None, **kw):
    body = {"identifiers": identifiers, "source": source}
    if traits is not None:
        body["traits"] = traits
    return post("/v1/customers:resolve", body, **kw)


def interaction(customer_id=None, identifiers=None, **fields):
    body = {"source": "e2e", "external_id": "ext-" + uid(), "channel": "web",
            "type": "page_view", "occurred_at": "2026-11-20T15:04:05Z"}
    if customer_id is not None:
        body["customer_id"] = customer_id
    if identifiers is not None:
        body["identifiers"] = identifiers
    body.update(fields)
    return body


def ingest(customer_id=None, identifiers=None, **fields):
    return post("/v1/interactions", interaction(customer_id, identifiers, **fields))


# ---------------------------------------------------------------------------
# Direct SQL on the test database (psql), for checks the API does not show

def sql(q, *args):
    """Run q with psql on CRM_DATABASE_URL; its output, trimmed (-tA)."""
    out = subprocess.run(["psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-d",
                          os.environ["CRM_DATABASE_URL"], "-c", q] + list(args),
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def lit(s):
    """s as an SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


# ---------------------------------------------------------------------------
# Assertions shared by the suites

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PROBLEM_CT = "application/problem+json"


class CrmTestCase(unittest.TestCase):
    """Base of the suites: status, JSON and RFC 9457 problem assertions."""
    maxDiff = None

    def desc(self, r):
        return "HTTP %d %s: %r" % (r.status, r.content_type, r.body)

    def assertStatus(self, r, status):
        self.assertEqual(r.status, status, self.desc(r))

    def assertJson(self, r, status):
        self.assertStatus(r, status)
        self.assertTrue(r.content_type.lower().startswith("application/json"),
                        "Content-Type %r; %s" % (r.content_type, self.desc(r)))
        self.assertIsInstance(r.body, dict, self.desc(r))
        return r.body

    def assertProblemDoc(self, doc, status, slug, ctx=""):
        self.assertIsInstance(doc, dict, ctx)
        self.assertEqual(doc.get("type"), "urn:crm:problem:" + slug, ctx or doc)
        self.assertEqual(doc.get("status"), status, ctx or doc)
        self.assertIsInstance(doc.get("title"), str, ctx or doc)
        self.assertTrue(doc.get("title"), ctx or doc)
        if slug == "validation-failed":
            errors = doc.get("errors")
            self.assertIsInstance(errors, list, ctx or doc)
            self.assertTrue(errors, "validation-failed without errors: %r" % doc)
            for e in errors:
                self.assertIsInstance(e.get("pointer"), str, doc)
                self.assertIsInstance(e.get("detail"), str, doc)
                self.assertTrue(e["pointer"] == "" or e["pointer"].startswith("/"), doc)
        else:
            self.assertNotIn("errors", doc, "errors only for validation-failed: %r" % doc)

    def assertProblem(self, r, status, slug, instance=None, pointers=()):
        """Status, problem+json Content-Type, type urn:crm:problem:<slug>, and
        (for validation-failed) that every pointer in `pointers` is reported."""
        ctx = self.desc(r)
        self.assertEqual(r.status, status, ctx)
        self.assertTrue(r.content_type.lower().startswith(PROBLEM_CT),
                        "Content-Type %r; %s" % (r.content_type, ctx))
        self.assertProblemDoc(r.body, status, slug, ctx)
        if instance is not None:
            self.assertEqual(r.body.get("instance"), instance, ctx)
        got = [e["pointer"] for e in r.body.get("errors", [])]
        for p in pointers:
            self.assertIn(p, got, ctx)
        return r.body

    def assertTimestamp(self, value, ctx=None):
        self.assertIsInstance(value, str, ctx)
        self.assertRegex(value, TS_RE, ctx)

# ---------------------------------------------------------------------------
# HTTP helper

class Response(collections.namedtuple("Response", "status headers body")):
    """(status, headers, body). body is parsed JSON when the response is JSON
    (application/json or application/problem+json) and parses, else raw bytes.
    headers is an http.client.HTTPMessage (case-insensitive .get())."""

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "")


def request(method, path, json_body=_MISSING, raw=None,
            content_type="application/json", headers=None,
            timeout=REQUEST_TIMEOUT, port=None, key=ADMIN_KEY, tls_context=None):
    """Send one request on a fresh connection.

    json_body: any JSON-serialisable value (encoded as UTF-8).
    raw:       bytes sent verbatim as the body (overrides json_body).
    content_type: Content-Type for bodies; None omits the header.
    key:       API key sent as a Bearer token (None: no key), unless headers
               carry Authorization or X-API-Key themselves.
    tls_context: speak HTTPS, verifying the server with this ssl.SSLContext.
    """
    if port is None:
        if SERVER is None:
            raise RuntimeError("server not started")
        port = SERVER.port
    hdrs = {"Accept": "application/json"}
    body = None
    if raw is not None:
        body = raw
    elif json_body is not _MISSING:
        body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
    if body is not None:
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs["Content-Length"] = str(len(body))
    if key is not None and not any(h.lower() in ("authorization", "x-api-key")
                                   for h in (headers or {})):
        hdrs["Authorization"] = "Bearer " + key
    if headers:
        hdrs.update(headers)
    if tls_context is not None:
        conn = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=tls_context)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (e.g. 413) and stop reading early;
                # still try to read what it said.
                pass
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "") or ""
        parsed = data
        if data and "json" in ctype.lower():
            try:
                parsed = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                parsed = data
        return Response(resp.status, resp.headers, parsed)
    finally:
        conn.close()


def get(path, **kw):
    return request("GET", path, **kw)


def post(path, body=_MISSING, **kw):
    return request("POST", path, json_body=body, **kw)


def patch(path, body=_MISSING, **kw):
    return request("PATCH", path, json_body=body, **kw)


def query(path, params):
    """path + '?' + params, percent-encoded with %20 for spaces (never '+')."""
    if not params:
        return path
    return path + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


# ---------------------------------------------------------------------------
# Runner

def _is_real_test(test):
    return isinstance(test, unittest.TestCase) or hasattr(test, "test_case")


def main(module="__main__", argv=None):
    """Run the tests of `module` verbosely; print 'e2e: N passed, N failed' last.

    Extra command-line arguments are test names (e.g. ResolveTests or
    ResolveTests.test_create_then_find) to run only those.
    """
    argv = sys.argv[1:] if argv is None else argv
    mod = sys.modules[module] if isinstance(module, str) else module
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv, mod)
    else:
        suite = loader.loadTestsFromModule(mod)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stderr)
    result = runner.run(suite)

    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    failing_tests = set()
    for test, _ in result.failures + result.errors:
        if hasattr(test, "test_case"):  # a failed subTest
            failing_tests.add(test.test_case.id())
        elif isinstance(test, unittest.TestCase):
            failing_tests.add(test.id())
    for test in result.unexpectedSuccesses:
        failing_tests.add(test.id())
    skipped = len(result.skipped)
    passed = max(0, result.testsRun - len(failing_tests) - skipped)
    line = "e2e: %d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    sys.stderr.flush()
    print(line, flush=True)
    return 1 if failed else 0
