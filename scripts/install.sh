#!/usr/bin/env bash
# Builds purser as one release binary that needs no Swift toolchain on the machine it runs on (the Swift
# runtime linked in with --static-swift-stdlib; the pricing tables built in), and installs it as PREFIX/bin/purser
# (default /usr/local). It still uses the system's libsqlite3 and libcurl, as any Debian program does.
#   bash scripts/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:-/usr/local}"
# Foundation linked in statically links the system's libcurl and libsqlite3 through their -dev packages.
need=()
for package in libsqlite3-dev libcurl4-openssl-dev; do dpkg -s "$package" >/dev/null 2>&1 || need+=("$package"); done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >&2
fi
swift build -c release --static-swift-stdlib --product purser --scratch-path .build-static >&2
install -d "$prefix/bin"
install -m 0755 .build-static/release/purser "$prefix/bin/purser"
echo "installed $prefix/bin/purser"
