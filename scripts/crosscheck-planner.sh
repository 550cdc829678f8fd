#!/usr/bin/env bash
# Developer check, not part of the build or CI: plans generated capacity-bound instances with Purser and
# solves the same integer programs exactly with HiGHS (scipy, installed from PyPI into .build/), then prints
# Purser's cost over the optimum for each.
#
#   bash scripts/crosscheck-planner.sh [SIZES] [INSTANCES] [SECONDS]
#   bash scripts/crosscheck-planner.sh 1000,2000,5000 3 300
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-500,1000,2000,5000}
instances=${2:-3}
seconds=${3:-300}
venv=.build/crosscheck-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet scipy numpy
fi
swift build -c release --product purser-bench >/dev/null
work=.build/crosscheck
rm -rf "$work"
.build/release/purser-bench --phase crosscheck --sizes "$sizes" --instances "$instances" --work "$work"
echo
"$venv/bin/python" scripts/crosscheck_planner.py "$work/crosscheck/instance-*.json" "$seconds"
