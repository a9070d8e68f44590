#!/usr/bin/env bash
# User-space instructions per proxied request, by callgrind: Gatehouse (the binary
# given, so a before and an after build can be compared) in front of the two bench
# backends (1 KiB bodies), plain HTTP/1.1 keep-alive, 16 connections (h2load --h1).
# The counters are zeroed after a warm-up and dumped after the measured requests, so
# start-up and shutdown are not counted.
#
#   bench/callgrind.sh target/release/gatehouse [requests]
#   bench/callgrind.sh nginx [requests]
#
# With `nginx` in place of a binary, NGINX runs instead, on the bench harness's config
# (../shared/bench/configs/nginx.conf) in one process (`master_process off`, so the
# process callgrind follows is the one that serves): the same loads, counted the same
# way, for a figure beside Gatehouse's. CG_CONF, CG_PATH and CG_HEADER are Gatehouse's.
#
# Prints `Ir/request: N`; with CG_OUT=PATH the dump is kept there for callgrind_annotate.
# CG_CONF=TEMPLATE (default bench/gatehouse.toml; @REDIS@ gets a redis-server of its
# own), CG_PATH=/route (default /) and CG_HEADER='name: value' measure one route of
# another template, e.g. the chain of bench/gatehouse-limits.toml:
#
#   CG_CONF=bench/gatehouse-limits.toml CG_PATH=/chain \
#     CG_HEADER='x-api-key: bench-api-key-0123456789' bench/callgrind.sh BIN 20000
# CG_LOAD=close opens a connection per request instead (wrk, `Connection: close`, 16
# connections for CG_SECONDS, default 5): the figure is then instructions a connection.
# CG_LOAD=h2 is HTTP/2 over TLS (h2load -c 16 -m 4), as the bench's h2-1k.
# Needs valgrind, h2load (nghttp2-client), wrk, openssl and cargo for the
# bench backend (../shared/bench/backend).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bin=$1
[ "$bin" = nginx ] || bin=$(realpath "$bin")
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
load=${CG_LOAD:-h1}
scheme=http
if [ "$load" = h2 ]; then
  scheme=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
  sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
    -e "s/@REDIS@/$redis/" -e 's/^\[\[tls: \(.*\)\]\]$/\1/' -e "s#@CERT@#$run/cert.pem#" \
    -e "s#@KEY@#$run/key.pem#" "$conf" > "$run/gatehouse.toml"
else
  sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
    -e "s/@REDIS@/$redis/" -e '/\[\[tls:/d' "$conf" > "$run/gatehouse.toml"
fi
url="$scheme://127.0.0.1:$listen$path"
cd "$run"
if [ "$bin" = nginx ]; then
  nginx_kind=plain
  [ "$load" = h2 ] && nginx_kind=tls
  nginx_conf "$nginx_kind"
  sed -i 's/^master_process on;/master_process off;/' "$run/nginx.conf"
  proxy=(nginx -e stderr -p "$run" -c "$run/nginx.conf")
else
  proxy=("$bin" run --config "$run/gatehouse.toml")
fi
valgrind --tool=callgrind --callgrind-out-file="$run/cg.out" "${proxy[@]}" >"$run/gw.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 300); do
  curl -kfs "${hdr[@]}" "$url" >/dev/null 2>&1 && break
  sleep 0.1
done
case $load in
  h1) h2load --h1 -n 2000 -c 16 "${hdr[@]}" "$url" >/dev/null ;;
  h2) h2load -n 2000 -c 16 -m 4 "${hdr[@]}" "$url" >/dev/null ;;
  close) wrk -t1 -c16 -d2s -H 'Connection: close' "${hdr[@]}" "$url" >/dev/null ;;
esac
callgrind_control -z "$gw" >/dev/null
case $load in
  h1) h2load --h1 -n "$n" -c 16 "${hdr[@]}" "$url" | grep -E "^requests:|^status codes:" ;;
  h2) h2load -n "$n" -c 16 -m 4 "${hdr[@]}" "$url" | grep -E "^requests:|^status codes:" ;;
  close)
    n=$(wrk -t1 -c16 -d"${CG_SECONDS:-5}"s -H 'Connection: close' "${hdr[@]}" "$url" |
      grep -oE '[0-9]+ requests in' | awk '{print $1}')
    echo "requests: $n" ;;
esac
callgrind_control -d "$gw" >/dev/null
# The dump is the newest cg.out.N; its summary line is the instruction count.
dump=$(ls -t "$run"/cg.out.* | head -1)
ir=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
[ -n "${CG_OUT:-}" ] && cp "$dump" "$CG_OUT"
echo "Ir: $ir over $n requests"
echo "Ir/request: $((ir / n))"
