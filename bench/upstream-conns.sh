#!/usr/bin/env bash
# New upstream connections per load phase: Gatehouse (the binary given) pinned to CPU 0
# in front of the two bench backends, three back-to-back 3 s phases of h2load at
# 40,000 req/s over 64 HTTP/1.1 connections (the harness's rate40k-1k shape), and the
# backends' accepted-connection counters read between phases. A pool that keeps its
# connections opens them in the first phase only. After each phase the gateway's own
# counts (admin API, both endpoints summed) say how many it opened and why it closed
# the ones it did (`http::conn_count`); the backends' figure also counts the two
# stats calls of each phase.
#
#   bench/upstream-conns.sh target/release/gatehouse
#   LOAD="wrk -t1 -c64 -d3s" bench/upstream-conns.sh target/release/gatehouse  # h1-1k's shape
#   LOAD="h2load --h1 -c 16 --rps 312 -D 3" bench/upstream-conns.sh BIN        # rate-1k's
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
start_backends
listen=$(free_port) admin=$(free_port)
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  -e '/\[\[tls:/d' "$here/gatehouse.toml" > "$run/gatehouse.toml"
printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin" >> "$run/gatehouse.toml"
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
  # shellcheck disable=SC2086 # LOAD is a command line, split on purpose
  done_line=$(taskset -c 1 ${LOAD:-h2load --h1 -c 64 --rps 625 -D 3} "http://127.0.0.1:$listen/" |
    grep -E "^requests:|requests in" || true)
  echo "phase $phase: $((  $(accepted) - before )) new upstream connections ($done_line)"
  curl -s "http://127.0.0.1:$admin/upstreams" | python3 -c '
import json, sys
eps = json.load(sys.stdin)["upstreams"][0]["endpoints"]
closed = {}
for e in eps:
    for why, n in e["closed_connections"].items():
        closed[why] = closed.get(why, 0) + n
shown = ", ".join(f"{w} {n}" for w, n in closed.items() if n) or "none"
opened = sum(e["opened_connections"] for e in eps)
now = sum(e["open_connections"] for e in eps)
print(f"  gateway, so far: opened {opened}, open {now}, closed: {shown}")'
done
