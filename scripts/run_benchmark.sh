#!/usr/bin/env bash
# Benchmark nanokv like the seed's k6 script, with the same positional arguments:
#   scripts/run_benchmark.sh [volumes] [replicas] [coord_port] [volume_start_port] [vus] [duration] [size_bytes]
# Builds in Release, launches a local cluster (child processes on 127.0.0.1), runs PUT, GET and mixed
# phases, measures the disk's fsync'd write and read ceilings for the same bytes, prints a table and
# writes JSON under bench-results/. Extra flags after the positionals go to the bench (see --help).
set -euo pipefail
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo
  exec dotnet run -c Release --project "$(dirname "$0")/../src/NanoKv.Bench" -- --help
fi
volumes=${1:-3}
replicas=${2:-3}
coord_port=${3:-3000}
volume_port=${4:-3001}
vus=${5:-16}
duration=${6:-30s}
size=${7:-16777216}
shift $(( $# < 7 ? $# : 7 ))
cd "$(dirname "$0")/.."
exec dotnet run -c Release --project src/NanoKv.Bench -- \
  --volumes "$volumes" --replicas "$replicas" --coord-port "$coord_port" --volume-port "$volume_port" \
  --concurrency "$vus" --duration "$duration" --size "$size" "$@"
