#!/usr/bin/env bash
# New upstream connections per load phase: Gatehouse (the binary given) pinned to CPU 0
# in front of the two bench backends, three back-to-back 3 s phases of h2load at
# 40,000 req/s over 64 HTTP/1.1 connections (the harness's rate40k-1k shape), and the
# backends' accepted-connection counters read between phases. A pool that keeps its
# connections opens them in the first phase only.
#
#   bench/upstream-conns.sh target/release/gatehouse
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
backend_dir="$here/../../shared/bench/backend"
(cd "$backend_dir" && cargo build --release -q)
backend="$backend_dir/target/release/bench-backend"

b1=$(free_port) b2=$(free_port) listen=$(free_port)
for p in "$b1" "$b2"; do
  taskset -c 1 "$backend" --host 127.0.0.1 --port "$p" --body 1k --id "b$p" >/dev/null 2>&1 &
  pids+=($!)
done
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  -e '/\[\[tls:/d' "$here/gatehouse.toml" > "$run/gatehouse.toml"
taskset -c 0 "$bin" run --config "$run/gatehouse.toml" >"$run/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$listen/" >/dev/null 2>&1 && break
  sleep 0.1
done
accepted() {
  local total=0 n
  for p in "$b1" "$b2"; do
    n=$(curl -s "http://127.0.0.1:$p/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["conns"])')
    total=$((total + n))
  done
  echo "$total"
}
for phase in 1 2 3; do
  before=$(accepted)
  done_line=$(taskset -c 1 h2load --h1 -c 64 --rps 625 -D 3 "http://127.0.0.1:$listen/" | grep -E "^requests:")
  echo "phase $phase: $((  $(accepted) - before )) new upstream connections ($done_line)"
done
