#!/usr/bin/env bash
# CPU per request and p99 of three routes side by side on one Gatehouse (pinned to CPU
# 0, the two bench backends and h2load on CPU 1): no auth, an API key header, and an
# RS256 JWT bearer token. Each round runs the three interleaved at a fixed rate over
# 64 HTTP/1.1 connections (the harness's rate shape); the table gives medians of the
# rounds and each route's ratio to the plain one. CPU is the process's utime+stime
# from /proc over the run, divided by the requests answered.
#
#   bench/auth-cost.sh target/release/gatehouse [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$(realpath "$1")
rate=${2:-20000} seconds=${3:-5} rounds=${4:-5}

# An RS256 token, signed with openssl: header.claims, base64url, then the signature.
openssl genrsa -out "$run/key.pem" 2048 2>/dev/null
openssl rsa -in "$run/key.pem" -pubout -out "$run/pub.pem" 2>/dev/null
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
exp=$(( $(date +%s) + 3600 ))
head=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
body=$(printf '{"iss":"https://idp.bench","aud":"bench","sub":"bench","exp":%d}' "$exp" | b64url)
sig=$(printf '%s.%s' "$head" "$body" | openssl dgst -sha256 -sign "$run/key.pem" | b64url)
token="$head.$body.$sig"

start_backends
listen=$(free_port)
sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
  -e "s#@PEM@#$run/pub.pem#" "$here/gatehouse-auth.toml" > "$run/gatehouse.toml"
taskset -c 0 "$bin" run --config "$run/gatehouse.toml" >"$run/gw.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$listen/plain" >/dev/null 2>&1 && break
  sleep 0.1
done
check() { # path, then curl header args
  local path=$1; shift
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "http://127.0.0.1:$listen$path")
  [ "$code" = 200 ] || { echo "$path answered $code"; cat "$run/gw.log"; exit 1; }
}
check /plain
check /key -H "x-api-key: bench-api-key-0123456789"
check /jwt -H "authorization: Bearer $token"

ticks() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
hz=$(getconf CLK_TCK)
measure() { # route, then h2load header args; prints "cpu_us_per_req p99_ms"
  local route=$1; shift
  local before after log="$run/h2load.log"
  rm -f "$log"
  before=$(ticks)
  out=$(taskset -c 1 h2load --h1 -c 64 --rps $((rate / 64)) -D "$seconds" --log-file "$log" "$@" \
        "http://127.0.0.1:$listen$route")
  after=$(ticks)
  ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
  python3 - "$log" "$before" "$after" "$hz" "$ok" <<'PY'
import sys
log, before, after, hz, ok = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())
p99 = lat[int(len(lat) * 0.99) - 1] / 1000 if lat else float("nan")
print(f"{(after - before) / hz * 1e6 / max(ok, 1):.2f} {p99:.3f}")
PY
}
declare -A cpu p99
for r in $(seq 1 "$rounds"); do
  for kind in plain key jwt; do
    case $kind in
      plain) res=$(measure /plain) ;;
      key) res=$(measure /key -H "x-api-key: bench-api-key-0123456789") ;;
      jwt) res=$(measure /jwt -H "authorization: Bearer $token") ;;
    esac
    cpu[$kind]+="${res% *} " p99[$kind]+="${res#* } "
    echo "round $r $kind: cpu_us/req p99_ms = $res"
  done
done
python3 - "${cpu[plain]}" "${cpu[key]}" "${cpu[jwt]}" "${p99[plain]}" "${p99[key]}" "${p99[jwt]}" "$rate" <<'PY'
import statistics, sys
c = [list(map(float, a.split())) for a in sys.argv[1:4]]
p = [list(map(float, a.split())) for a in sys.argv[4:7]]
rate = sys.argv[7]
print(f"\nmedians of {len(c[0])} rounds at {rate} req/s, 64 HTTP/1.1 connections")
print("route   cpu_us/req  vs plain  p99_ms  vs plain")
for name, cs, ps in zip(["plain", "api_key", "jwt"], c, p):
    cm, pm = statistics.median(cs), statistics.median(ps)
    print(f"{name:7} {cm:10.2f} {cm / statistics.median(c[0]):9.2f} {pm:7.3f} {pm / statistics.median(p[0]):9.2f}")
PY
