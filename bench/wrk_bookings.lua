-- wrk script for bench/booking_throughput.py: POST /v1/bookings, each request a distinct slot.
-- Environment: SPACES_FILE (one space id per line), START_EPOCH (first slot, UTC), THREADS (wrk -t).
-- Request i of thread t books slot number t + i*THREADS: spaces round-robin, then 30 minutes later.

local threads = {}
local spaces = {}
for line in io.lines(os.getenv("SPACES_FILE")) do spaces[#spaces + 1] = line end
local start_epoch = tonumber(os.getenv("START_EPOCH"))
local stride = tonumber(os.getenv("THREADS"))

function setup(thread)
    thread:set("id", #threads)
    threads[#threads + 1] = thread
end

function init(args)
    sent, created, conflicts, other = 0, 0, 0, 0
end

function request()
    local i = id + sent * stride
    sent = sent + 1
    local space = spaces[(i % #spaces) + 1]
    local start = start_epoch + 1800 * math.floor(i / #spaces)
    local body = string.format(
        '{"patron":{"first_name":"Bench","last_name":"Patron%d","email":"p%d@example.org"},' ..
        '"slots":[{"space_id":"%s","start":"%s","end":"%s"}]}',
        i, i, space, os.date("!%Y-%m-%dT%H:%M:%SZ", start), os.date("!%Y-%m-%dT%H:%M:%SZ", start + 1800))
    return wrk.format("POST", "/v1/bookings", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
    if status == 201 then created = created + 1
    elseif status == 409 then conflicts = conflicts + 1
    else other = other + 1 end
end

function done(summary, latency, requests)
    local c, x, o = 0, 0, 0
    for _, thread in ipairs(threads) do
        c = c + thread:get("created"); x = x + thread:get("conflicts"); o = o + thread:get("other")
    end
    io.write(string.format(
        'WRK_RESULT {"requests": %d, "seconds": %.4f, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, ' ..
        '"created": %d, "conflicts": %d, "other": %d, "socket_errors": %d}\n',
        summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency.max / 1000, c, x, o,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
