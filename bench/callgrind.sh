#!/usr/bin/env bash
# User-space instructions per proxied request, by callgrind: Gatehouse (the binary
# given, so a before and an after build can be compared) in front of the two bench
# backends (1 KiB bodies), plain HTTP/1.1 keep-alive, 16 connections (h2load --h1).
# The counters are zeroed after a warm-up and dumped after the measured requests, so
# start-up and shutdown are not counted.
#
#   bench/callgrind.sh target/release/gatehouse [requests]
#
# Prints `Ir/request: N`; with CG_OUT=PATH the dump is kept there for callgrind_annotate.
# CG_CONF=TEMPLATE (default bench/gatehouse.toml; @REDIS@ gets a redis-server of its
# own), CG_PATH=/route (default /) and CG_HEADER='name: value' measure one route of
# another template, e.g. the chain of bench/gatehouse-limits.toml:
#
#   CG_CONF=bench/gatehouse-limits.toml CG_PATH=/chain \
#     CG_HEADER='x-api-key: bench-api-key-0123456789' bench/callgrind.sh BIN 20000
# Needs valgrind, h2load (nghttp2-client) and cargo for the
# bench backend (../shared/bench/backend).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
n=${2:-20000}
backend_dir="$here/../../shared/bench/backend"
(cd "$backend_dir" && cargo build --release -q)
backend="$backend_dir/target/release/bench-backend"

b1=$(free_port) b2=$(free_port) listen=$(free_port)
for p in "$b1" "$b2"; do
  "$backend" --host 127.0.0.1 --port "$p" --body 1024 --id "b$p" >/dev/null 2>&1 &
  pids+=($!)
done
conf=$(realpath "${CG_CONF:-$here/gatehouse.toml}")
path=${CG_PATH:-/}
hdr=()
[ -n "${CG_HEADER:-}" ] && hdr=(-H "$CG_HEADER")
redis=127.0.0.1:0
if grep -q @REDIS@ "$conf"; then
  redis=127.0.0.1:$(free_port)
  redis-server --port "${redis#*:}" --bind 127.0.0.1 --save "" --appendonly no --dir "$run" >/dev/null 2>&1 &
  pids+=($!)
fi
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  -e "s/@REDIS@/$redis/" -e '/\[\[tls:/d' "$conf" > "$run/gatehouse.toml"
cd "$run"
valgrind --tool=callgrind --callgrind-out-file="$run/cg.out" \
  "$bin" run --config "$run/gatehouse.toml" >"$run/gw.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 300); do
  curl -fs "${hdr[@]}" "http://127.0.0.1:$listen$path" >/dev/null 2>&1 && break
  sleep 0.1
done
h2load --h1 -n 2000 -c 16 "${hdr[@]}" "http://127.0.0.1:$listen$path" >/dev/null
callgrind_control -z "$gw" >/dev/null
h2load --h1 -n "$n" -c 16 "${hdr[@]}" "http://127.0.0.1:$listen$path" | grep -E "^requests:|^status codes:"
callgrind_control -d "$gw" >/dev/null
# The dump is the newest cg.out.N; its summary line is the instruction count.
dump=$(ls -t "$run"/cg.out.* | head -1)
ir=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
[ -n "${CG_OUT:-}" ] && cp "$dump" "$CG_OUT"
echo "Ir: $ir over $n requests"
echo "Ir/request: $((ir / n))"
