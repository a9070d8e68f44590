# Sourced by the bench scripts: a scratch folder `$run`, the PIDs of the processes a
# script starts (`pids+=($!)`), both cleaned up on exit, and `free_port`.
run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
