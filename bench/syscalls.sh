#!/usr/bin/env bash
# Syscalls a request, by kind: Gatehouse (the binary given) or NGINX (`nginx`, the
# bench harness's own config) pinned to CPU 0 in front of the two bench backends, 64
# wrk connections for 3 s after a 1 s warm-up, plain HTTP/1.1, a connection per request
# (`close`, close-1k's shape) or kept alive (`keepalive`, h1-1k's), or kept alive at a
# fixed 40,000 requests a second (`rate`, rate40k-1k's: h2load --rps, 64 connections,
# for the same 3 s). The counts are the
# kernel's syscall tracepoints on the proxy's processes (`perf stat`), divided by the
# requests wrk completed; only the kinds a proxy makes are printed. With a third
# argument `time`, no syscall is traced: the proxy's user and system CPU time a request
# are printed instead (utime and stime from /proc, in clock ticks of 10 ms: 3 s give
# about 300 of them).
#
#   bench/syscalls.sh target/release/gatehouse close
#   bench/syscalls.sh nginx keepalive time
#
# Needs perf (linux-perf), wrk, nginx and cargo for the bench backend.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
who=$1
mode=${2:-close}
what=${3:-count}
start_backends
listen=$(free_port)
if [ "$who" = nginx ]; then
  nginx_conf plain
  taskset -c 0 nginx -e stderr -p "$run" -c "$run/nginx.conf" >"$run/proxy.log" 2>&1 &
  pids+=($!)
else
  sed -e "s/@LISTEN@/127.0.0.1:$listen/" -e "s/@B1@/127.0.0.1:$b1/" -e "s/@B2@/127.0.0.1:$b2/" \
    -e '/\[\[tls:/d' "$here/gatehouse.toml" > "$run/gatehouse.toml"
  taskset -c 0 "$(realpath "$who")" run --config "$run/gatehouse.toml" >"$run/proxy.log" 2>&1 &
  pids+=($!)
fi
proxy=$!
wait_ready "http://127.0.0.1:$listen/"
# NGINX serves from its worker; Gatehouse from the process started.
procs=$proxy
[ "$who" = nginx ] && procs=$(pgrep -P "$proxy" | paste -sd,)
hdr=()
[ "$mode" = close ] && hdr=(-H "Connection: close")
url="http://127.0.0.1:$listen/"
taskset -c 1 wrk -t1 -c64 -d1s "${hdr[@]}" "$url" >/dev/null
# The measured load: 3 s of wrk; `$n`, the requests it completed.
measure() {
  local out
  if [ "$mode" = rate ]; then
    out=$(taskset -c 1 h2load --h1 -c64 --rps 625 -D 3 "$url")
    n=$(echo "$out" | awk '/^requests:/ {print $4}')
    return
  fi
  out=$(taskset -c 1 wrk -t1 -c64 -d3s "${hdr[@]}" "$url")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
}
if [ "$what" = time ]; then
  ticks() {
    for p in ${procs//,/ }; do awk '{print $14, $15}' "/proc/$p/stat"; done |
      awk '{u += $1; s += $2} END {print u, s}'
  }
  read -r u0 s0 < <(ticks)
  measure
  read -r u1 s1 < <(ticks)
  hz=$(getconf CLK_TCK)
  awk -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v who="$who" -v mode="$mode" \
    'BEGIN { printf "%s, %s: %d requests, user %.2f µs, system %.2f µs a request\n", who, mode, n, u / hz / n * 1e6, s / hz / n * 1e6 }'
  exit 0
fi
events=""
for s in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl \
  accept4 close shutdown getsockopt setsockopt futex; do
  events+="syscalls:sys_enter_$s,"
done
perf stat -x, -o "$run/perf.txt" -e "${events%,}" -p "$procs" -- sleep 3.2 &
stat=$!
measure
wait "$stat"
echo "$who, $mode: $n requests"
awk -F, -v n="$n" '$1 + 0 > 0 {
  k = $3; sub(/.*sys_enter_/, "", k); printf "  %-11s %6.3f\n", k, $1 / n; t += $1
} END { printf "  %-11s %6.2f\n", "all", t / n }' "$run/perf.txt"
