-- wrk: GET /v1/customers/{id}/summary (the agent's summary, docs/summary.md)
-- for ids read from ids.txt (one per line), round-robin per thread, as
-- profile_get.lua does for the profile.
local ids = {}
for line in io.lines(os.getenv("CRM_BENCH_IDS") or "ids.txt") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/customers/" .. ids[(i % #ids) + 1] .. "/summary")
end
