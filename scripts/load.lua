-- wrk script for scripts/load-test.sh: a mix of locally answered reads and pass-throughs.
local auth = '{"script_name": "sgcache", "script_key": "test-key"}'
local page = '"return_only": "active", "paging": {"entities_per_page": %d, "current_page": %d}'
local bodies = {
  -- find by id (local)
  '{"method_name": "read", "params": [' .. auth .. ', {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [%d]}]}, "return_fields": ["code", "project", "sg_status_list"], ' .. page .. '}]}',
  -- a 100-entity page with links (local)
  '{"method_name": "read", "params": [' .. auth .. ', {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": "code", "relation": "starts_with", "values": ["sh0"]}]}, "return_fields": ["code", "project", "description", "updated_at"], ' .. page .. '}]}',
  -- a deep filter (local)
  '{"method_name": "read", "params": [' .. auth .. ', {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": "project.Project.name", "relation": "is", "values": ["Mock Project"]}, {"path": "id", "relation": "less_than", "values": [%d]}]}, "return_fields": ["code"], ' .. page .. '}]}',
  -- pass-through: an uncached type and a schema call with a project
  '{"method_name": "read", "params": [' .. auth .. ', {"type": "Version", "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"], ' .. page .. '}]}',
  '{"method_name": "schema_field_read", "params": [' .. auth .. ', {"type": "Shot", "field_name": "code", "project": {"type": "Project", "id": 1}}]}',
}
local n = 0
request = function()
  n = n + 1
  local i = (n % 10)
  local kind = 1
  if i < 5 then kind = 1 elseif i < 7 then kind = 2 elseif i < 8 then kind = 3 elseif i < 9 then kind = 4 else kind = 5 end
  local body
  if kind == 1 then body = string.format(bodies[1], 1 + (n * 7919) % 20000, 1, 1)
  elseif kind == 2 then body = string.format(bodies[2], 100, 1 + (n % 50))
  elseif kind == 3 then body = string.format(bodies[3], 1 + (n % 20000), 50, 1)
  elseif kind == 4 then body = string.format(bodies[4], 10, 1)
  else body = bodies[5] end
  return wrk.format("POST", "/api3/json", {["Content-Type"] = "application/json; charset=utf-8"}, body)
end

local errors = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"exception"') then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("bad response: " .. status .. " " .. string.sub(body, 1, 200) .. "\n") end
  end
end

done = function(summary, latency, requests)
  io.write(string.format("requests: %d in %.1f s = %.0f req/s\n", summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("transport errors: connect %d, read %d, write %d, timeout %d, status %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
end
