#!/usr/bin/env bash
# Makes .build/sdk-venv with the official openai and anthropic Python SDKs and Selenium, pinned, for the tests that check
# Purser's output against the SDKs' own types and drive `purser serve` and its dashboard with them. Installs from PyPI
# once; does nothing when the pinned versions are already there. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/sdk-venv
pins="openai==3.57.0 anthropic==2.15.0 selenium==4.51.0"
marker="$venv/.pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$marker" 2>/dev/null)" != "$pins" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
  echo "$pins" > "$marker"
fi
echo "$PWD/$venv/bin/python"
