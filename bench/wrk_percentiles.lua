-- wrk's --latency stops at p99; this prints finer percentiles (microseconds)
-- and the error counts, in a form bench/_common.py parses.
done = function(summary, latency, requests)
  for _, p in ipairs({50, 90, 99, 99.9, 99.99}) do
    io.write(string.format("p%g_us=%d\n", p, latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format("requests=%d errors=%d non2xx=%d\n", summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status))
end
