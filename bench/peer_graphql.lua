-- wrk: the profile read of bench/profile_get.lua asked of PostGraphile as one
-- GraphQL query (customer, identifiers, traits, interaction stats, needs),
-- for ids read from ids.txt, round-robin per thread.
local ids = {}
for line in io.lines(os.getenv("CRM_BENCH_IDS") or "ids.txt") do ids[#ids + 1] = line end
local query = "query($id: UUID!) { customerByCustomerId(customerId: $id) { customerId createdAt mergedInto "
  .. "identifiersByCustomerId { nodes { kind namespace value source createdAt } } "
  .. "traitsByCustomerId { nodes { name value source updatedAt } } "
  .. "interactionStatsByCustomerId { nodes { channel type currency n amount cost firstAt lastAt } } "
  .. "customerNeedsByCustomerId { nodes { need n firstAt lastAt } } } }"
local i = 0
request = function()
  i = i + 1
  local body = '{"query":"' .. query .. '","variables":{"id":"' .. ids[(i % #ids) + 1] .. '"}}'
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json"}, body)
end
