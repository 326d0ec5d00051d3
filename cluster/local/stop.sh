#!/usr/bin/env bash
# Stops the two nodes cluster/local/start.sh started, and only them: the processes started with
# its session folder (GCS, raylets, dashboard, monitors), its Ray client server, and every
# process below them (agents, workers, job drivers). `ray stop` would also stop every other
# Ray instance of this user on this machine.
#
#   cluster/local/stop.sh          # both nodes
#   cluster/local/stop.sh node2    # only the second node (a lost node: Ray restarts its training
#                                  # workers elsewhere); cluster/local/start.sh node2 brings it back
set -uo pipefail
DIR="${RAYSITTER_CLUSTER_DIR:-/tmp/raysitter-cluster}"
WHICH="${1:-all}"
case "$WHICH" in all|node2) ;; *) echo "cluster/local/stop.sh: unknown argument '$WHICH'. Fix: pass nothing (both nodes) or node2." >&2; exit 2 ;; esac
port=""
[ -f "$DIR/head.address" ] && port="$(cut -d: -f2 "$DIR/head.address")"

roots() {
  if [ "$WHICH" = node2 ]; then
    pgrep -f -- "$DIR/node2/"
    return 0
  fi
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
if [ "$WHICH" = node2 ] && [ -z "${pids// /}" ]; then
  echo "cluster/local/stop.sh: no second node running from $DIR"
  exit 0
elif [ -z "${pids// /}" ]; then
  echo "cluster/local/stop.sh: no cluster running from $DIR"
  rm -f "$DIR/head.address" "$DIR/dashboard.address"
  exit 0
fi
is_named() { grep -q -- "$2" "/proc/$1/cmdline" 2>/dev/null; }
stop_all() {  # SIGTERM, up to 10 s to exit, then SIGKILL
  [ -z "${*// /}" ] && return 0
  kill -TERM "$@" 2>/dev/null
  local alive p
  for _ in $(seq 1 20); do
    alive=""
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && return 0
    sleep 0.5
  done
  kill -KILL $alive 2>/dev/null
}
# In Ray's own order (`ray stop`): raylets first, then the rest, the GCS last; signalled all at
# once, the raylets and the GCS wait on each other for seconds.
raylets="" gcs="" rest=""
for p in $pids; do
  if is_named "$p" "ray/raylet/raylet"; then raylets="$raylets $p"
  elif is_named "$p" "gcs_server"; then gcs="$gcs $p"
  else rest="$rest $p"; fi
done
stop_all $raylets
stop_all $rest
stop_all $gcs
if [ "$WHICH" = node2 ]; then
  echo "stopped the second node of the local cluster ($DIR); the head keeps running"
  exit 0
fi
rm -f "$DIR/head.address" "$DIR/dashboard.address"
echo "stopped the local cluster ($DIR)"
