#!/usr/bin/env python3
"""Webhook delivery benchmarks (issue 15): rate and lag.

The receiver is crm-bench-ceiling (bench/ceiling.c: a bare libmicrohttpd
server answering 200 to anything), so what is measured is the server's
delivery path, not a receiver; the signatures themselves are checked by
tests/e2e/test_activation.py's receiver. Figures come from the database
(crm.webhook_deliveries: event_at, delivered_at), not from client clocks.

  rate: EVENTS interaction.created events of CUSTOMERS customers are stored
        by a server that does not deliver (--webhook-workers 0); then a
        second server with WORKERS delivery workers starts; prints the
        deliveries per second between the first and the last delivery.
  feed: PAGES pages of GET /v1/events?limit=LIMIT from the start of the
        feed (keep-alive); prints events/s and ms per page.
  lag:  one server with WORKERS workers; RATE events/s are ingested for
        SECONDS s (batches every 100 ms); prints p50/p99/max of
        delivered_at - event_at.

    CRM_BIN=build/crm-server CRM_DATABASE_URL=... CRM_CEILING=build/bench/crm-bench-ceiling \\
        python3 bench/webhook_rate.py rate [WORKERS=2] [EVENTS=10000] [CUSTOMERS=2000]
    ... python3 bench/webhook_rate.py lag [WORKERS=2] [RATE=500] [SECONDS=20] [CUSTOMERS=2000]
    ... python3 bench/webhook_rate.py feed 0 [LIMIT=1000] [PAGES=50]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402


def arg(i, default):
    return int(sys.argv[i]) if len(sys.argv) > i else default


def must(r, status):
    if r.status != status:
        raise SystemExit("expected %d, got %d: %r" % (status, r.status, r.body))
    return r.body


def server(workers):
    return harness.extra_server("--webhook-allow-hosts", "127.0.0.1", "--webhook-poll-ms", "100",
                                "--webhook-workers", str(workers), "--rate-limit", "0")


def customers(n):
    ids = []
    for start in range(0, n, 200):
        items = [{"identifiers": [{"kind": "email", "value": "whb-%s-%d@bench.example"
                                   % (RUN, k)}], "source": "whb", "external_id": "c-%s-%d"
                  % (RUN, k), "channel": "web", "type": "page_view", "occurred_at": "2026-12-01T10:00:00Z"}
                 for k in range(start, min(n, start + 200))]
        body = must(harness.post("/v1/interactions:batch", {"items": items}), 200)
        bad = [r for r in body["results"] if "customer_id" not in r]
        if bad:
            raise SystemExit("seeding failed: %r" % bad[:3])
        ids += [r["customer_id"] for r in body["results"]]
    return ids


def ingest(cids, first, count):
    items = [{"customer_id": cids[k % len(cids)], "source": "whb", "external_id": "e-%s-%d"
              % (RUN, k), "channel": "web", "type": "page_view", "occurred_at": "2026-12-01T10:00:00Z"}
             for k in range(first, first + count)]
    must(harness.post("/v1/interactions:batch", {"items": items}), 200)


def pending(webhook):
    return int(harness.sql("SELECT count(*) FROM crm.webhook_deliveries WHERE webhook_id = '%s' "
                           "AND status <> 'delivered'" % webhook))


def wait_delivered(webhook, expected, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = int(harness.sql("SELECT count(*) FROM crm.webhook_deliveries WHERE webhook_id = "
                               "'%s' AND status = 'delivered'" % webhook))
        if done >= expected:
            return
        time.sleep(0.2)
    raise SystemExit("only %d of %d delivered within %d s" % (done, expected, timeout))


def main():
    global RUN
    mode = sys.argv[1] if len(sys.argv) > 1 else "rate"
    workers = arg(2, 2)
    RUN = harness.uid()
    port = harness.free_port()
    receiver = subprocess.Popen([os.environ["CRM_CEILING"], str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = None
    try:
        if mode == "feed":
            limit, pages = arg(3, 1000), arg(4, 50)
            srv = harness.SERVER = server(0)
            cursor, n, t0 = None, 0, time.monotonic()
            for _ in range(pages):
                path = "/v1/events?limit=%d" % limit + ("&after=" + cursor if cursor else "")
                body = must(harness.get(path), 200)
                n += len(body["items"])
                cursor = body["next_cursor"]
                if len(body["items"]) < limit:
                    break
            took = time.monotonic() - t0
            print("feed read: %d events in %.2f s: %.0f events/s (limit %d, %.1f ms per page)"
                  % (n, took, n / took, limit, 1000 * took / max(1, pages)))
            return
        if mode == "rate":
            events, ncust = arg(3, 10000), arg(4, 2000)
            srv = harness.SERVER = server(0)
            cids = customers(ncust)
            hook = must(harness.post("/v1/webhooks", {
                "url": "http://127.0.0.1:%d/hook" % port,
                "event_types": ["interaction.created"]}), 201)["webhook_id"]
            for first in range(0, events, 200):
                ingest(cids, first, min(200, events - first))
            srv.stop()
            t0 = time.monotonic()
            srv = harness.SERVER = server(workers)
            wait_delivered(hook, events, 600)
            wall = time.monotonic() - t0
            span = float(harness.sql(
                "SELECT extract(epoch FROM max(delivered_at) - min(delivered_at)) FROM "
                "crm.webhook_deliveries WHERE webhook_id = '%s'" % hook))
            print("webhook rate: %d workers, %d events of %d customers: %.0f deliveries/s "
                  "(first to last delivery %.2f s; %.1f s from server start)"
                  % (workers, events, ncust, events / span, span, wall))
        else:
            rate, seconds, ncust = arg(3, 500), arg(4, 20), arg(5, 2000)
            srv = harness.SERVER = server(workers)
            cids = customers(ncust)
            hook = must(harness.post("/v1/webhooks", {
                "url": "http://127.0.0.1:%d/hook" % port,
                "event_types": ["interaction.created"]}), 201)["webhook_id"]
            per_tick = max(1, rate // 10)
            start = time.monotonic()
            sent = 0
            for tick in range(seconds * 10):
                ingest(cids, sent, per_tick)
                sent += per_tick
                delay = start + (tick + 1) * 0.1 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            achieved = sent / (time.monotonic() - start)
            wait_delivered(hook, sent, 120)
            row = harness.sql(
                "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY x))::text || ' ' || "
                "round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY x))::text || ' ' || "
                "round(1000 * max(x))::text FROM (SELECT extract(epoch FROM delivered_at - event_at) "
                "AS x FROM crm.webhook_deliveries WHERE webhook_id = '%s') s" % hook)
            p50, p99, worst = row.split()
            print("webhook lag: %d workers, %d events at %.0f/s over %d s (%d customers): "
                  "p50 %s ms, p99 %s ms, max %s ms" % (workers, sent, achieved, seconds, ncust,
                                                       p50, p99, worst))
        harness.request("DELETE", "/v1/webhooks/%s" % hook)
    finally:
        if srv is not None:
            srv.stop()
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
