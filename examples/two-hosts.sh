#!/usr/bin/env bash
# Two hosts, one token budget and one task queue, through an etcd cluster (docs/decisions/033 and 037).
# Everything runs here: a local 3-member etcd cluster in a temporary folder, and two host folders
# (host-a, host-b) on one namespace, as two machines would have. Host A sets the budget; each
# host runs its reaper and a pool of 2 workers; host A feeds tasks, and both pools drain them,
# each task done once, on whichever host claimed it first; then `cortex status` from each host.
#
#   examples/two-hosts.sh [TASKS]        (needs etcd: apt-get install etcd-server; and jq)
#
# On real machines: start a cluster (or use one), then on each host the same `cortex init` line
# with the members' URLs, one namespace, and the host's own --host-id (README, "Several machines").
set -euo pipefail
tasks=${1:-20}
command -v etcd >/dev/null || { echo "two-hosts.sh: etcd is not installed (apt-get install etcd-server)" >&2; exit 69; }
command -v jq >/dev/null || { echo "two-hosts.sh: jq is not installed (apt-get install jq)" >&2; exit 69; }

work=$(mktemp -d /tmp/cortex-two-hosts-XXXXXX)
members=() loops=()
cleanup() {
  for pid in "${loops[@]}" "${members[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Three members on loopback ports picked at random (client port c, peer port c+1).
base=$((21000 + RANDOM % 20000))
cluster="" endpoints=""
for i in 0 1 2; do
  c=$((base + 10 * i))
  cluster+="m$i=http://127.0.0.1:$((c + 1)),"
  endpoints+="http://127.0.0.1:$c,"
done
cluster=${cluster%,} endpoints=${endpoints%,}
for i in 0 1 2; do
  c=$((base + 10 * i))
  etcd --name "m$i" --data-dir "$work/m$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))" \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$work/m$i.log" 2>&1 &
  members+=($!)
done
echo "== etcd: 3 members at $endpoints"

# Host A creates the namespace and its budget (75 while the cluster is still electing: again).
host_a=$work/host-a host_b=$work/host-b
for _ in $(seq 60); do
  cortex init --dir "$host_a" --backend etcd --endpoints "$endpoints" --namespace demo --host-id a \
    --total-tokens 100000 >/dev/null 2>&1 && break
  sleep 0.5
done
cortex init --dir "$host_b" --backend etcd --endpoints "$endpoints" --namespace demo --host-id b   # joins: same budget

echo "== a reaper and a pool of 2 workers on each host; host A feeds $tasks tasks"
# Each host's reaper keeps its liveness lease in etcd and judges only its own workers; if a host
# died, the other's reaper would give its tasks back to the queue (docs/decisions/037).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for dir in "$host_a" "$host_b"; do
  cortex-reap --dir "$dir" --every 2s >/dev/null 2>&1 & loops+=($!)
done
# A pool per host: its workers run there, count against that host's max_workers, and claim from
# the one shared queue (examples/task-worker.sh), sleeping on etcd's watch until a task exists.
# 75: queued for room (a loaded machine); the host's reaper starts them when they fit.
for host in a b; do
  dir=$work/host-$host
  IDLE_LIMIT=60s cortex-spawn --dir "$dir" --pool 2 --name "pool-$host" --type demo -- bash "$here/task-worker.sh" >/dev/null \
    || [ $? -eq 75 ]
done
for i in $(seq "$tasks"); do
  cortex-task create --dir "$host_a" --type demo --description "sleep 0.$((RANDOM % 3)); echo item $i" >/dev/null
done

# Host B waits for the queue host A filled: it sleeps on etcd's watch, no polling.
cortex-task wait --all --dir "$host_b" --timeout 3m
for host in a b; do cortex pool stop "pool-$host" --dir "$work/host-$host" --wait 30s >/dev/null; done
on_a=$(cortex-task list --dir "$host_a" --status done --json | jq '[.tasks[] | select(.host == "a")] | length')
on_b=$(cortex-task list --dir "$host_a" --status done --json | jq '[.tasks[] | select(.host == "b")] | length')
echo "done on host a: $on_a, on host b: $on_b"

echo "== cortex-budget allocate on host B, seen on host A"
cortex-budget allocate --dir "$host_b" --tokens 500 --holder b1 >/dev/null
cortex-budget status --dir "$host_a"

echo "== cortex status, host A"
cortex status --dir "$host_a"
echo "== cortex status, host B"
cortex status --dir "$host_b"
