#!/usr/bin/env bash
# Stops the two nodes cluster/local/start.sh started, and only them: the processes started with
# its session folder (GCS, raylets, dashboard, monitors), its Ray client server, and every
# process below them (agents, workers, job drivers). `ray stop` would also stop every other
# Ray instance of this user on this machine.
set -uo pipefail
DIR="${RAYSITTER_CLUSTER_DIR:-/tmp/raysitter-cluster}"
port=""
[ -f "$DIR/head.address" ] && port="$(cut -d: -f2 "$DIR/head.address")"

roots() {
  pgrep -f -- "$DIR/(head|node2)/"
  [ -n "$port" ] && pgrep -f -- "ray.util.client.server --address=[^ ]*:$port "
}
tree() {  # the given pids and all their descendants
  local p
  for p in "$@"; do
    echo "$p"
    tree $(pgrep -P "$p")
  done
}
pids="$(tree $(roots) | sort -u | tr '\n' ' ')"
if [ -z "${pids// /}" ]; then
  echo "cluster/local/stop.sh: no cluster running from $DIR"
  rm -f "$DIR/head.address" "$DIR/dashboard.address"
  exit 0
fi
kill -TERM $pids 2>/dev/null
for _ in $(seq 1 30); do
  alive=""
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && break
  sleep 0.5
done
[ -n "${alive:-}" ] && kill -KILL $alive 2>/dev/null
rm -f "$DIR/head.address" "$DIR/dashboard.address"
echo "stopped the local cluster ($DIR)"
