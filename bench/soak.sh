#!/usr/bin/env bash
# Soak: a fixed-rate mixed load through Gatehouse for a while (10 minutes by default),
# sampling the process's RSS and open file descriptors every few seconds. Prints the
# series and the verdict: RSS growth after the warm-up, and descriptors at the end
# against the warm-up.
#
#   bench/soak.sh [SECONDS] [SAMPLE_EVERY]
#
# Load (all on loopback, h2load at fixed rates): HTTP/1.1 keep-alive 16 clients x
# 250 req/s, HTTP/2 (h2c) 4 clients x 4 streams x 250 req/s, and HTTP/1.1 with a new
# connection per request (50 connections a second), to the bench backend of
# ../shared/bench. Needs: h2load (nghttp2-client), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
every="${2:-5}"
warm=60
[ "$secs" -gt $((warm * 2)) ] || warm=$((secs / 4))
root=$PWD
run=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$run"' EXIT

cargo build --release -q -p gatehouse
backend_dir="$root/../shared/bench/backend"
(cd "$backend_dir" && cargo build --release -q)
backend="$backend_dir/target/release/bench-backend"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b1=$(port); b2=$(port); gw=$(port)
"$backend" --port "$b1" --body 1k --id b1 >/dev/null 2>&1 &
"$backend" --port "$b2" --body 1k --id b2 >/dev/null 2>&1 &
cat >"$run/soak.toml" <<EOF
[global]
workers = 1
[access_log]
enabled = false
[[listeners]]
name = "soak"
listen = "127.0.0.1:$gw"
[[routes]]
name = "all"
upstream = "backends"
[[upstreams]]
name = "backends"
endpoints = ["127.0.0.1:$b1", "127.0.0.1:$b2"]
EOF
"$root/target/release/gatehouse" run --config "$run/soak.toml" >/dev/null 2>"$run/gw.log" &
pid=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$gw/" >/dev/null 2>&1 && break
  sleep 0.1
done

url="http://127.0.0.1:$gw/"
h2load --h1 -c 16 --rps 250 -D "$secs" "$url" >"$run/h1.txt" 2>&1 &
loads=$!
h2load -c 4 -m 4 --rps 250 -D "$secs" "$url" >"$run/h2.txt" 2>&1 &
loads="$loads $!"
# A new connection per request: 50 connections a second, one request each.
h2load --h1 -r 50 --rate-period 1s -c $((50 * secs)) -n $((50 * secs)) "$url" >"$run/close.txt" 2>&1 &
loads="$loads $!"

printf 'second,rss_kib,fds\n' >"$run/series.csv"
start=$(date +%s)
while :; do
  now=$(( $(date +%s) - start ))
  [ "$now" -le "$secs" ] || break
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  fds=$(ls "/proc/$pid/fd" | wc -l)
  printf '%s,%s,%s\n' "$now" "$rss" "$fds" >>"$run/series.csv"
  sleep "$every"
done
# shellcheck disable=SC2086
wait $loads || true
idle_fds=$(ls "/proc/$pid/fd" | wc -l)

cat "$run/series.csv"
for f in h1 h2 close; do
  printf '%-5s %s | %s\n' "$f" "$(grep -E '^requests:' "$run/$f.txt")" "$(grep -E '^status codes:' "$run/$f.txt")"
done
python3 - "$run/series.csv" "$warm" "$idle_fds" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
warm = int(sys.argv[2])
after = [r for r in rows if int(r["second"]) >= warm]
base, last = int(after[0]["rss_kib"]), int(after[-1]["rss_kib"])
peak = max(int(r["rss_kib"]) for r in after)
fds = [int(r["fds"]) for r in after]
growth = (last - base) / base * 100
print(f"RSS after warm-up ({warm} s): {base} KiB -> {last} KiB at the end ({growth:+.1f}%), peak {peak} KiB")
print(f"open descriptors after warm-up: {min(fds)}-{max(fds)}; after the load ended: {sys.argv[3]}")
print("verdict:", "ok" if growth < 5 else "RSS grew by 5% or more")
EOF
