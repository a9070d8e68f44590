# Sourced by the bench scripts: a scratch folder `$run`, the PIDs of the processes a
# script starts (`pids+=($!)`), both cleaned up on exit, `free_port`, and the set-up
# most scripts share: `start_backends`, `nginx_conf` and `wait_ready`.
run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The two bench backends (../shared/bench/backend, built if it changed) on CPU 1, 1 KiB
# bodies, as the bench harness runs them: their ports in `$b1` and `$b2`. Needs `$here`
# (the bench folder) and cargo.
start_backends() {
  local dir="$here/../../shared/bench/backend"
  (cd "$dir" && cargo build --release -q)
  b1=$(free_port) b2=$(free_port)
  local p
  for p in "$b1" "$b2"; do
    taskset -c 1 "$dir/target/release/bench-backend" --host 127.0.0.1 --port "$p" \
      --body 1k --id "b$p" >/dev/null 2>&1 &
    pids+=($!)
  done
}

# NGINX's config as the bench harness renders it (../shared/bench/configs/nginx.conf),
# written to `$run/nginx.conf`: listening on `$listen`, in front of `$b1` and `$b2`,
# `plain` or `tls` (with `$run/cert.pem` and `$run/key.pem`).
nginx_conf() {
  local keep=plain drop=tls
  [ "$1" = tls ] && keep=tls drop=plain
  sed -e "s#@LISTEN@#127.0.0.1:$listen#" -e "s#@B1@#127.0.0.1:$b1#" -e "s#@B2@#127.0.0.1:$b2#" \
    -e "s#@RUN@#$run#g" -e "s#@CERT@#$run/cert.pem#" -e "s#@KEY@#$run/key.pem#" \
    -e "s/\[\[$drop: [^]]*\]\]//" -e "s/\[\[$keep: \([^]]*\)\]\]/\1/" \
    "$here/../../shared/bench/configs/nginx.conf" > "$run/nginx.conf"
}

# Waits (10 s at most) until `curl -f` gets the URL given; extra curl flags before it.
wait_ready() {
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$@" && return 0
    sleep 0.1
  done
  return 1
}
