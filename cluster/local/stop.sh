#!/usr/bin/env bash
# Stops the two nodes cluster/local/start.sh started: only the processes of its session folder
# (`ray stop` would also stop every other Ray instance of this user on this machine).
set -uo pipefail
DIR="${RAYSITTER_CLUSTER_DIR:-/tmp/raysitter-cluster}"
pattern="$DIR/"
if ! pgrep -f -- "$pattern" >/dev/null; then
  echo "cluster/local/stop.sh: no cluster running from $DIR"
  rm -f "$DIR/head.address" "$DIR/dashboard.address"
  exit 0
fi
pkill -TERM -f -- "$pattern"
for _ in $(seq 1 30); do
  pgrep -f -- "$pattern" >/dev/null || break
  sleep 0.5
done
pkill -KILL -f -- "$pattern" 2>/dev/null
rm -f "$DIR/head.address" "$DIR/dashboard.address"
echo "stopped the local cluster ($DIR)"
