#!/usr/bin/env bash
# Memory per idle connection: Gatehouse beside NGINX, one worker each, each holding N
# idle kept-alive client connections of one kind (plain HTTP/1.1, HTTP/1.1 over TLS,
# HTTP/2 over TLS, WebSocket proxied to an echo upstream). Every connection has had one
# request answered (a local fixed response; the WebSocket one echoed message), then
# stays open and silent. A fresh proxy process per kind; RSS (summed over the proxy's
# processes) before, with the N connections, and once they have closed.
#
#   bench/idle-memory.sh [N]        # N defaults to 10000; needs nginx and openssl
#
# KINDS and PROXIES choose a subset; NO_BUILD=1 uses the binaries already built; GH_PRELOAD runs Gatehouse under another allocator
# (LD_PRELOAD), to compare. The connections are measured after SETTLE seconds of silence (3 by default).
# Prints one line per proxy and kind: KB per connection = (RSS with - RSS before) / N,
# and RSS after the close beside RSS before. The figures go in docs/benchmarks.md.
set -euo pipefail
N=${1:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Each side holds N sockets (a proxied WebSocket two): raise the descriptor limit as
# far as this machine lets; the WebSocket count is cut to fit (and printed).
ulimit -Hn $((4 * N + 1024)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
WS_N=$(( N < ($(ulimit -n) - 500) / 2 ? N : ($(ulimit -n) - 500) / 2 ))

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -p gatehouse -p gatehouse-test-support --bins >&2
GH="${GH_BIN:-$root/target/release/gatehouse}"
IDLE="$root/target/release/idle_conns"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=CA:FALSE \
  -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null

PLAIN=$(free_port) TLS=$(free_port) WS=$(free_port)

"$IDLE" ws-echo "127.0.0.1:$WS" >"$run/ws-echo.log" 2>&1 &
pids+=($!)

cat >"$run/gatehouse.toml" <<EOF
[global]
workers = 1
via = false
request_id = false
[access_log]
enabled = false
[[listeners]]
name = "plain"
listen = "127.0.0.1:$PLAIN"
max_connections = $((2 * N))
timeouts = { idle = "600s", header_read = "600s" }
[[listeners]]
name = "tls"
listen = "127.0.0.1:$TLS"
protocol = "https"
max_connections = $((2 * N))
timeouts = { idle = "600s", header_read = "600s" }
tls = { certificates = [{ cert = "$run/cert.pem", key = "$run/key.pem" }] }
[[routes]]
name = "ws"
match = { path = "/ws" }
upstream = "ws"
[[routes]]
name = "ok"
respond = { status = 200, body = "ok" }
[[upstreams]]
name = "ws"
endpoints = ["127.0.0.1:$WS"]
EOF

cat >"$run/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $run/nginx.pid;
error_log stderr error;
events { worker_connections $(( $(ulimit -n) - 100 )); }
http {
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000;
  upstream ws { server 127.0.0.1:$WS; }
  server {
    listen 127.0.0.1:$PLAIN;
    listen 127.0.0.1:$TLS ssl http2;
    ssl_certificate $run/cert.pem;
    ssl_certificate_key $run/key.pem;
    location = /ws {
      proxy_pass http://ws;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection upgrade;
      proxy_read_timeout 600s;
    }
    location / { return 200 ok; }
  }
}
EOF

# RSS in KiB of a process and its children (FIELD=RssAnon for anonymous memory only).
rss() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk -v f="^${FIELD:-VmRSS}:" '$0 ~ f {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}
# One request answered and closed, so that the code serving it is paged in before the
# first figure: what a connection costs, not what a process's first request does.
warm() {
  curl -s -o /dev/null "http://127.0.0.1:$PLAIN/" || true
  curl -sk -o /dev/null "https://127.0.0.1:$TLS/" || true
  curl -sk --http2 -o /dev/null "https://127.0.0.1:$TLS/" || true
}
# Open descriptors of a process and its children.
fds() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(ls "/proc/$p/fd" | wc -l)))
  done
  echo "$total"
}
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  return 1
}

start() {
  case $1 in
  gatehouse) env ${GH_PRELOAD:+LD_PRELOAD=$GH_PRELOAD} "$GH" run --config "$run/gatehouse.toml" >"$run/gh.log" 2>&1 & ;;
  nginx) nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;' >"$run/nginx.log" 2>&1 & ;;
  esac
  proxy=$!
  pids+=("$proxy")
  wait_port "$PLAIN"
  wait_port "$TLS"
}

measure() { # proxy kind
  local port=$PLAIN ca= n=$N
  [ "$2" = ws ] && n=$WS_N
  case $2 in tls | h2) port=$TLS ca="$run/cert.pem" ;; esac
  start "$1"
  warm
  sleep "${SETTLE:-3}"
  local before fds0 with after
  before=$(rss "$proxy") fds0=$(fds "$proxy")
  coproc HOLD { "$IDLE" hold "$2" "127.0.0.1:$port" "$n" $ca; }
  local ready
  read -r ready <&"${HOLD[0]}"
  # Idle means silent for a while: the same few seconds for every proxy.
  sleep "${SETTLE:-3}"
  with=$(rss "$proxy")
  echo >&"${HOLD[1]}"
  local closed
  read -r closed <&"${HOLD[0]}"
  wait "$HOLD_PID" || true
  # The proxy sees the closes as they arrive: wait until its descriptors are back.
  for _ in $(seq 100); do
    [ "$(fds "$proxy")" -le $((fds0 + 2)) ] && break
    sleep 0.1
  done
  # Freed memory goes back after the allocator's decay: the same wait for every proxy.
  sleep "${SETTLE:-3}"
  after=$(rss "$proxy")
  kill "$proxy"
  wait "$proxy" 2>/dev/null || true
  awk -v p="$1" -v k="$2" -v r="$ready" -v b="$before" -v w="$with" -v a="$after" -v n="$n" \
    'BEGIN { printf "%-9s %-3s %-22s  before %7d KiB  with %8d KiB  %6.2f KB/conn  after close %7d KiB\n",
             p, k, r, b, w, (w - b) * 1.024 / n, a }'
}

for kind in ${KINDS:-h1 tls h2 ws}; do
  for proxy in ${PROXIES:-gatehouse nginx}; do
    measure "$proxy" "$kind"
  done
done
