#!/usr/bin/env bash
# Publishes `coord` and `volume` as self-contained single-file executables: no .NET runtime needed on the
# target, native RocksDB/BLAKE3 libraries bundled inside (extracted to $DOTNET_BUNDLE_EXTRACT_BASE_DIR,
# default ~/.net, on first start).
#   scripts/publish.sh [OUT_DIR]      (default dist/RID; RID from $RID, default linux-x64)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
rid=${RID:-linux-x64}
out=$(realpath -m "${1:-dist/$rid}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
for project in NanoKv.Coordinator:coord NanoKv.Volume:volume; do
  # Each into its own folder: coord references the volume project (for `coord dev`), and their outputs overlap.
  dotnet publish "src/${project%%:*}" -c Release -r "$rid" --self-contained true \
    -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:DebugType=none \
    -o "$work/${project#*:}" --nologo -v quiet
  install -m 0755 "$work/${project#*:}/${project#*:}" "$out/${project#*:}"
done
ls -l "$out/coord" "$out/volume"
