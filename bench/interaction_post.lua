-- wrk: POST /v1/interactions, each with a fresh (source, external_id), for seeded customers.
local n = tonumber(os.getenv("CRM_BENCH_CUSTOMERS") or "10000")
local counter = 0
local tid = 0
setup = function(thread)
  tid = tid + 1
  thread:set("tid", tid)
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"identifiers":[{"kind":"email","value":"bench-%d@bench.example"}],"source":"wrk-%s-%d",' ..
    '"external_id":"%d","channel":"web","type":"purchase","occurred_at":"2026-11-20T10:00:00Z",' ..
    '"amount":12.5,"currency":"EUR"}', counter % n, os.getenv("CRM_BENCH_RUN") or "x", tid or 0, counter)
  return wrk.format("POST", "/v1/interactions", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("CRM_BENCH_KEY")}, body)
end
