-- wrk script of the mixed read workload (bench/mixed.sh): readers over 10
-- organizations, each request a student detail (60%), a faculty detail (20%)
-- or a list page (20%, students or faculty), rows and pages drawn log-uniform
-- (rank r has weight ~1/r: a few hot rows, a long tail), as that
-- organization's admin. Counts X-Cache per kind, told from the body.
--
-- Environment: TOKENS (comma-separated, one per organization), STUDENTS and
-- FACULTY ("lo-hi,lo-hi,...": each organization's id range).
local function split(s, sep)
  local out = {}
  for part in string.gmatch(s, "[^" .. sep .. "]+") do out[#out + 1] = part end
  return out
end

local tokens = split(os.getenv("TOKENS") or "", ",")
local function ranges(name)
  local out = {}
  for _, r in ipairs(split(os.getenv(name) or "", ",")) do
    local lo, hi = string.match(r, "(%d+)-(%d+)")
    out[#out + 1] = { tonumber(lo), tonumber(hi) }
  end
  return out
end
local students, faculty = ranges("STUDENTS"), ranges("FACULTY")

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

-- Per thread: hits and totals per kind, as flat globals (this wrk crashes
-- copying a nested table between threads in `done`).
local KINDS = { "student", "faculty", "list" }
for _, kind in ipairs(KINDS) do
  _G[kind .. "_hits"], _G[kind .. "_total"] = 0, 0
end

local function rank(n)
  -- log-uniform over 1..n
  local r = math.floor(math.exp(math.random() * math.log(n + 1)))
  if r < 1 then r = 1 end
  if r > n then r = n end
  return r
end

function init(args)
  math.randomseed(os.time() + (id or 0) * 7919)
end

function request()
  local org = math.random(1, #tokens)
  local headers = { ["Authorization"] = "Bearer " .. tokens[org] }
  local u = math.random()
  local path
  if u < 0.6 then
    local lo, hi = students[org][1], students[org][2]
    path = "/api/students/" .. (lo + rank(hi - lo + 1) - 1) .. "/"
  elseif u < 0.8 then
    local lo, hi = faculty[org][1], faculty[org][2]
    path = "/api/faculty/" .. (lo + rank(hi - lo + 1) - 1) .. "/"
  elseif u < 0.9 then
    path = "/api/students/?page=" .. rank(50)
  else
    path = "/api/faculty/?page=" .. rank(10)
  end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  local kind
  if string.sub(body, 1, 9) == '{"count":' then
    kind = "list"
  elseif string.find(body, '"roll_number"', 1, true) then
    kind = "student"
  elseif string.find(body, '"employee_id"', 1, true) then
    kind = "faculty"
  else
    return
  end
  _G[kind .. "_total"] = _G[kind .. "_total"] + 1
  if headers["x-cache"] == "HIT" or headers["X-Cache"] == "HIT" then
    _G[kind .. "_hits"] = _G[kind .. "_hits"] + 1
  end
end

function done(summary, latency, requests)
  for _, kind in ipairs(KINDS) do
    local hits, total = 0, 0
    for _, t in ipairs(threads) do
      hits = hits + t:get(kind .. "_hits")
      total = total + t:get(kind .. "_total")
    end
    io.write(string.format("kind %s %d %d\n", kind, hits, total))
  end
end
