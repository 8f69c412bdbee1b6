"""End-to-end tests of currencies (docs/value.md, "Currencies"): the dated
rates of GET/PUT /v1/settings/fx-rates convert amounts in other currencies
than the base one (EUR here) in the profile's historic value, the value
run's inputs and KPIs, each at the rate valid at the interaction's time; an
amount without a rate is not counted and is reported, and counts once a rate
covers it. Figures are computed by hand in the comments.

The suite uses CHF and SEK, which no other suite uses, and removes its rates
at the end: the database may be shared with the other suites. Run:
CRM_BIN=build/crm-server CRM_DATABASE_URL=... python3 tests/e2e/test_fx.py
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_value  # noqa: E402
from harness import get, query, request, uid  # noqa: E402
from test_value import create_customer, ev, ingest_events, must, recompute, value_of  # noqa: E402,E501


def setUpModule():
    harness.start_server()
    test_value.make_fit_population()


def tearDownModule():
    harness.stop_server()


def put_rates(rates, status=200):
    return must(request("PUT", "/v1/settings/fx-rates", {"rates": rates}), status)


def rate(currency, valid_from, value):
    return {"currency": currency, "valid_from": valid_from, "rate": value}


class FxTests(harness.CrmTestCase):
    def setUp(self):
        self.marker = "fx-" + uid()
        self.added = []
        self.addCleanup(self.remove_rates)

    def put(self, *rates):
        self.added += [(r["currency"], r["valid_from"]) for r in rates]
        return put_rates(list(rates))

    def remove_rates(self):
        if self.added:
            put_rates([rate(c, d, None) for c, d in sorted(set(self.added))])

    def customer(self):
        """A: EUR 100 (cost 10) on 2025-03-01; CHF 200 on 2025-03-10; CHF 100
        on 2025-08-01; a CHF 50 return on 2025-08-05; a CHF 20 cost on
        2025-08-06; SEK 1000 on 2025-09-01; CHF 80 on 2024-12-15."""
        cid = create_customer(marker=self.marker)
        ingest_events(cid, [
            ev("purchase", "2025-03-01T10:00:00Z", amount=100, cost=10),
            ev("purchase", "2025-03-10T10:00:00Z", amount=200, currency="CHF"),
            ev("purchase", "2025-08-01T10:00:00Z", amount=100, currency="CHF"),
            ev("return", "2025-08-05T10:00:00Z", amount=50, currency="CHF"),
            ev("support_call", "2025-08-06T10:00:00Z", cost=20, currency="CHF"),
            ev("purchase", "2025-09-01T10:00:00Z", amount=1000, currency="SEK"),
            ev("purchase", "2024-12-15T10:00:00Z", amount=80, currency="CHF")])
        return cid

    def assertNum(self, actual, expected, ctx=None):
        self.assertIsInstance(actual, (int, float), ctx)
        self.assertAlmostEqual(actual, expected, places=6, msg=ctx)

    def test_historic_value_converts_at_the_rate_of_the_day(self):
        # CHF 1.05 from 2025-01-01, 1.10 from 2025-07-01; no SEK rate, and
        # none for CHF before 2025
        self.put(rate("CHF", "2025-01-01", 1.05), rate("CHF", "2025-07-01", 1.1))
        cid = self.customer()
        recompute()
        v = value_of(cid)
        self.assertNum(v["revenue"], 420)      # 100 + 200 * 1.05 + 100 * 1.10
        self.assertNum(v["returns"], 55)       # 50 * 1.10
        self.assertNum(v["cost"], 32)          # 10 + 20 * 1.10
        self.assertNum(v["margin"], 333)       # 420 - 55 - 32
        self.assertEqual(v["currency"], "EUR")
        self.assertEqual(v["unconverted_interactions"], 2, v)  # SEK 1000, CHF of 2024-12-15
        # a rate that arrives counts what it covers, at once (no run)
        self.put(rate("SEK", "2025-01-01", 0.09), rate("CHF", "2024-12-01", 1))
        v = value_of(cid)
        self.assertNum(v["revenue"], 590)      # 420 + 1000 * 0.09 + 80 * 1
        self.assertNotIn("unconverted_interactions", v)
        # a changed rate changes what it covers: CHF from 2025-07-01 at 1.2
        self.put(rate("CHF", "2025-07-01", 1.2))
        v = value_of(cid)
        self.assertNum(v["revenue"], 600)      # 100 + 210 + 120 + 90 + 80
        self.assertNum(v["returns"], 60)       # 50 * 1.2
        self.assertNum(v["cost"], 34)          # 10 + 20 * 1.2
        self.assertNum(v["margin"], 506)       # 600 - 60 - 34
        # removed: not counted again, reported again
        put_rates([rate("SEK", "2025-01-01", None)])
        v = value_of(cid)
        self.assertNum(v["revenue"], 510)
        self.assertEqual(v["unconverted_interactions"], 1)

    def test_value_run_inputs_are_converted(self):
        self.put(rate("CHF", "2025-01-01", 1.05), rate("CHF", "2025-07-01", 1.1))
        cid = self.customer()
        try:
            # a dated live run shows the run's own inputs (value_inputs)
            recompute("2025-12-31T00:00:00Z", live=True)
            v = value_of(cid)
            self.assertNum(v["revenue"], 420)
            self.assertNum(v["returns"], 55)
            self.assertNum(v["cost"], 32)
            # purchase days: 03-01, 03-10, 08-01 (the SEK day and the CHF day of
            # 2024 have no rate: not counted)
            self.assertEqual(v["purchase_days"], 3)
            self.assertEqual(v["first_purchase_at"], "2025-03-01T00:00:00.000000Z")
            self.put(rate("SEK", "2025-01-01", 0.09), rate("CHF", "2024-12-01", 1))
            recompute("2025-12-31T00:00:00Z", live=True)
            v = value_of(cid)
            self.assertNum(v["revenue"], 590)
            self.assertEqual(v["purchase_days"], 5)
            self.assertEqual(v["first_purchase_at"], "2024-12-15T00:00:00.000000Z")
            self.assertEqual(v["last_purchase_at"], "2025-09-01T00:00:00.000000Z")
        finally:
            recompute()

    def kpis(self, segment):
        return must(get(query("/v1/kpis", {"from": "2025-08-01T00:00:00Z",
                                           "to": "2025-10-01T00:00:00Z",
                                           "segment_id": segment})), 200)

    def test_kpis_convert_and_count_what_they_cannot(self):
        self.put(rate("CHF", "2025-01-01", 1.05), rate("CHF", "2025-07-01", 1.1))
        self.customer()
        seg = must(request("POST", "/v1/segments", {
            "name": "e2e-fx-" + self.marker, "rule": test_value.marker_rule(self.marker)}),
            201)["segment_id"]
        self.addCleanup(lambda: request("DELETE", "/v1/segments/%s" % seg))
        k = self.kpis(seg)
        self.assertNum(k["revenue"], 110)      # CHF 100 * 1.10 (the SEK purchase: no rate)
        self.assertNum(k["cash_flow"], 33)     # 110 - 55 - 22
        self.assertEqual(k["unconverted_interactions"], 1)
        self.put(rate("SEK", "2025-08-15", 0.09))
        k = self.kpis(seg)
        self.assertNum(k["revenue"], 200)      # 110 + 1000 * 0.09
        self.assertNum(k["cash_flow"], 123)
        self.assertEqual(k["unconverted_interactions"], 0)

    def test_rates_document_and_validation(self):
        doc = self.put(rate("CHF", "2025-01-01", 1.05), rate("SEK", "2025-02-01", 0.0875))
        mine = [r for r in doc["rates"] if r["currency"] in ("CHF", "SEK")]
        self.assertEqual(doc["base_currency"], "EUR")
        self.assertEqual([(r["currency"], r["valid_from"], r["rate"]) for r in mine],
                         [("CHF", "2025-01-01", 1.05), ("SEK", "2025-02-01", 0.0875)])
        self.assertEqual(must(get("/v1/settings/fx-rates"), 200)["rates"], doc["rates"])
        audit = harness.sql("SELECT count(*) FROM crm.audit_log WHERE action = "
                            "'settings.fx_rates.changed' AND detail::text LIKE '%0.0875%'")
        self.assertNotEqual(audit, "0")
        for body, pointer in (
                ({"rates": [rate("EUR", "2025-01-01", 1)]}, "/rates"),   # the base currency
                ({"rates": [rate("chf", "2025-01-01", 1)]}, "/rates/0/currency"),
                ({"rates": [rate("CHF", "2025-02-30", 1)]}, "/rates/0/valid_from"),
                ({"rates": [rate("CHF", "2025-01-01", 0)]}, "/rates/0/rate"),
                ({"rates": [rate("CHF", "2025-01-01", "1.1")]}, "/rates/0/rate"),
                ({"rates": [{"currency": "CHF", "valid_from": "2025-01-01"}]}, "/rates/0/rate"),
                ({"rates": [dict(rate("CHF", "2025-01-01", 1), x=1)]}, "/rates/0/x"),
                ({"rates": [rate("CHF", "2025-01-01", 1), rate("CHF", "2025-01-01", 2)]},
                 "/rates/1"),
                ({"rates": [7]}, "/rates/0"),
                ({"rates": []}, "/rates"),
                ({}, "/rates"),
                ({"rates": [rate("CHF", "2025-01-01", 1)], "y": 1}, "/y")):
            with self.subTest(body=body):
                self.assertProblem(request("PUT", "/v1/settings/fx-rates", body), 422,
                                   "validation-failed", pointers=(pointer,))
        # marketing reads, only admin writes
        key = must(request("POST", "/v1/admin/keys", {"role": "marketing", "name": "fx-" + uid()}),
                   201)["api_key"]
        self.assertEqual(get("/v1/settings/fx-rates", key=key).status, 200)
        self.assertProblem(request("PUT", "/v1/settings/fx-rates",
                                   {"rates": [rate("CHF", "2025-01-01", 1)]}, key=key),
                           403, "forbidden")


if __name__ == "__main__":
    harness.main()
