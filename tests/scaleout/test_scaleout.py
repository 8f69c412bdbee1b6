"""Scale-out loopback tests (issue 6), Python 3 standard library only.

Started by tests/scaleout/run.sh, which sets up on 127.0.0.1: a PostgreSQL
primary and a streaming replica, PgBouncer (transaction pooling) in front of
the primary, two crm-server instances (crm1, crm2) whose --db is PgBouncer
(with --db-prepared 0) and whose --db-replica is the replica, and HAProxy
(round-robin, X-Served-By: <server name>) in front of the instances.

Environment (set by run.sh):
  SO_PROXY_PORT      HAProxy port
  SO_CRM_PORTS       "port1,port2" of crm1 and crm2 (direct, bypassing the proxy)
  SO_ADMIN_KEY       the bootstrap admin API key
  SO_PRIMARY_PORT, SO_REPLICA_PORT, SO_PGBOUNCER_PORT
  SO_PG_BINDIR       PostgreSQL binaries (psql, pg_ctl)
  SO_PG_USER         database superuser (trust authentication on 127.0.0.1)
  SO_REPLICA_DATA, SO_REPLICA_LOG   to stop and start the replica

Protocol under test (docs/scaleout.md): a successful write answers
CRM-Write-LSN; a read that sends CRM-Min-LSN is served by the replica only
once it has replayed that far (else by the primary); replica-eligible reads
answer CRM-Read-From: replica|primary.

Ends with the line "scaleout: N passed, N failed".
"""

import collections
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.parse
import uuid

HOST = "127.0.0.1"


def _env(name):
    v = os.environ.get(name)
    if not v:
        sys.stderr.write("scaleout: %s is not set (run tests/scaleout/run.sh)\n" % name)
        print("scaleout: 0 passed, 1 failed", flush=True)
        sys.exit(1)
    return v


PROXY_PORT = int(_env("SO_PROXY_PORT"))
CRM_PORTS = [int(p) for p in _env("SO_CRM_PORTS").split(",")]
ADMIN_KEY = _env("SO_ADMIN_KEY")
PRIMARY_PORT = int(_env("SO_PRIMARY_PORT"))
REPLICA_PORT = int(_env("SO_REPLICA_PORT"))
PGBOUNCER_PORT = int(_env("SO_PGBOUNCER_PORT"))
PG_BINDIR = _env("SO_PG_BINDIR")
PG_USER = _env("SO_PG_USER")
REPLICA_DATA = _env("SO_REPLICA_DATA")
REPLICA_LOG = _env("SO_REPLICA_LOG")
PRIMARY_DATA = _env("SO_PRIMARY_DATA")
PRIMARY_LOG = _env("SO_PRIMARY_LOG")

