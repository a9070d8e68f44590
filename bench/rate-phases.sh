#!/usr/bin/env bash
# What a fixed-rate row's latency is made of: Gatehouse (the binary given) or NGINX
# (`nginx`, the bench harness's own config) pinned to CPU 0 in front of the two bench
# backends, h2load at a fixed rate over 64 HTTP/1.1 connections over TLS 1.3
# (tlsrate30k-1k's shape: 469 requests a second each) for 4 s after a 2 s warm-up, with
# its per-request log. h2load's `--rps` ticks each connection's timer at most every
# 10 ms and sends what is due then, one request after another on HTTP/1.1, so the
# requests come in chains; where the connections' ticks fall in that period decides how
# many chains overlap, and so the queueing. Prints where the requests start within the
# tick period (how many of 40 slices see a quarter of an even share or more, and the
# share of the busiest 4) beside the latency percentiles.
#
#   bench/rate-phases.sh target/release/gatehouse
#   RPS=90 bench/rate-phases.sh nginx      # one request a tick (ticks of 11.1 ms)
#
# Needs h2load (nghttp2-client), openssl, nginx and cargo for the bench backend.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
who=$1
rps=${RPS:-469}
start_backends
listen=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=127.0.0.1 -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
if [ "$who" = nginx ]; then
  nginx_conf tls
  taskset -c 0 nginx -e stderr -p "$run" -c "$run/nginx.conf" >"$run/proxy.log" 2>&1 &
else
  sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
    -e 's/^\[\[tls: \(.*\)\]\]$/\1/' -e "s#@CERT@#$run/cert.pem#" -e "s#@KEY@#$run/key.pem#" \
    "$here/gatehouse.toml" > "$run/gatehouse.toml"
  taskset -c 0 "$(realpath "$who")" run --config "$run/gatehouse.toml" >"$run/proxy.log" 2>&1 &
fi
pids+=($!)
url="https://127.0.0.1:$listen/"
wait_ready -k "$url"
load=(taskset -c 1 h2load -t1 -c64 -m1 --h1 --rps "$rps" --tls13-ciphers TLS_AES_128_GCM_SHA256)
"${load[@]}" -D 2 "$url" >/dev/null
"${load[@]}" -D 4 --log-file "$run/requests.log" "$url" | grep -E "^requests:"
python3 - "$run/requests.log" "$rps" <<'PY'
import sys
rows = [(int(a), int(c)) for a, _, c in (l.split("\t") for l in open(sys.argv[1]))]
period = max(10_000, 1e6 / float(sys.argv[2]))  # h2load: max(0.01 s, 1/rps)
t0 = min(s for s, _ in rows)
slices = [0] * 40
for s, _ in rows:
    slices[int((s - t0) % period / period * 40)] += 1
n = len(rows)
busy = sum(1 for c in slices if c > n / 40 / 4)
top4 = sum(sorted(slices, reverse=True)[:4]) * 100 // n
lat = sorted(l for _, l in rows)
pct = " ".join("p%s %d" % (q, lat[min(n - 1, int(n * q / 100))]) for q in (10, 50, 90, 99))
print("tick %.1f ms: %d of 40 slices busy, busiest 4 hold %d%%; latency us: mean %d %s"
      % (period / 1000, busy, top4, sum(lat) / n, pct))
PY
