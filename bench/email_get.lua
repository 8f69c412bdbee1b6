-- wrk: GET /v1/customers?email=... for the seeded emails bench-<n>@bench.example.
local n = tonumber(os.getenv("CRM_BENCH_CUSTOMERS") or "10000")
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/customers?email=bench-" .. (i % n) .. "%40bench.example")
end
