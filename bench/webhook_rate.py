#!/usr/bin/env python3
"""Webhook delivery rate: one server (--webhook-workers N) on CRM_DATABASE_URL,
a receiver on loopback (tests/e2e/test_activation.py's, which checks every
signature), 2,000 interaction.created events of 50 customers ingested in
batches of 100; prints how long until every one was received.

    CRM_BIN=build/crm-server CRM_DATABASE_URL=... python3 bench/webhook_rate.py 2
"""
import os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness, test_activation as ta
harness.SERVER = harness.extra_server("--webhook-allow-hosts", "127.0.0.1", "--webhook-poll-ms", "100", "--webhook-workers", sys.argv[1])
rec = ta.Receiver()
body = ta.must(ta.create_webhook(rec.url, event_types=["interaction.created"]), 201)
rec.secret = body["secret"]
N = 2000
cids = [ta.new_customer()[0] for _ in range(50)]
t0 = time.monotonic()
for b in range(N // 100):
    items = [harness.interaction(customer_id=cids[(b * 100 + i) % 50]) for i in range(100)]
    ta.must(harness.post("/v1/interactions:batch", {"items": items}), 200)
t1 = time.monotonic()
import threading
def mon():
    while True:
        time.sleep(2); print("  t=%.0f received %d" % (time.monotonic() - t0, len(rec.records)), flush=True)
threading.Thread(target=mon, daemon=True).start()
rec.wait_for(lambda rs: len(rs) >= N, timeout=300)
t2 = time.monotonic()
ok = sum(r["verified"] for r in rec.records)
print("workers %s: %d events ingested in %.1f s; all delivered %.1f s after the first; %.0f deliveries/s; verified %d" % (sys.argv[1], N, t1 - t0, t2 - t0, N / (t2 - t0), ok))
harness.request("DELETE", "/v1/webhooks/%s" % body["webhook_id"])
rec.stop(); harness.stop_server()
