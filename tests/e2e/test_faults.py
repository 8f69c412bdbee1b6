#!/usr/bin/env python3
"""Fault tests: the database goes away under the running server.

Needs CRM_PG_CTL, a command taking stop|start|restart for the cluster behind
CRM_DATABASE_URL (scripts/pgctl.sh), besides the harness's CRM_BIN and
CRM_DATABASE_URL. Every acknowledged write must be stored exactly once, the
server must stay up, and /ready must say 503 while the database is down.
"""

import json
import os
import subprocess
import sys
import threading
import time
import unittest
import uuid

import harness
from harness import get, post

PG_CTL = os.environ.get("CRM_PG_CTL")


def setUpModule():
    harness.start_server()


def tearDownModule():
    harness.stop_server()


def pg(action):
    subprocess.run([PG_CTL, action], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


sql = harness.sql


@unittest.skipUnless(PG_CTL, "CRM_PG_CTL not set")
class DatabaseRestartTests(unittest.TestCase):
    WORKERS = 8
    PER_WORKER = 150

    def test_restart_under_load_loses_nothing(self):
        run = uuid.uuid4().hex[:12]
        acked = {}
        failures = []
        lock = threading.Lock()

        def worker(w):
            for i in range(self.PER_WORKER):
                ext = "%s-%d-%d" % (run, w, i)
                body = {"identifiers": [{"kind": "email",
                                         "value": "%s-%d-%d@fault.example" % (run, w, i % 10)}],
                        "source": "fault-test", "external_id": ext, "channel": "web",
                        "type": "visit", "occurred_at": "2026-11-20T10:00:00Z"}
                # A client that retries on 503 / connection errors, as documented.
                for _ in range(100):
                    try:
                        r = post("/v1/interactions", body)
                    except OSError:
                        time.sleep(0.1)
                        continue
                    if r.status in (200, 201):
                        with lock:
                            acked[ext] = r.body["interaction_id"]
                        break
                    if r.status != 503:
                        with lock:
                            failures.append((ext, r.status, r.body))
                        break
                    time.sleep(0.1)
                else:
                    with lock:
                        failures.append((ext, "gave up", None))

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(self.WORKERS)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        pg("restart")
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(failures, [])
        self.assertEqual(len(acked), self.WORKERS * self.PER_WORKER)
        rows = sql("SELECT count(*), count(DISTINCT external_id) FROM crm.interactions "
                   "WHERE source = 'fault-test' AND external_id LIKE '%s-%%'" % run)
        total, distinct = map(int, rows.split("|"))
        self.assertEqual(total, len(acked), "each acknowledged interaction stored exactly once")
        self.assertEqual(distinct, len(acked))
        stored = dict(line.split("|") for line in sql(
            "SELECT external_id, interaction_id FROM crm.interactions "
            "WHERE source = 'fault-test' AND external_id LIKE '%s-%%'" % run).splitlines())
        self.assertEqual(stored, acked, "acknowledged ids are the stored ids")
        self.assertEqual(get("/health").status, 200)

    def test_ready_is_503_while_database_down(self):
        # /ready answers from the state a background check keeps (once a
        # second): with PostgreSQL stopped it turns 503 within a few seconds
        # and each answer comes at once (it took 3.1 s, the pool's retries,
        # before the check), then 200 again once the database is back.
        pg("stop")
        try:
            deadline = time.time() + 10
            while True:
                r, seconds = timed_get("/ready")
                self.assertLess(seconds, 1.0, "/ready took %.2f s (%d)" % (seconds, r.status))
                if r.status == 503 or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(r.status, 503)
            slowest = 0
            for _ in range(5):
                r, seconds = timed_get("/ready")
                slowest = max(slowest, seconds)
                self.assertEqual(r.status, 503)
            self.assertLess(slowest, 1.0, "/ready took %.2f s with the database down" % slowest)
            print("\n/ready with the database down: slowest of 5 answers %.1f ms"
                  % (slowest * 1000), file=sys.stderr)
            self.assertEqual(r.content_type, "application/problem+json")
            self.assertEqual(r.headers.get("Retry-After"), "1")
            self.assertEqual(r.body["type"], "urn:crm:problem:service-unavailable")
            self.assertEqual(r.body["detail"], "the database is unreachable")
            r = post("/v1/customers:resolve",
                     {"identifiers": [{"kind": "email", "value": "down@fault.example"}],
                      "source": "fault-test"})
            self.assertEqual(r.status, 503)
            self.assertEqual(get("/health").status, 200, "process stays alive")
        finally:
            pg("start")
        deadline = time.time() + 30
        while get("/ready").status != 200 and time.time() < deadline:
            time.sleep(0.2)
        self.assertEqual(get("/ready").status, 200)


def timed_get(path):
    started = time.monotonic()
    r = get(path, timeout=30)
    return r, time.monotonic() - started

if __name__ == "__main__":
    raise SystemExit(harness.main())
