#!/usr/bin/env bash
# A two-node Ray cluster on this machine: a head node and a second node with resources of its
# own, both on 127.0.0.1, the dashboard (and the Job Submission API) bound to 127.0.0.1 only.
#
#   cluster/local/start.sh            # prints the dashboard address and how to submit
#   cluster/local/stop.sh             # stops these two nodes (and nothing else of Ray's)
#   cluster/local/start.sh node2      # (re)joins the second node to the running head
#
# Settings (environment): RAYSITTER_CLUSTER_DIR (default /tmp/raysitter-cluster: Ray's session
# files and logs), RAY_PORT (GCS, 6390), DASHBOARD_PORT (8266), HEAD_CPUS / NODE2_CPUS (1 / 1),
# VENV (the project's .venv: jobs run with the python that is on PATH when the nodes start).
# Token authentication stays as Ray sets it up (on): clients use ~/.ray/auth_token.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
DIR="${RAYSITTER_CLUSTER_DIR:-/tmp/raysitter-cluster}"
RAY_PORT="${RAY_PORT:-6390}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8266}"
if [ ! -x "$VENV/bin/ray" ]; then
  echo "cluster/local/start.sh: no Ray in $VENV. Fix: run the README's install command first, or set VENV=path/to/venv." >&2
  exit 2
fi
# Ray's unix sockets live under this folder and their paths must stay under 107 bytes.
if [ "${#DIR}" -gt 40 ]; then
  echo "cluster/local/start.sh: RAYSITTER_CLUSTER_DIR=$DIR is ${#DIR} characters; Ray's socket paths below it would exceed the 107-byte limit. Fix: use a short folder, e.g. /tmp/raysitter-cluster." >&2
  exit 2
fi
export PATH="$VENV/bin:$PATH"
# Token authentication: the head creates ~/.ray/auth_token (Ray's default); the second node (and
# every client) must be told to present it.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
export RAY_TRAIN_V2_ENABLED=1 RAY_DEDUP_LOGS=0 RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="${RAY_TRAIN_HEALTH_CHECK_INTERVAL_S:-0.1}"
start_node2() {
  ray start --address "127.0.0.1:$RAY_PORT" --node-ip-address 127.0.0.1 \
    --num-cpus "${NODE2_CPUS:-1}" --resources '{"node2": 1}' \
    --temp-dir "$DIR/node2" --disable-usage-stats \
    --dashboard-agent-listen-port 52411 --dashboard-agent-grpc-port 52412 --runtime-env-agent-port 52413 \
    --metrics-export-port 52414 --min-worker-port 22000 --max-worker-port 22999 >"$DIR/node2.log" 2>&1
}
if [ "${1:-}" = node2 ]; then
  if [ ! -f "$DIR/head.address" ] || ! ray status --address "$(cat "$DIR/head.address")" >/dev/null 2>&1; then
    echo "cluster/local/start.sh node2: no head running from $DIR. Fix: run cluster/local/start.sh (both nodes)." >&2
    exit 1
  fi
  if pgrep -f -- "$DIR/node2/" >/dev/null; then
    echo "cluster/local/start.sh node2: the second node is running already (stop it with cluster/local/stop.sh node2)" >&2
    exit 1
  fi
  RAY_PORT="$(cut -d: -f2 "$DIR/head.address")"
  start_node2 || { echo "cluster/local/start.sh: the second node did not join; see $DIR/node2.log" >&2; tail -20 "$DIR/node2.log" >&2; exit 1; }
  echo "the second node (node2) joined the cluster at $(cat "$DIR/head.address")"
  exit 0
elif [ -n "${1:-}" ]; then
  echo "cluster/local/start.sh: unknown argument '$1'. Fix: pass nothing (both nodes) or node2 (rejoin the second node)." >&2
  exit 2
fi
if [ -f "$DIR/head.address" ] && ray status --address "$(cat "$DIR/head.address")" >/dev/null 2>&1; then
  echo "cluster/local/start.sh: a cluster is already running at $(cat "$DIR/head.address") (stop it with cluster/local/stop.sh)" >&2
  exit 1
fi
mkdir -p "$DIR/head" "$DIR/node2"

ray start --head --node-ip-address 127.0.0.1 --port "$RAY_PORT" \
  --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
  --num-cpus "${HEAD_CPUS:-1}" --resources '{"head_node": 1}' \
  --temp-dir "$DIR/head" --disable-usage-stats \
  --dashboard-agent-listen-port 52401 --dashboard-agent-grpc-port 52402 --runtime-env-agent-port 52403 \
  --metrics-export-port 52404 --min-worker-port 21000 --max-worker-port 21999 --ray-client-server-port "${RAY_CLIENT_PORT:-10201}" >"$DIR/head.log" 2>&1 \
  || { echo "cluster/local/start.sh: the head node did not start; see $DIR/head.log" >&2; tail -20 "$DIR/head.log" >&2; exit 1; }

start_node2 \
  || { echo "cluster/local/start.sh: the second node did not join; see $DIR/node2.log" >&2; tail -20 "$DIR/node2.log" >&2; "$HERE/stop.sh"; exit 1; }

echo "127.0.0.1:$RAY_PORT" > "$DIR/head.address"
# `ray start` reports success even when the dashboard (the Job Submission API) failed: check it.
for _ in $(seq 1 60); do
  code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DASHBOARD_PORT/api/version" || true)"
  [ "$code" != "000" ] && break
  sleep 0.5
done
if [ "$code" = "000" ]; then
  echo "cluster/local/start.sh: the dashboard did not come up on 127.0.0.1:$DASHBOARD_PORT; see $DIR/head/session_latest/logs/dashboard.log" >&2
  "$HERE/stop.sh" >/dev/null
  exit 1
fi
echo "http://127.0.0.1:$DASHBOARD_PORT" > "$DIR/dashboard.address"
echo "Ray cluster: 2 nodes (head_node, node2), GCS 127.0.0.1:$RAY_PORT"
echo "dashboard:   http://127.0.0.1:$DASHBOARD_PORT"
echo "submit:      raysitter submit --address http://127.0.0.1:$DASHBOARD_PORT -- train"
echo "stop:        cluster/local/stop.sh"
