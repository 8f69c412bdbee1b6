-- wrk: POST /v1/interactions, each with a fresh (source, external_id), for seeded customers.
local n = tonumber(os.getenv("CRM_BENCH_CUSTOMERS") or "10000")
local counter = 0
-- Every wrk thread gets a source of its own ("tag", set from the main Lua
-- state): the run, the second this wrk started and the thread's number. A
-- top-level local here would shadow it in the threads (that made all threads,
-- and every connection-count row of a run, send the same keys: about half
-- the POSTs were answered as duplicates).
local threads = 0
local started = os.time()
setup = function(thread)
  threads = threads + 1
  thread:set("tag", string.format("%s-%d-%d", os.getenv("CRM_BENCH_RUN") or "x", started, threads))
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"identifiers":[{"kind":"email","value":"bench-%d@bench.example"}],"source":"wrk-%s",' ..
    '"external_id":"%d","channel":"web","type":"purchase","occurred_at":"2026-11-20T10:00:00Z",' ..
    '"amount":12.5,"currency":"EUR"}', counter % n, tag, counter)
  return wrk.format("POST", "/v1/interactions", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("CRM_BENCH_KEY")}, body)
end