INSTANCES = {"crm1", "crm2"}
LSN_RE = re.compile(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")
RUN = uuid.uuid4().hex[:8]  # makes this run's identifiers unique
# PostgreSQL must not run as root: as root, pg_ctl runs as postgres (as in scripts/lib.sh).
AS_PG_OWNER = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


# ---------------------------------------------------------------------------
# HTTP

class Response(collections.namedtuple("Response", "status headers body elapsed")):
    """headers: dict with lower-cased names. body: parsed JSON if JSON, else bytes."""

    def h(self, name):
        return self.headers.get(name.lower())

    @property
    def served_by(self):
        return self.h("X-Served-By")

    @property
    def read_from(self):
        return self.h("CRM-Read-From")

    @property
    def write_lsn(self):
        return self.h("CRM-Write-LSN")

    def __str__(self):
        hdrs = {k: v for k, v in self.headers.items()
                if k.startswith("crm-") or k in ("x-served-by", "content-type")}
        body = self.body
        if isinstance(body, dict):
            body = json.dumps(body)[:400]
        return "HTTP %d %s %r" % (self.status, hdrs, body)


def request(method, path, body=None, headers=None, port=None, key=ADMIN_KEY, timeout=30.0):
    """One request on a fresh connection (so HAProxy balances every request)."""
    port = PROXY_PORT if port is None else port
    hdrs = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
        hdrs["Content-Length"] = str(len(data))
    if key is not None:
        hdrs["Authorization"] = "Bearer " + key
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        elapsed = time.monotonic() - t0
        out_headers = {k.lower(): v for k, v in resp.getheaders()}
        parsed = raw
        if raw and "json" in out_headers.get("content-type", ""):
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except ValueError:
                pass
        return Response(resp.status, out_headers, parsed, elapsed)
    finally:
        conn.close()


def min_lsn(lsn):
    return {"CRM-Min-LSN": lsn}


def lsn_int(text):
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


# ---------------------------------------------------------------------------
# PostgreSQL and PgBouncer

def psql(port, sql, db="crm"):
    """Rows of one statement as dicts (psql unaligned, tab-separated, header kept)."""
    argv = [os.path.join(PG_BINDIR, "psql"), "-X", "-q", "-A", "-F", "\t", "-P", "footer=off",
            "-h", HOST, "-p", str(port), "-U", PG_USER, "-d", db, "-v", "ON_ERROR_STOP=1",
            "-c", sql]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise AssertionError("psql -p %d -d %s -c %r failed: %s" % (port, db, sql, p.stderr))
    lines = p.stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def scalar(port, sql, db="crm"):
    rows = psql(port, sql, db)
    if len(rows) != 1 or len(rows[0]) != 1:
        raise AssertionError("%r: expected one value, got %r" % (sql, rows))
    return next(iter(rows[0].values()))


def pgbouncer_show(what):
    return psql(PGBOUNCER_PORT, "SHOW " + what, db="pgbouncer")


def pg_ctl(data, log, action):
    argv = AS_PG_OWNER + [os.path.join(PG_BINDIR, "pg_ctl"), "-D", data, "-w", "-t", "30"]
    if action == "stop":
        argv += ["-m", "fast", "stop"]
    else:
        argv += ["-l", log, "start"]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("pg_ctl %s of %s failed: %s" % (action, data, p.stderr))


def pg_ctl_replica(action):
    pg_ctl(REPLICA_DATA, REPLICA_LOG, action)


@contextlib.contextmanager
def replay_paused():
    """WAL replay on the replica paused (and confirmed paused) for the block."""
    psql(REPLICA_PORT, "SELECT pg_wal_replay_pause()")
    try:
        deadline = time.monotonic() + 10
        while scalar(REPLICA_PORT, "SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise AssertionError("replay did not pause")
            time.sleep(0.05)
        yield
    finally:
        psql(REPLICA_PORT, "SELECT pg_wal_replay_resume()")


def replica_running():
    return os.path.exists(os.path.join(REPLICA_DATA, "postmaster.pid"))


def wait_replica_streaming(timeout=20.0):
    """Until the primary reports a streaming standby and the replica has
    replayed everything the primary had written when we asked."""
    deadline = time.monotonic() + timeout
    target = lsn_int(scalar(PRIMARY_PORT, "SELECT pg_current_wal_lsn()"))
    last = None
    while time.monotonic() < deadline:
        try:
            n = scalar(PRIMARY_PORT,
                       "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            replay = scalar(REPLICA_PORT, "SELECT pg_last_wal_replay_lsn()")
            last = (n, replay)
            if n == "1" and replay and lsn_int(replay) >= target:
                return
        except AssertionError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError("replica not streaming/caught up within %.0f s: %r" % (timeout, last))


# ---------------------------------------------------------------------------
# Writes

def email(tag):
    return "so-%s-%s@example.com" % (RUN, tag)


def interaction(email_addr, external_id, **extra):
    body = {"identifiers": [{"kind": "email", "value": email_addr}],
            "source": "scaleout", "external_id": external_id,
            "channel": "web", "type": "purchase", "occurred_at": "2026-11-20T15:04:05Z",
            "amount": 10, "currency": "EUR"}
    body.update(extra)
    return body


def resolve(email_addr, first_name=None):
    body = {"identifiers": [{"kind": "email", "value": email_addr}], "source": "scaleout"}
    if first_name is not None:
        body["traits"] = {"first_name": first_name}
    return request("POST", "/v1/customers:resolve", body)


def set_first_name(customer_id, name):
    return request("PATCH", "/v1/customers/%s/traits" % customer_id,
                   {"source": "scaleout", "traits": {"first_name": name}})


def lookup_path(email_addr):
    return "/v1/customers?" + urllib.parse.urlencode({"email": email_addr},
                                                     quote_via=urllib.parse.quote)


# ---------------------------------------------------------------------------

def setUpModule():
    # Both instances must be in HAProxy's rotation before the tests start.
    deadline = time.monotonic() + 15
    seen = set()
    while time.monotonic() < deadline and seen != INSTANCES:
        try:
            r = request("GET", "/health", key=None, timeout=2)
            if r.status == 200 and r.served_by:
                seen.add(r.served_by)
        except OSError:
            pass
        time.sleep(0.05)
    if seen != INSTANCES:
        raise RuntimeError("HAProxy did not reach both instances within 15 s: saw %r" % seen)
    wait_replica_streaming()


class ScaleOutTests(unittest.TestCase):
    maxDiff = None

    # --- helpers ----------------------------------------------------------
    def assertWrite(self, r, status):
        self.assertEqual(r.status, status, str(r))
        self.assertIsNotNone(r.write_lsn, "write without CRM-Write-LSN: %s" % (r,))
        self.assertRegex(r.write_lsn, LSN_RE, str(r))
        return r.write_lsn

    def assertRead(self, r, status, read_from=None):
        self.assertEqual(r.status, status, str(r))
        self.assertIn(r.read_from, ("replica", "primary"),
                      "replica-eligible read without a valid CRM-Read-From: %s" % (r,))
        if read_from is not None:
            self.assertEqual(r.read_from, read_from, str(r))
        return r.body

    def assertProfile(self, r, customer_id, email_addr=None, first_name=None, count=None,
                      read_from=None):
        body = self.assertRead(r, 200, read_from)
        self.assertEqual(body.get("customer_id"), customer_id, str(r))
        if email_addr is not None:
            self.assertIn(email_addr, [i.get("value") for i in body.get("identifiers", [])],
                          str(r))
        if first_name is not None:
            self.assertEqual(body.get("traits", {}).get("first_name"), first_name, str(r))
        if count is not None:
            self.assertEqual(body.get("aggregates", {}).get("interaction_count"), count, str(r))
        return body

    def wait_visible_on_replica(self, customer_id, first_name, timeout=10.0):
        """Poll a header-less profile read until the replica answers with it."""
        deadline = time.monotonic() + timeout
        r = None
        while time.monotonic() < deadline:
            r = request("GET", "/v1/customers/" + customer_id)
            if (r.status == 200 and r.read_from == "replica"
                    and r.body.get("traits", {}).get("first_name") == first_name):
                return r
            time.sleep(0.05)
        self.fail("replica did not serve %s with first_name %r within %.0f s; last: %s"
                  % (customer_id, first_name, timeout, r))

    # --- (a) --------------------------------------------------------------
    def test_a_proxy_reaches_both_instances(self):
        seen = collections.Counter()
        for _ in range(20):
            r = request("GET", "/health", key=None)
            self.assertEqual(r.status, 200, str(r))
            seen[r.served_by] += 1
        self.assertEqual(set(seen), INSTANCES, seen)
        # Round-robin: sequential requests alternate.
        self.assertGreaterEqual(min(seen.values()), 8, seen)
        # Authenticated API traffic is balanced too.
        seen_api = set()
        for _ in range(6):
            r = request("GET", "/v1/admin/identifier-limits")
            self.assertEqual(r.status, 200, str(r))
            seen_api.add(r.served_by)
        self.assertEqual(seen_api, INSTANCES)
        # The header comes from the proxy, not from the instances.
        for port in CRM_PORTS:
            r = request("GET", "/health", key=None, port=port)
            self.assertEqual(r.status, 200, str(r))
            self.assertIsNone(r.served_by, str(r))

    # --- (b) --------------------------------------------------------------
    def test_b_writes_return_write_lsn(self):
        before = lsn_int(scalar(PRIMARY_PORT, "SELECT pg_current_wal_lsn()"))
        r = resolve(email("b"), first_name="B0")
        lsn1 = self.assertWrite(r, 201)
        after = lsn_int(scalar(PRIMARY_PORT, "SELECT pg_current_wal_insert_lsn()"))
        # A real position of the primary's WAL, at or after the write.
        self.assertGreater(lsn_int(lsn1), before, "CRM-Write-LSN %s is not after the "
                           "primary's LSN before the write (%X)" % (lsn1, before))
        self.assertLessEqual(lsn_int(lsn1), after, "CRM-Write-LSN %s is beyond the primary's "
                             "insert LSN after the write (%X)" % (lsn1, after))
        cid = r.body["customer_id"]
        lsns = [lsn1]
        served = {r.served_by}
        for i in range(4):
            r = request("POST", "/v1/interactions",
                        {"customer_id": cid, "source": "scaleout", "external_id": "b-%s-%d" % (RUN, i),
                         "channel": "store", "type": "purchase",
                         "occurred_at": "2026-11-20T15:04:05Z", "amount": 5, "currency": "EUR"})
            lsns.append(self.assertWrite(r, 201))
            served.add(r.served_by)
            r = set_first_name(cid, "B%d" % (i + 1))
            lsns.append(self.assertWrite(r, 200))
            served.add(r.served_by)
        self.assertEqual(served, INSTANCES, "writes should be balanced over both instances")
        values = [lsn_int(x) for x in lsns]
        self.assertEqual(values, sorted(values),
                         "successive writes must have non-decreasing LSNs: %r" % lsns)
        self.assertLess(values[0], values[-1], lsns)

    # --- (c) --------------------------------------------------------------
    def test_c_read_your_writes_through_the_proxy(self):
        iterations = 30
        read_from = collections.Counter()
        read_served = collections.Counter()
        cross_instance = 0
        for i in range(iterations):
            addr = email("c%d" % i)
            # 1. a new customer by interaction, read back by id
            w = request("POST", "/v1/interactions", interaction(addr, "c-%s-%d-1" % (RUN, i)))
            lsn = self.assertWrite(w, 201)
            cid = w.body["customer_id"]
            r = request("GET", "/v1/customers/" + cid, headers=min_lsn(lsn))
            self.assertProfile(r, cid, email_addr=addr, count=1)
            reads = [(w, r)]
            # 2. an update of an existing row, read back by identifier lookup
            w = set_first_name(cid, "C%d-a" % i)
            lsn = self.assertWrite(w, 200)
            w = set_first_name(cid, "C%d-b" % i)
            lsn = self.assertWrite(w, 200)
            r = request("GET", lookup_path(addr), headers=min_lsn(lsn))
            self.assertProfile(r, cid, first_name="C%d-b" % i)
            reads.append((w, r))
            # 3. a second interaction, read back on the timeline
            w = request("POST", "/v1/interactions", interaction(addr, "c-%s-%d-2" % (RUN, i),
                                                                type="return"))
            lsn = self.assertWrite(w, 201)
            r = request("GET", "/v1/customers/%s/interactions" % cid, headers=min_lsn(lsn))
            body = self.assertRead(r, 200)
            self.assertEqual(sorted(it["external_id"] for it in body.get("items", [])),
                             ["c-%s-%d-1" % (RUN, i), "c-%s-%d-2" % (RUN, i)], str(r))
            reads.append((w, r))
            for w, r in reads:
                read_from[r.read_from] += 1
                read_served[r.served_by] += 1
                if w.served_by != r.served_by:
                    cross_instance += 1
        total = sum(read_from.values())
        sys.stderr.write("  read-your-writes: %d reads, from %s, served by %s, %d written on "
                         "one instance and read on the other\n"
                         % (total, dict(read_from), dict(read_served), cross_instance))
        self.assertEqual(set(read_served), INSTANCES, read_served)
        self.assertGreater(cross_instance, 0)
        # On loopback the replica replays within milliseconds: most reads with
        # CRM-Min-LSN should be answered by it, else the replica is never used.
        self.assertGreaterEqual(read_from["replica"], total // 2,
                                "too few reads served by the replica: %s" % dict(read_from))

    # --- (d) --------------------------------------------------------------
    def test_d_paused_replay_routes_min_lsn_reads_to_primary(self):
        # A customer the replica knows, with first_name "before".
        old_addr = email("d-old")
        r = resolve(old_addr, first_name="before")
        self.assertWrite(r, 201)
        old_id = r.body["customer_id"]
        self.wait_visible_on_replica(old_id, "before")

        with replay_paused():

            new_addr = email("d-new")
            r = resolve(new_addr, first_name="new")
            new_lsn = self.assertWrite(r, 201)
            new_id = r.body["customer_id"]
            r = set_first_name(old_id, "after")
            old_lsn = self.assertWrite(r, 200)
            replay = scalar(REPLICA_PORT, "SELECT pg_last_wal_replay_lsn()")
            self.assertLess(lsn_int(replay), lsn_int(new_lsn),
                            "replica replayed past the write while paused")

            served = set()
            for _ in range(4):  # round-robin: both instances, twice
                # With CRM-Min-LSN: the write is seen, from the primary.
                r = request("GET", "/v1/customers/" + new_id, headers=min_lsn(new_lsn))
                self.assertProfile(r, new_id, email_addr=new_addr, first_name="new",
                                   read_from="primary")
                self.assertLess(r.elapsed, 3.0, "the LSN wait must be bounded: %s" % (r,))
                served.add(r.served_by)
                r = request("GET", "/v1/customers/" + old_id, headers=min_lsn(old_lsn))
                self.assertProfile(r, old_id, first_name="after", read_from="primary")
                served.add(r.served_by)
                r = request("GET", lookup_path(new_addr), headers=min_lsn(new_lsn))
                self.assertProfile(r, new_id, read_from="primary")
                served.add(r.served_by)
                # Without it: the replica answers, and it has not seen the writes.
                r = request("GET", "/v1/customers/" + old_id)
                self.assertProfile(r, old_id, first_name="before", read_from="replica")
                served.add(r.served_by)
                r = request("GET", "/v1/customers/" + new_id)
                self.assertEqual(r.status, 404, "new customer visible on a paused replica? %s" % (r,))
                self.assertEqual(r.read_from, "replica", str(r))
                served.add(r.served_by)
                r = request("GET", lookup_path(new_addr))
                self.assertEqual(r.status, 404, str(r))
                self.assertEqual(r.read_from, "replica", str(r))
            self.assertEqual(served, INSTANCES)

        # Replay resumed: the replica catches up and serves the writes.
        self.wait_visible_on_replica(old_id, "after")
        r = self.wait_visible_on_replica(new_id, "new")
        self.assertProfile(r, new_id, email_addr=new_addr)
        r = request("GET", "/v1/customers/" + new_id, headers=min_lsn(new_lsn))
        self.assertProfile(r, new_id, first_name="new", read_from="replica")

    # --- (d') segment members and KPIs are routed the same way -------------
    def test_d2_paused_replay_segment_members_and_kpis(self):
        marker = "seg-" + RUN
        r = request("POST", "/v1/segments",
                    {"name": "scaleout " + marker,
                     "rule": {"field": "traits.first_name", "op": "eq", "value": marker}})
        self.assertWrite(r, 201)
        seg = r.body["segment_id"]
        members = "/v1/segments/%s/customers?count=true" % seg
        kpis = "/v1/kpis?" + urllib.parse.urlencode(
            {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "segment_id": seg})
        # The replica knows the (empty) segment before replay is paused.
        deadline = time.monotonic() + 10
        while True:
            r = request("GET", members)
            if r.status == 200 and r.read_from == "replica":
                break
            self.assertLess(time.monotonic(), deadline, "segment never served by the replica: %s"
                            % (r,))
            time.sleep(0.05)
        self.assertEqual(r.body.get("count"), 0, str(r))

        with replay_paused():
            addr = email("d2")
            r = resolve(addr, first_name=marker)
            self.assertWrite(r, 201)
            cid = r.body["customer_id"]
            r = request("POST", "/v1/interactions", interaction(addr, "d2-" + RUN))
            lsn = self.assertWrite(r, 201)
            served = set()
            for _ in range(2):
                r = request("GET", members, headers=min_lsn(lsn))
                body = self.assertRead(r, 200, "primary")
                self.assertEqual([m["customer_id"] for m in body.get("items", [])], [cid], str(r))
                served.add(r.served_by)
                r = request("GET", members)
                body = self.assertRead(r, 200, "replica")
                self.assertEqual(body.get("items"), [], str(r))
                served.add(r.served_by)
                r = request("GET", kpis, headers=min_lsn(lsn))
                body = self.assertRead(r, 200, "primary")
                self.assertEqual(body.get("customers"), 1, str(r))
                served.add(r.served_by)
                r = request("GET", kpis)
                body = self.assertRead(r, 200, "replica")
                self.assertEqual(body.get("customers"), 0, str(r))
                served.add(r.served_by)
            self.assertEqual(served, INSTANCES)
        deadline = time.monotonic() + 10
        while True:
            r = request("GET", members, headers=min_lsn(lsn))
            if r.status == 200 and r.read_from == "replica":
                break
            self.assertLess(time.monotonic(), deadline, "replica did not catch up: %s" % (r,))
            time.sleep(0.05)
        self.assertEqual([m["customer_id"] for m in r.body.get("items", [])], [cid], str(r))

    # --- (e) --------------------------------------------------------------
    def test_e_replica_down_falls_back_to_primary(self):
        addr = email("e")
        r = resolve(addr, first_name="E")
        self.assertWrite(r, 201)
        cid = r.body["customer_id"]
        self.wait_visible_on_replica(cid, "E")

        pg_ctl_replica("stop")
        try:
            served = set()
            for i in range(6):
                r = request("GET", "/v1/customers/" + cid)
                self.assertProfile(r, cid, email_addr=addr, first_name="E", read_from="primary")
                self.assertLess(r.elapsed, 5.0, "fallback too slow: %s" % (r,))
                served.add(r.served_by)
                r = request("GET", lookup_path(addr))
                self.assertProfile(r, cid, read_from="primary")
                served.add(r.served_by)
                r = request("GET", "/v1/customers/%s/interactions" % cid)
                self.assertRead(r, 200, "primary")
            self.assertEqual(served, INSTANCES)
            # Writes go on, and read-your-writes holds through the primary.
            r = set_first_name(cid, "E2")
            lsn = self.assertWrite(r, 200)
            for _ in range(2):
                r = request("GET", "/v1/customers/" + cid, headers=min_lsn(lsn))
                self.assertProfile(r, cid, first_name="E2", read_from="primary")
        finally:
            if not replica_running():
                pg_ctl_replica("start")
        wait_replica_streaming()
        # Back in use once it is up again (on both instances).
        deadline = time.monotonic() + 15
        back = set()
        while time.monotonic() < deadline and back != INSTANCES:
            r = request("GET", "/v1/customers/" + cid)
            self.assertProfile(r, cid)
            if r.read_from == "replica" and r.body["traits"].get("first_name") == "E2":
                back.add(r.served_by)
            time.sleep(0.05)
        self.assertEqual(back, INSTANCES, "replica not used again after its restart")

    # --- (g) --------------------------------------------------------------
    def test_g_primary_down_replica_reads_go_on(self):
        # A key no instance has verified yet: its check must fall back to the
        # replica. Its read-audit rows wait in the servers until the primary
        # is back.
        r = request("POST", "/v1/admin/keys", {"name": "g-" + RUN, "role": "call_center"})
        self.assertEqual(r.status, 201, str(r))
        key, key_id = r.body["api_key"], r.body["key_id"]
        addr = email("g")
        r = resolve(addr, first_name="G")
        self.assertWrite(r, 201)
        cid = r.body["customer_id"]
        self.wait_visible_on_replica(cid, "G")
        wait_replica_streaming()
        pg_ctl(PRIMARY_DATA, PRIMARY_LOG, "stop")
        try:
            served = set()
            for _ in range(4):
                r = request("GET", "/v1/customers/" + cid, key=key)
                self.assertProfile(r, cid, first_name="G", read_from="replica")
                served.add(r.served_by)
            self.assertEqual(served, INSTANCES)
            r = set_first_name(cid, "G2")
            self.assertEqual(r.status, 503, str(r))
        finally:
            pg_ctl(PRIMARY_DATA, PRIMARY_LOG, "start")
        wait_replica_streaming(timeout=30)
        # The four reads are in the audit log once the servers could write them.
        deadline = time.monotonic() + 15
        n = None
        while time.monotonic() < deadline:
            n = scalar(PRIMARY_PORT, "SELECT count(*) FROM crm.audit_log WHERE key_id = '%s' "
                       "AND action = 'customer.read'" % key_id)
            if n == "4":
                break
            time.sleep(0.2)
        self.assertEqual(n, "4")
        self.assertWrite(set_first_name(cid, "G3"), 200)

    # --- (f) --------------------------------------------------------------
    def test_f_pgbouncer_is_in_the_path(self):
        config = {row["key"]: row["value"] for row in pgbouncer_show("CONFIG")}
        self.assertEqual(config.get("pool_mode"), "transaction")
        dbs = {row["name"]: row for row in pgbouncer_show("DATABASES")}
        self.assertIn("crm", dbs, dbs)
        self.assertIn(dbs["crm"].get("pool_mode"), ("", "transaction"), dbs["crm"])
        self.assertEqual(dbs["crm"].get("port"), str(PRIMARY_PORT), dbs["crm"])

        def xacts():
            stats = {row["database"]: row for row in pgbouncer_show("STATS")}
            self.assertIn("crm", stats, stats)
            return int(stats["crm"]["total_xact_count"])

        # Both instances are PgBouncer clients.
        clients = [c for c in pgbouncer_show("CLIENTS") if c.get("database") == "crm"]
        self.assertGreaterEqual(len(clients), 2, clients)

        before = xacts()
        writes = 10
        served = set()
        for i in range(writes):
            r = request("POST", "/v1/interactions", interaction(email("f%d" % i), "f-%s-%d" % (RUN, i)))
            self.assertWrite(r, 201)
            served.add(r.served_by)
        self.assertEqual(served, INSTANCES)
        # run.sh sets stats_period = 1: SHOW STATS totals lag by up to a second.
        deadline = time.monotonic() + 5
        after = xacts()
        while after - before < writes and time.monotonic() < deadline:
            time.sleep(0.2)
            after = xacts()
        self.assertGreaterEqual(after - before, writes,
                                "PgBouncer counted %d transactions for %d writes"
                                % (after - before, writes))
        # The primary only sees PgBouncer's server connections (plus this psql):
        # every crm backend's client address is one PgBouncer reports. Backends
        # first, so that a connection PgBouncer opens in between cannot count
        # against it; retried in case one closes in between.
        for attempt in range(3):
            backends = psql(PRIMARY_PORT,
                            "SELECT host(client_addr) AS addr, client_port AS port "
                            "FROM pg_stat_activity WHERE datname = 'crm' "
                            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
            pgb_ports = {s["local_addr"] + ":" + s["local_port"]
                         for s in pgbouncer_show("SERVERS") if s.get("database") == "crm"}
            foreign = [b for b in backends if b["addr"] + ":" + b["port"] not in pgb_ports]
            if backends and not foreign:
                break
            time.sleep(0.2)
        self.assertTrue(backends)
        self.assertEqual(foreign, [], "connections to the primary that bypass PgBouncer "
                         "(PgBouncer's: %s)" % sorted(pgb_ports))

# ---------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    loader = unittest.TestLoader()
    mod = sys.modules[__name__]
    suite = loader.loadTestsFromNames(argv, mod) if argv else loader.loadTestsFromModule(mod)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    failing = set()
    for test, _ in result.failures + result.errors:
        if hasattr(test, "test_case"):
            failing.add(test.test_case.id())
        elif isinstance(test, unittest.TestCase):
            failing.add(test.id())
    for test in result.unexpectedSuccesses:
        failing.add(test.id())
    passed = max(0, result.testsRun - len(failing) - len(result.skipped))
    sys.stderr.write("scaleout tests took %.1f s\n" % (time.monotonic() - t0))
    sys.stderr.flush()
    print("scaleout: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
