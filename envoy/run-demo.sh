#!/usr/bin/env bash
# `make run`: the echo upstream and Envoy with envoy/envoy.yaml, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENVOY:?run through make run}"
target/debug/echo-upstream 18080 & upstream=$!
"$ENVOY" -c envoy/envoy.yaml --concurrency 1 --log-level warn --use-dynamic-base-id & envoy=$!
trap 'kill $envoy $upstream 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<'TXT'

api-auth-filter is running on http://127.0.0.1:10000 (contract 002: inference keys).
Try:

  # 401, OpenAI error format: no credentials
  curl -si -X POST http://127.0.0.1:10000/v1/chat/completions

  # 200: the llm key may call chat completions (the echo shows what the upstream got:
  # no Authorization, x-auth-key-id set)
  curl -s -X POST http://127.0.0.1:10000/v1/chat/completions -H 'Authorization: Bearer cm_example_llm_only'

  # 403 permission_denied: the llm key may not call text-to-speech
  curl -si -X POST http://127.0.0.1:10000/v1/audio/speech -H 'Authorization: Bearer cm_example_llm_only'

  # Anthropic endpoint with x-api-key
  curl -s -X POST http://127.0.0.1:10000/v1/messages -H 'x-api-key: cm_example_llm_only'

  # 200 then 403 {"detail":"Insufficient scope: bots:write"}
  curl -s http://127.0.0.1:10000/api/v1/bots -H 'Authorization: Bearer cm_example_bots_reader'
  curl -si -X POST http://127.0.0.1:10000/api/v1/bots -H 'Authorization: Bearer cm_example_bots_reader'

  # 401: revoked key
  curl -si http://127.0.0.1:10000/api/v1/bots -H 'Authorization: Bearer cm_example_revoked'

Ctrl-C stops Envoy and the upstream.
TXT
wait $envoy
