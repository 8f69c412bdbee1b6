-- wrk: POST /v1/interactions:batch with 100 interactions each (fresh keys), for seeded customers.
local n = tonumber(os.getenv("CRM_BENCH_CUSTOMERS") or "10000")
local counter = 0
local tid = 0
setup = function(thread)
  tid = tid + 1
  thread:set("tid", tid)
end
request = function()
  local items = {}
  for i = 1, 100 do
    counter = counter + 1
    items[i] = string.format(
      '{"identifiers":[{"kind":"email","value":"bench-%d@bench.example"}],"source":"wrkb-%s-%d",' ..
      '"external_id":"%d","channel":"web","type":"visit","occurred_at":"2026-11-20T10:00:00Z"}',
      counter % n, os.getenv("CRM_BENCH_RUN") or "x", tid or 0, counter)
  end
  return wrk.format("POST", "/v1/interactions:batch", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("CRM_BENCH_KEY")},
    '{"items":[' .. table.concat(items, ",") .. ']}')
end
