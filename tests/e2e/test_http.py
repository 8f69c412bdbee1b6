#!/usr/bin/env python3
"""End-to-end tests of the HTTP layer itself: request framing, limits on the
request head and body, connections (raw sockets where clients would hide
what the server sends).

Run:  CRM_BIN=build/crm-server CRM_DATABASE_URL=postgresql:///crm \
      python3 tests/e2e/test_http.py [TestClass[.test_method] ...]
"""

import json
import os
import re
import resource
import socket
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import get  # noqa: E402


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def raw_exchange(data, port=None, timeout=5.0, then=None):
    """Send data on a new connection, then `then` (if any), and read until the
    server closes or `timeout` passes without a byte. Returns the bytes read
    and whether the server closed the connection."""
    s = socket.create_connection((harness.HOST, port or harness.SERVER.port), timeout=timeout)
    try:
        s.sendall(data)
        if then is not None:
            try:
                s.sendall(then)
            except OSError:
                pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
    finally:
        s.close()


STATUS_LINE = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ")


def status_lines(raw):
    """How many status lines raw holds (at its start or after a CRLF)."""
    return len(STATUS_LINE.findall(raw))


def parse_one(raw):
    """(status, headers dict with lower-case names, body) of the one response
    in raw; fails when there is not exactly one status line."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class HttpTestCase(harness.CrmTestCase):
    def assertOneProblem(self, raw, status, slug):
        """raw is exactly one HTTP response: status, problem+json of that slug."""
        self.assertTrue(raw, "no answer")
        self.assertEqual(status_lines(raw), 1, raw)
        code, headers, body = parse_one(raw)
        self.assertEqual(code, status, raw)
        self.assertEqual(headers.get("content-type"), harness.PROBLEM_CT, raw)
        self.assertEqual(int(headers["content-length"]), len(body), raw)
        doc = json.loads(body)
        self.assertProblemDoc(doc, status, slug, raw)
        return headers, doc


AUTH = b"Authorization: Bearer " + harness.ADMIN_KEY.encode() + b"\r\n"


class FramingTests(HttpTestCase):
    """Ambiguous framing is refused with 400 (libmicrohttpd alone served
    these requests, reading them its own way)."""

    def test_transfer_encoding_with_content_length(self):
        raw, closed = raw_exchange(
            b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 7\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        headers, doc = self.assertOneProblem(raw, 400, "invalid-header")
        self.assertEqual(doc["detail"], "Transfer-Encoding and Content-Length together")
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(closed)

    def test_two_content_lengths(self):
        for values in ((b"2", b"5"), (b"2", b"2")):
            raw, _ = raw_exchange(
                b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
                b"Content-Type: application/json\r\nContent-Length: " + values[0] +
                b"\r\nContent-Length: " + values[1] + b"\r\n\r\n{}")
            _, doc = self.assertOneProblem(raw, 400, "invalid-header")
            self.assertEqual(doc["detail"], "more than one Content-Length header")

    def test_transfer_coding_other_than_chunked(self):
        raw, _ = raw_exchange(
            b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
            b"Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n")
        self.assertOneProblem(raw, 400, "invalid-header")

    def test_http11_needs_one_host(self):
        raw, _ = raw_exchange(b"GET /health HTTP/1.1\r\n\r\n")
        _, doc = self.assertOneProblem(raw, 400, "invalid-header")
        self.assertEqual(doc["detail"], "an HTTP/1.1 request needs a Host header")
        raw, _ = raw_exchange(b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertOneProblem(raw, 400, "invalid-header")
        # HTTP/1.0 has no Host requirement
        raw, _ = raw_exchange(b"GET /health HTTP/1.0\r\n\r\n")
        self.assertEqual(parse_one(raw)[0], 200, raw)

    def test_chunked_body_still_served(self):
        body = json.dumps(harness.interaction(
            identifiers=[harness.email_id("chunked-%s@example.com" % harness.uid())])).encode()
        raw, _ = raw_exchange(
            b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        self.assertEqual(parse_one(raw)[0], 201, raw)


class HeadLimitTests(HttpTestCase):
    def test_many_query_parameters_answer_431(self):
        # 230 parameters filled libmicrohttpd's 16 KB request memory: it
        # queued a 431 and lost it, the client waited for the idle timeout.
        query = "&".join("p%d=v%d" % (i, i) for i in range(230))
        started = time.monotonic()
        raw, _ = raw_exchange(b"GET /v1/customers?" + query.encode() +
                              b" HTTP/1.1\r\nHost: crm\r\n" + AUTH + b"\r\n")
        self.assertLess(time.monotonic() - started, 5)
        self.assertOneProblem(raw, 431, "request-head-too-large")
        # up to 64 parameters are read and checked against the route's own
        # (none for /health: 400 naming the first unknown one, not 431)
        query = "&".join("p%d=v%d" % (i, i) for i in range(64))
        doc = self.assertProblem(get("/health?" + query), 400, "invalid-query")
        self.assertIn("'p0'", doc["detail"])
        self.assertJson(get("/health"), 200)

    def test_oversized_header_answer_431(self):
        # libmicrohttpd's own answer (HTML), documented in openapi.yaml
        raw, closed = raw_exchange(b"GET /health HTTP/1.1\r\nHost: crm\r\nX-Big: " +
                                   b"a" * 20000 + b"\r\n\r\n")
        self.assertEqual(status_lines(raw), 1, raw)
        self.assertEqual(parse_one(raw)[0], 431, raw)
        self.assertTrue(closed)


class BodyLimitTests(HttpTestCase):
    def test_urllib_posting_too_large_a_body_reads_413(self):
        # urllib sends the whole body before reading; the server answered
        # 413 at the head and closed, and urllib saw a broken pipe or a reset.
        body = json.dumps({"pad": "x" * (4 * 1024 * 1024)}).encode()  # 64 times the limit
        req = urllib.request.Request(
            harness.SERVER.base_url + "/v1/interactions", data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": "Bearer " + harness.ADMIN_KEY})
        for _ in range(3):
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(req, timeout=30)
            self.assertEqual(caught.exception.code, 413)
            self.assertEqual(caught.exception.headers["Content-Type"], harness.PROBLEM_CT)
            doc = json.loads(caught.exception.read())
            self.assertProblemDoc(doc, 413, "payload-too-large")

    def test_expect_100_continue_gets_413_before_the_body(self):
        raw, closed = raw_exchange(
            b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % (10 * harness.BODY_LIMIT))
        self.assertNotIn(b"100 Continue", raw)
        self.assertOneProblem(raw, 413, "payload-too-large")
        self.assertTrue(closed)

    def test_body_within_the_limit_with_expect_is_read(self):
        body = json.dumps(harness.interaction(
            identifiers=[harness.email_id("expect-%s@example.com" % harness.uid())])).encode()
        s = socket.create_connection((harness.HOST, harness.SERVER.port), timeout=5)
        try:
            s.sendall(b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n" + AUTH +
                      b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 100 Continue"))
            s.sendall(body)
            raw = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        finally:
            s.close()
        self.assertEqual(parse_one(raw)[0], 201, raw)

    def test_invalid_content_length_answers_one_status_line(self):
        # libmicrohttpd 0.9.75 answers a Content-Length it cannot read itself,
        # before the server sees the request, writing its status line and
        # headers twice; the server now answers first (answer_bad_content_length
        # in src/http.c): one response, a problem document.
        for value, status, slug in ((b"-1", 400, "invalid-header"),
                                    (b"12abc", 400, "invalid-header"),
                                    (b"18446744073709551616", 413, "payload-too-large")):
            raw, closed = raw_exchange(b"POST /v1/interactions HTTP/1.1\r\nHost: crm\r\n"
                                       b"Content-Length: " + value + b"\r\n\r\n")
            self.assertOneProblem(raw, status, slug)
            self.assertTrue(closed)
        # a head arriving in pieces while another connection of the same
        # worker thread sends its request line: still one answer each
        server = harness.extra_server("--http-threads", "1")
        self.addCleanup(lambda: self.assertEqual(server.stop(), 0, server.log_tail()))
        a = socket.create_connection((harness.HOST, server.port), timeout=5)
        b = socket.create_connection((harness.HOST, server.port), timeout=5)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.sendall(b"POST /v1/interactions HTTP/1.1\r\n")
        time.sleep(0.1)
        b.sendall(b"GET /health HTTP/1.1\r\nHost: crm\r\n")
        time.sleep(0.1)
        a.sendall(b"Host: crm\r\nContent-Length: -5\r\n\r\n")
        raw = b""
        while True:
            chunk = a.recv(65536)
            if not chunk:
                break
            raw += chunk
        self.assertOneProblem(raw, 400, "invalid-header")
        b.sendall(b"Connection: close\r\n\r\n")
        self.assertEqual(parse_one(b.recv(65536))[0], 200)


class ConnectionLimitTests(HttpTestCase):
    IDLE = 2000

    def extra_server(self, *args):
        server = harness.extra_server(*args)
        self.addCleanup(lambda: self.assertEqual(server.stop(), 0, server.log_tail()))
        return server

    def test_idle_connections_from_one_address_leave_room_for_others(self):
        # 2,000 connections from 127.0.0.2 that never send a byte: the server
        # keeps 256 of them (--max-connections-per-ip) and closes the others
        # as soon as accepted, so a client from 127.0.0.1 is answered at once.
        # Before, 1,024 of them (--max-connections) took every slot and the
        # rest, then the new client, waited in the backlog for the idle
        # timeout (30 s).
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.IDLE + 512
        if soft < wanted:
            if hard != resource.RLIM_INFINITY and hard < wanted:
                self.skipTest("ulimit -n %d is too small for %d sockets" % (hard, self.IDLE))
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        try:
            probe = socket.socket()
            probe.bind(("127.0.0.2", 0))
            probe.close()
        except OSError as e:
            self.skipTest("cannot bind 127.0.0.2: %s" % e)
        server = self.extra_server()
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(self.IDLE):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(10)
            s.connect((harness.HOST, server.port))
            idle.append(s)
        slowest = 0.0
        for _ in range(5):
            started = time.monotonic()
            r = get("/health", port=server.port, timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            self.assertJson(r, 200)
        print("\n/health beside %d idle connections: slowest of 5 answers %.1f ms"
              % (self.IDLE, slowest * 1000), file=sys.stderr)
        self.assertLess(slowest, 1.0)
        # the server closed all but --max-connections-per-ip of them
        time.sleep(0.5)
        kept = 0
        for s in idle:
            s.setblocking(False)
            try:
                kept += s.recv(1) != b""
            except BlockingIOError:
                kept += 1
            except OSError:
                pass
        print("kept open by the server: %d of %d" % (kept, self.IDLE), file=sys.stderr)
        self.assertLessEqual(kept, 256)
        self.assertGreater(kept, 0)

    def test_a_request_head_that_does_not_come_is_cut_short(self):
        # slowloris: a connection that has not completed its first request
        # head is closed after --header-timeout idle seconds; a connection
        # that has sent a request then idles on --connection-timeout (30 s).
        server = self.extra_server("--header-timeout", "1")
        slow = socket.create_connection((harness.HOST, server.port), timeout=20)
        self.addCleanup(slow.close)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: crm\r\n")
        kept = socket.create_connection((harness.HOST, server.port), timeout=20)
        self.addCleanup(kept.close)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: crm\r\n\r\n")
        self.assertTrue(kept.recv(65536).startswith(b"HTTP/1.1 200 "))
        started = time.monotonic()
        self.assertEqual(slow.recv(65536), b"", "the server should close the connection")
        self.assertLess(time.monotonic() - started, 10)
        time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: crm\r\n\r\n")
        self.assertTrue(kept.recv(65536).startswith(b"HTTP/1.1 200 "),
                        "a kept-alive connection idles on the usual timeout")


class ConsoleFileTests(HttpTestCase):
    """The console's static files (/console/): no key, their content type,
    a strong ETag and 304, the page headers (CSP, nosniff), and no way out
    of the compiled-in set."""

    CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

    def test_index_and_files_without_a_key(self):
        for path, ctype in (("/console/", "text/html; charset=utf-8"),
                            ("/console/app.js", "text/javascript; charset=utf-8"),
                            ("/console/console.css", "text/css; charset=utf-8"),
                            ("/console/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
                            ("/console/vendor/uPlot.LICENSE.txt", "text/plain; charset=utf-8")):
            with self.subTest(path=path):
                r = harness.request("GET", path, key=None)
                self.assertEqual(r.status, 200, self.desc(r))
                self.assertEqual(r.headers.get("Content-Type"), ctype)
                self.assertEqual(r.headers.get("Content-Security-Policy"), self.CSP)
                self.assertEqual(r.headers.get("X-Content-Type-Options"), "nosniff")
                self.assertEqual(r.headers.get("Cache-Control"), "no-cache")
                self.assertRegex(r.headers.get("ETag", ""), r'^"[0-9a-f]{20}"$')
                self.assertEqual(int(r.headers.get("Content-Length")), len(r.body))
                self.assertGreater(len(r.body), 0)
        index = harness.request("GET", "/console/", key=None).body
        self.assertIn(b'<script src="app.js" type="module">', index)
        self.assertNotIn(b"<script>", index)  # no inline script (the CSP forbids it)

    def test_etag_gives_304(self):
        r = harness.request("GET", "/console/app.js", key=None)
        etag = r.headers["ETag"]
        for given in (etag, '"0000", ' + etag, "W/" + etag, "*"):
            with self.subTest(if_none_match=given):
                again = harness.request("GET", "/console/app.js", key=None,
                                        headers={"If-None-Match": given})
                self.assertEqual(again.status, 304, self.desc(again))
                self.assertEqual(again.body, b"")
                self.assertEqual(again.headers.get("ETag"), etag)
        other = harness.request("GET", "/console/app.js", key=None,
                                headers={"If-None-Match": '"0123456789abcdef0123"'})
        self.assertEqual(other.status, 200)
        # each file has its own tag
        css = harness.request("GET", "/console/console.css", key=None)
        self.assertNotEqual(css.headers["ETag"], etag)

    def test_unknown_or_unsafe_names_are_404(self):
        for path in ("/console/nope.js", "/console/index.htm", "/console/vendor/",
                     "/console/../meson.build", "/console/%2e%2e/meson.build",
                     "/console/vendor/../app.js", "/console/.git/config", "/console//app.js",
                     "/console/src/main.c", "/console"):
            with self.subTest(path=path):
                r = harness.request("GET", path, key=None)
                self.assertProblem(r, 404, "not-found")

    def test_methods_and_query(self):
        r = harness.request("POST", "/console/app.js", json_body={}, key=None)
        self.assertProblem(r, 405, "method-not-allowed")
        self.assertEqual(r.headers.get("Allow"), "GET")
        r = harness.request("GET", "/console/?key=x", key=None)
        self.assertProblem(r, 400, "invalid-query")


if __name__ == "__main__":
    sys.exit(harness.main())
