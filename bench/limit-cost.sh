#!/usr/bin/env bash
# CPU per request and p99 of four routes side by side on one Gatehouse (pinned to CPU
# 0; the two bench backends, redis-server and h2load on CPU 1): no filters, a local
# rate limit, a Redis rate limit (one EVALSHA round trip per request), and the gateway
# chain (API key + local rate limit + concurrency limit). Each round runs the four
# interleaved at a fixed rate over 64 HTTP/1.1 connections; the table gives medians of
# the rounds and each route's ratio to the plain one. CPU is the gateway process's
# utime+stime from /proc over the run, divided by the requests answered (Redis's own
# CPU is not in it: it is shown apart, per request, for the Redis route).
#
#   bench/limit-cost.sh target/release/gatehouse [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
rate=${2:-20000} seconds=${3:-5} rounds=${4:-5}
start_backends
listen=$(free_port) rport=$(free_port)
taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$run/redis.log" &
redis=$!
pids+=($redis)
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  -e "s/@REDIS@/127.0.0.1:$rport/" "$here/gatehouse-limits.toml" > "$run/gatehouse.toml"
taskset -c 0 "$bin" run --config "$run/gatehouse.toml" >"$run/gw.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$listen/plain" >/dev/null 2>&1 && break
  sleep 0.1
done
key=(-H "x-api-key: bench-api-key-0123456789")
check() { # path, then curl header args
  local path=$1; shift
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "http://127.0.0.1:$listen$path")
  [ "$code" = 200 ] || { echo "$path answered $code"; cat "$run/gw.log"; exit 1; }
}
check /plain
check /local
check /redis
check /chain "${key[@]}"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
measure() { # route, then h2load header args; prints "cpu_us_per_req p99_ms redis_us_per_req"
  local route=$1; shift
  local before after rbefore rafter log="$run/h2load.log"
  rm -f "$log"
  before=$(ticks "$gw") rbefore=$(ticks "$redis")
  out=$(taskset -c 1 h2load --h1 -c 64 --rps $((rate / 64)) -D "$seconds" --log-file "$log" "$@" \
        "http://127.0.0.1:$listen$route")
  after=$(ticks "$gw") rafter=$(ticks "$redis")
  ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
  python3 - "$log" "$before" "$after" "$hz" "$ok" "$rbefore" "$rafter" <<'PY'
import sys
log, before, after, hz, ok, rb, ra = sys.argv[1], *map(int, sys.argv[2:])
lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())
p99 = lat[int(len(lat) * 0.99) - 1] / 1000 if lat else float("nan")
per = lambda a, b: (b - a) / hz * 1e6 / max(ok, 1)
print(f"{per(before, after):.2f} {p99:.3f} {per(rb, ra):.2f}")
PY
}
declare -A cpu p99 rcpu
kinds="plain local redis chain"
for r in $(seq 1 "$rounds"); do
  for kind in $kinds; do
    case $kind in
      chain) res=$(measure /chain "${key[@]}") ;;
      *) res=$(measure "/$kind") ;;
    esac
    read -r c p rc <<<"$res"
    cpu[$kind]+="$c " p99[$kind]+="$p " rcpu[$kind]+="$rc "
    echo "round $r $kind: cpu_us/req p99_ms redis_cpu_us/req = $res"
  done
done
args=()
for kind in $kinds; do args+=("$kind" "${cpu[$kind]}" "${p99[$kind]}" "${rcpu[$kind]}"); done
python3 - "$rate" "${args[@]}" <<'PY'
import statistics, sys
rate, rest = sys.argv[1], sys.argv[2:]
rows = [(rest[i], *[list(map(float, rest[i + j].split())) for j in (1, 2, 3)]) for i in range(0, len(rest), 4)]
base_c, base_p = statistics.median(rows[0][1]), statistics.median(rows[0][2])
print(f"\nmedians of {len(rows[0][1])} rounds at {rate} req/s, 64 HTTP/1.1 connections")
print("route   cpu_us/req  vs plain  p99_ms  vs plain  added_p99_ms  redis_cpu_us/req")
for name, cs, ps, rs in rows:
    cm, pm = statistics.median(cs), statistics.median(ps)
    print(f"{name:7} {cm:10.2f} {cm / base_c:9.2f} {pm:7.3f} {pm / base_p:9.2f} {pm - base_p:13.3f} {statistics.median(rs):17.2f}")
PY
