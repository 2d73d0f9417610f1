-- timed-run.lua - run one of the .pkt files of this directory for a fixed time, then report what
-- the port sent.
--
-- WHAT IT DOES
--   Loads the command file PKTGEN_PKT (environment; default syn-flood-v4.pkt in Pktgen's working
--   directory), clears the port statistics, starts port PORT (default 0), waits DURATION seconds
--   (default 60), stops the port, waits a second for the counters to settle, and prints
--     port 0: sent N frames (opackets), received M (ipackets) in S s
--   to the console and, when RESULT names a file, as key=value lines to that file. QUIT=1 makes
--   Pktgen exit afterwards (unattended runs).
--
-- USAGE
--   PKTGEN_PKT=/path/blocklist-flood-v4.pkt DURATION=30 RESULT=/tmp/pg.txt QUIT=1 \
--     pktgen -l 0-2 -n 4 -a 0000:03:00.0 -- -P -T -m "[1:2].0" -f timed-run.lua
--   or ./run-pktgen.sh timed-run.lua with PKT=..., which fills in the addresses first.
--
-- Pktgen runs a -f file ending in .lua as Lua only when it was built with Lua support (its -h text
-- then says "Command file (.pkt) to execute or a Lua script (.lua) file"). The functions used are
-- those of the `pktgen` table in app/lpktgenlib.c (load, clear, start, stop, delay, portStats,
-- quit), present in the 2017-2023 sources we read; portStats(portlist, "port")[n].opackets is the
-- form Pktgen's own test scripts use. Not run on this project's build machines (Pktgen-DPDK is not
-- packaged in Debian 12): checked with luac -p only, when luac is installed.

local pkt = os.getenv("PKTGEN_PKT") or "syn-flood-v4.pkt"
local port = os.getenv("PORT") or "0"
local duration = tonumber(os.getenv("DURATION") or "60")
local result = os.getenv("RESULT")

if duration == nil or duration <= 0 then
  error("DURATION must be a positive number of seconds")
end

pktgen.load(pkt)
pktgen.clear(port)
pktgen.start(port)
pktgen.delay(duration * 1000)
pktgen.stop(port)
pktgen.delay(1000)

local stats = pktgen.portStats(port, "port")[tonumber(port)]
local line = string.format("port %s: sent %d frames (opackets), received %d (ipackets) in %d s",
  port, stats.opackets, stats.ipackets, duration)
print(line)

if result ~= nil and result ~= "" then
  local f = assert(io.open(result, "w"))
  f:write(string.format("pkt=%s\nport=%s\nseconds=%d\nopackets=%d\nipackets=%d\n",
    pkt, port, duration, stats.opackets, stats.ipackets))
  f:close()
end

if os.getenv("QUIT") == "1" then
  pktgen.quit()
end
