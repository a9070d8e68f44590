#!/usr/bin/env bash
# 10,000 routes reloaded under a fixed-rate load. Gatehouse (one worker, pinned to CPU 0)
# serves a 10,000-route config (2,500 hosts with an exact path and a prefix each, 500
# wildcard domains with a template and a catch-all, 1,000 each of host-less exact paths,
# prefixes, templates and regexes; the same mix as `cargo bench --bench routes`) while
# h2load (CPU 1) sends RATE req/s on 16 kept-alive connections: SECS seconds with no
# reload, then SECS seconds with RELOADS reloads through the admin API, each one of a
# changed file. Prints p50/p99/max latency of both phases, and the time each reload took
# (parse, validate, compile, swap), median and max. The figures go in docs/benchmarks.md.
#
#   bench/reload-routes.sh [RATE] [SECS] [RELOADS]     # defaults 5000 20 20; NO_BUILD=1
set -euo pipefail
RATE=${1:-5000} SECS=${2:-20} RELOADS=${3:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -p gatehouse >&2
GH="$root/target/release/gatehouse"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

PORT=$(free_port) ADMIN=$(free_port)

# $1: a word that differs between the two configs, so each reload changes the file.
routes() {
  python3 - "$PORT" "$ADMIN" "$1" <<'PY'
import sys
port, admin, tag = sys.argv[1:]
out = [f"""[global]
workers = 1
via = false
request_id = false
[admin]
listen = "127.0.0.1:{admin}"
[access_log]
enabled = false
[[listeners]]
name = "bench"
listen = "127.0.0.1:{port}"
[[routes]]
name = "bench"
respond = {{ status = 200, body = "{tag}" }}
match = {{ path = "/bench" }}
"""]
def route(name, m):
    out.append(f'[[routes]]\nname = "{name}"\nrespond = {{ status = 200 }}\nmatch = {{ {m} }}\n')
for i in range(2500):
    route(f"h{i}-health", f'host = "svc{i}.example.com", path = "/health"')
    route(f"h{i}-api", f'host = "svc{i}.example.com", prefix = "/api/v{i % 5}"')
for i in range(500):
    route(f"w{i}-orders", f'host = "*.t{i}.example.net", path = "/users/{{id}}/orders/{{order}}"')
    route(f"w{i}-all", f'host = "*.t{i}.example.net", prefix = "/"')
for i in range(1000):
    route(f"e{i}", f'path = "/exact/{i}"')
    route(f"p{i}", f'prefix = "/p{i}/"')
    route(f"t{i}", f'path = "/items/{{id}}/t{i}"')
    route(f"r{i}", f'regex = "/r{i}/v[0-9]+/.*"')
print("".join(out))
PY
}
routes one >"$run/one.toml"
routes two >"$run/two.toml"
cp "$run/one.toml" "$run/gatehouse.toml"
echo "routes: $(grep -c '^\[\[routes\]\]' "$run/gatehouse.toml")" >&2

taskset -c 0 "$GH" run --config "$run/gatehouse.toml" >"$run/gh.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/bench" >/dev/null 2>&1 && break
  sleep 0.1
done

load() { # $1: log file
  taskset -c 1 h2load --h1 -t1 -c16 -m1 -D "$SECS" --rps $((RATE / 16)) \
    --log-file "$1" "http://127.0.0.1:$PORT/bench" >"$1.out" 2>&1
}

load "$run/quiet.log"

load "$run/reloads.log" &
lp=$!
gap=$(python3 -c "print($SECS / ($RELOADS + 1))")
for i in $(seq "$RELOADS"); do
  sleep "$gap"
  if [ $((i % 2)) = 1 ]; then cp "$run/two.toml" "$run/gatehouse.toml"; else cp "$run/one.toml" "$run/gatehouse.toml"; fi
  curl -fs -o /dev/null -w '%{time_total}\n' -X POST "http://127.0.0.1:$ADMIN/reload" >>"$run/reload-times"
done
wait "$lp"

python3 - "$run" "$RATE" <<'PY'
import sys, statistics
run, rate = sys.argv[1], sys.argv[2]
def lat(name):
    # h2load --log-file: start time (us since epoch), status, duration (us).
    rows = [l.split("\t") for l in open(f"{run}/{name}.log") if l.strip()]
    bad = sum(1 for r in rows if r[1] != "200")
    d = sorted(int(r[2]) for r in rows)
    q = lambda p: d[min(len(d) - 1, int(p * len(d)))] / 1000
    return f"{len(d)} requests, {bad} not 200; p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, p99.9 {q(0.999):.3f} ms, max {d[-1]/1000:.3f} ms"
t = sorted(float(x) * 1000 for x in open(f"{run}/reload-times"))
print(f"rate {rate} req/s, 16 connections")
print(f"no reload:   {lat('quiet')}")
print(f"{len(t)} reloads: {lat('reloads')}")
print(f"reload took: median {statistics.median(t):.1f} ms, max {t[-1]:.1f} ms")
PY
