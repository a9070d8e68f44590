#!/usr/bin/env bash
# Reload torture, full length: the e2e test `reload_torture` with more reloads and more
# load. Prints one line: reloads, requests, failures, and whether the
# WebSocket and the gRPC stream were kept. Figures go in docs/benchmarks.md.
#
#   bench/reload-torture.sh [RELOADS] [CONNECTIONS_PER_KIND]
set -euo pipefail
cd "$(dirname "$0")/.."
export TORTURE_RELOADS="${1:-1000}" TORTURE_CONNS="${2:-8}"
cargo test -q -p gatehouse-core --test e2e_proxy reload_torture -- --nocapture 2>&1 |
  grep -E 'reload torture:|test result|panicked'
