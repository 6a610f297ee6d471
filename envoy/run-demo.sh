#!/usr/bin/env bash
# `make run`: the demo issuer, the echo upstream and Envoy with envoy/envoy.yaml, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENVOY:?run through make run}"
cli=target/debug/api-auth
demo=.tools/demo                      # git-ignored: the demo key and the extracted config
key=$demo/issuer-key.pem              # generated on first use; for local testing only
config=$demo/config.json
mkdir -p "$demo"

# The filter configuration embedded in envoy.yaml (the block under `value: |`), checked with
# the filter's own compiler before Envoy starts: a mistake shows as `routes[3]...: ...` here.
awk '/^[[:space:]]*value: \|[[:space:]]*$/ { grab = 1; indent = -1; next }
     grab && /^[[:space:]]*$/ { print ""; next }
     grab { match($0, /^ */); if (indent < 0) indent = RLENGTH; if (RLENGTH < indent) exit; print substr($0, indent + 1) }' \
  envoy/envoy.yaml > "$config"
"$cli" check "$config"

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

"$cli" demo-issuer --port 18081 --key "$key" >/dev/null & pids+=($!)
target/debug/echo-upstream 18080 & pids+=($!)
# The issuer first, so that Envoy's first JWKS fetch finds it.
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18081/.well-known/jwks.json >/dev/null 2>&1 && break
  sleep 0.1
done
# The access log goes to stdout (below the text); flushed every 250 ms instead of Envoy's 10 s.
"$ENVOY" -c envoy/envoy.yaml --concurrency 1 --log-level warn --use-dynamic-base-id \
  --file-flush-interval-msec 250 & pids+=($!)
envoy=$!
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done

# Fresh demo tokens (valid one hour), signed with the key the demo issuer serves.
token=$("$cli" mint-token --key "$key" --sub user_demo --org org_demo \
  --claims '{"scope":"bots:read","permissions":["llm"]}')
no_org=$("$cli" mint-token --key "$key" --sub user_demo)
expired=$("$cli" mint-token --key "$key" --sub user_demo --org org_demo --ttl -600)

cat <<TXT

api-auth-filter is running on http://127.0.0.1:10000: contract 002 (inference keys) and JWTs
from the demo issuer (http://127.0.0.1:18081/.well-known/jwks.json, local testing only).
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

Envoy's own filters on the filter's verdict (envoy/envoy.yaml); each request prints one
access-log line here, with the reason of a denial (api_auth.<reason>) or the principal:

  # 403 "RBAC: access denied": the filter allows key_all, the RBAC rule on the filter state it
  # wrote (wasm.api_auth.key_id) blocks that key
  curl -si -X POST http://127.0.0.1:10000/v1/chat/completions -H 'Authorization: Bearer cm_example_all_services'

  # 429 once key_llm has used its 5 requests a minute (the rate limit per x-auth-key-id)
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\n' -X POST http://127.0.0.1:10000/v1/chat/completions -H 'Authorization: Bearer cm_example_llm_only'; done

  # a gRPC caller gets HTTP 200, grpc-status: 16 and grpc-message instead of a JSON body
  curl -si -X POST http://127.0.0.1:10000/v1/chat/completions -H 'content-type: application/grpc'

  # the filter's counters, labelled by reason and credential kind
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^api_auth_'

JWTs minted just now by \`$cli mint-token\` (sub user_demo, org_id org_demo, scope bots:read,
permissions [llm]); Envoy verifies them with the keys it fetched from the demo issuer:

  # 200: the upstream sees x-auth-subject: user_demo, x-auth-organization: org_demo
  curl -s http://127.0.0.1:10000/api/v1/me -H 'Authorization: Bearer $token'

  # 200 on an inference route (permissions claim), 403 on bots:write (scope claim)
  curl -s -X POST http://127.0.0.1:10000/v1/chat/completions -H 'Authorization: Bearer $token'
  curl -si -X POST http://127.0.0.1:10000/api/v1/bots -H 'Authorization: Bearer $token'

  # 403 {"detail":"Organization required"}: a token without an organisation
  curl -si http://127.0.0.1:10000/api/v1/me -H 'Authorization: Bearer $no_org'

  # 401 {"detail":"Could not validate credentials"}: a token that expired ten minutes ago
  curl -si http://127.0.0.1:10000/api/v1/me -H 'Authorization: Bearer $expired'

Mint others, and ask the CLI what the filter decides and why (same config, same engine):

  $cli mint-token --key $key --org org_x --claims '{"scope":"bots:*"}'
  $cli explain $config POST /api/v1/bots -H 'Authorization: Bearer cm_example_bots_reader'
  $cli jwks --key $key > $demo/jwks.json
  $cli explain $config GET /api/v1/me --jwks $demo/jwks.json -H "Authorization: Bearer \$($cli mint-token --key $key --org org_x)"

Ctrl-C stops Envoy, the upstream and the demo issuer.
TXT
wait "$envoy"
