#!/usr/bin/env python3
"""Seed benchmark customers through the batch API and write their ids.

usage: seed.py PORT COUNT IDS_PATH PREFIX EVERY
  Creates COUNT customers with emails PREFIX-<k>@bench.example, each with one
  purchase (amount 10 + k % 7 EUR), 500 per batch request, then looks up
  every EVERY-th one by email and writes its customer id, one per line, to
  IDS_PATH. The API key comes from CRM_SEED_KEY. Used by bench/run.sh and
  bench/profile.sh.
"""
import http.client
import json
import os
import sys


def main():
    port, n, ids_path, prefix, every = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                        sys.argv[4], max(1, int(sys.argv[5])))
    auth = {"Authorization": "Bearer " + os.environ["CRM_SEED_KEY"]}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for start in range(0, n, 500):
        items = [{"identifiers": [{"kind": "email", "value": "%s-%d@bench.example" % (prefix, k)}],
                  "source": "seed", "external_id": "seed-%d" % k, "channel": "store",
                  "type": "purchase", "occurred_at": "2026-01-01T10:00:00Z",
                  "amount": 10 + k % 7, "currency": "EUR"}
                 for k in range(start, min(n, start + 500))]
        c.request("POST", "/v1/interactions:batch", json.dumps({"items": items}),
                  dict(auth, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["failed"] == 0, body
    with open(ids_path, "w") as f:
        for k in range(0, n, every):
            c.request("GET", "/v1/customers?email=%s-%d%%40bench.example" % (prefix, k),
                      headers=auth)
            r = c.getresponse()
            body = json.loads(r.read())
            assert r.status == 200, body
            f.write(body["customer_id"] + "\n")


if __name__ == "__main__":
    main()
