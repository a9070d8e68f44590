#!/usr/bin/env bash
# CPU per request and p99 of three routes side by side on one Gatehouse (pinned to CPU
# 0; the two bench backends and h2load on CPU 1), each POSTed the same 1 KiB JSON
# body: no filters, JSON Schema validation of the body, and a JSON transform of it.
# Each round runs the three interleaved at a fixed rate over 64 HTTP/1.1 connections;
# the table gives medians of the rounds and each route's ratio to the plain one. CPU
# is the gateway process's utime+stime from /proc over the run, divided by the
# requests answered.
#
#   bench/mediation-cost.sh target/release/gatehouse [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
rate=${2:-10000} seconds=${3:-5} rounds=${4:-5}
start_backends
listen=$(free_port)
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  "$here/gatehouse-mediation.toml" > "$run/gatehouse.toml"
taskset -c 0 "$bin" run --config "$run/gatehouse.toml" >"$run/gw.log" 2>&1 &
gw=$!
pids+=($gw)
# A 1 KiB order that passes the schema: 12 lines and a note to make up the size.
python3 - "$run/body.json" <<'PY'
import json, sys
items = [{"sku": f"a-{i}", "qty": i + 1, "price": 9.5 + i} for i in range(12)]
doc = {"customer": "ada lovelace", "items": items, "note": ""}
doc["note"] = "x" * (1024 - len(json.dumps(doc)))
open(sys.argv[1], "w").write(json.dumps(doc))
PY
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$listen/plain" >/dev/null 2>&1 && break
  sleep 0.1
done
for path in /plain /validate /transform; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    --data-binary "@$run/body.json" "http://127.0.0.1:$listen$path")
  [ "$code" = 200 ] || { echo "$path answered $code"; cat "$run/gw.log"; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
measure() { # path; prints "cpu_us_per_req p99_ms"
  local before after log="$run/h2load.log"
  rm -f "$log"
  before=$(ticks "$gw")
  out=$(taskset -c 1 h2load --h1 -c 64 --rps $((rate / 64)) -D "$seconds" --log-file "$log" \
        -d "$run/body.json" -H 'content-type: application/json' "http://127.0.0.1:$listen$1")
  after=$(ticks "$gw")
  ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
  python3 - "$log" "$before" "$after" "$hz" "$ok" <<'PY'
import sys
log, before, after, hz, ok = sys.argv[1], *map(int, sys.argv[2:])
lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())
p99 = lat[int(len(lat) * 0.99) - 1] / 1000 if lat else float("nan")
print(f"{(after - before) / hz * 1e6 / max(ok, 1):.2f} {p99:.3f}")
PY
}
declare -A cpu p99
kinds="plain validate transform"
for r in $(seq 1 "$rounds"); do
  for kind in $kinds; do
    res=$(measure "/$kind")
    read -r c p <<<"$res"
    cpu[$kind]+="$c " p99[$kind]+="$p "
    echo "round $r $kind: cpu_us/req p99_ms = $res"
  done
done
args=()
for kind in $kinds; do args+=("$kind" "${cpu[$kind]}" "${p99[$kind]}"); done
python3 - "$rate" "${args[@]}" <<'PY'
import statistics, sys
rate, rest = sys.argv[1], sys.argv[2:]
rows = [(rest[i], *[list(map(float, rest[i + j].split())) for j in (1, 2)]) for i in range(0, len(rest), 3)]
base_c, base_p = statistics.median(rows[0][1]), statistics.median(rows[0][2])
print(f"\nmedians of {len(rows[0][1])} rounds at {rate} req/s, 64 HTTP/1.1 connections, 1 KiB JSON bodies")
print("route      cpu_us/req  vs plain  p99_ms  vs plain")
for name, cs, ps in rows:
    cm, pm = statistics.median(cs), statistics.median(ps)
    print(f"{name:10} {cm:10.2f} {cm / base_c:9.2f} {pm:7.3f} {pm / base_p:9.2f}")
PY
