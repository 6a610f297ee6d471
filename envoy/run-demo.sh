#!/usr/bin/env bash
# `make run`: the demo issuer, the key service, the echo upstream and Envoy with
# envoy/envoy.yaml, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENVOY:?run through make run}"
cli=target/debug/api-auth
demo=.tools/demo                      # git-ignored: demo keys, tokens, config and access log
key=$demo/issuer-key.pem              # generated on first use; for local testing only
config=$demo/config.json
keys=target/debug/api-auth-keys       # the key service and its command line
kdb=$demo/keys.db                     # its SQLite store (api_keys.lookup, usage_report)
log=$demo/access.log                  # Envoy's access log (its stdout), also shown below
mkdir -p "$demo"

# The demo webhook secret, as envoy.yaml gives it to the wasm VM (a demo value).
secret=$(sed -n 's/.*DEMO_WEBHOOK_SECRET: *\([^ }]*\).*/\1/p' envoy/envoy.yaml)
: "${secret:?no DEMO_WEBHOOK_SECRET in envoy/envoy.yaml}"

# The filter configuration embedded in envoy.yaml (the block under `value: |`), checked with
# the filter's own compiler before Envoy starts: a mistake shows as `routes[3]...: ...` here.
awk '/^[[:space:]]*value: \|[[:space:]]*$/ { grab = 1; indent = -1; next }
     grab && /^[[:space:]]*$/ { print ""; next }
     grab { match($0, /^ */); if (indent < 0) indent = RLENGTH; if (RLENGTH < indent) exit; print substr($0, indent + 1) }' \
  envoy/envoy.yaml > "$config"
"$cli" check --env "DEMO_WEBHOOK_SECRET=$secret" "$config"

# The key service's admin token, made once (the admin API is never served without one), and
# the settings its command line reads, so that the commands printed below stay short.
[ -s "$demo/admin-token" ] || { umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$demo/admin-token"; }
export API_AUTH_KEYS_DB=$kdb API_AUTH_KEYS_PREFIXES=cm_
# The secret Envoy adds to its calls on the demo_keys cluster (a demo value in envoy.yaml).
API_AUTH_KEYS_SERVICE_SECRET=$(sed -n 's/.*key: x-api-auth-keys-secret, value: *\([^ }]*\).*/\1/p' envoy/envoy.yaml)
: "${API_AUTH_KEYS_SERVICE_SECRET:?no x-api-auth-keys-secret in envoy/envoy.yaml}"
export API_AUTH_KEYS_SERVICE_SECRET
API_AUTH_KEYS_ADMIN_TOKEN=$(cat "$demo/admin-token")
export API_AUTH_KEYS_ADMIN_TOKEN
# One key in the key service for the walkthrough, made on first run: not in the static table,
# so the filter asks the service. Shown once by `create`; kept in the git-ignored demo folder.
if [ ! -s "$demo/service-key" ] || [ ! -s "$kdb" ]; then
  "$keys" create --name demo --permission llm --scope bots:read > "$demo/service-key" 2> "$demo/service-key.log" \
    || { cat "$demo/service-key.log" >&2; rm -f "$demo/service-key"; exit 1; }
fi
printf '{"event":"demo.ping","id":"evt_1"}' > "$demo/hook.json"

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

# The demo issuer and the key service; their log lines per request (the key lookups, the usage
# reports) show here.
"$cli" demo-issuer --port 18081 --key "$key" >/dev/null & pids+=($!)
"$keys" serve --listen 127.0.0.1:18082 >/dev/null & pids+=($!)
target/debug/echo-upstream 18080 & pids+=($!)
# The issuer first, so that Envoy's first JWKS fetch finds it.
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18081/.well-known/jwks.json >/dev/null 2>&1 \
    && curl -s -o /dev/null http://127.0.0.1:18082/ && break
  sleep 0.1
done
# The access log (Envoy's stdout) goes to $log, shown below the text by tail; flushed every
# 250 ms instead of Envoy's 10 s.
: > "$log"
"$ENVOY" -c envoy/envoy.yaml --concurrency 1 --log-level warn --use-dynamic-base-id \
  --file-flush-interval-msec 250 >> "$log" & pids+=($!)
envoy=$!
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done

# A probe without credentials, for one real access-log line of a denial.
curl -s -o /dev/null -X POST http://127.0.0.1:10000/v1/chat/completions || true
probe=""
for _ in $(seq 1 40); do
  probe=$(head -n 1 "$log")
  [ -n "$probe" ] && break
  sleep 0.1
done

# Fresh demo tokens (valid one hour), signed with the key the demo issuer serves; in files, so
# that the requests below stay short.
"$cli" mint-token --key "$key" --sub user_demo --org org_demo \
  --claims '{"scope":"bots:read","permissions":["llm"]}' > "$demo/token"
"$cli" mint-token --key "$key" --sub user_demo > "$demo/token-no-org"
"$cli" mint-token --key "$key" --sub user_demo --org org_demo --ttl -600 > "$demo/token-expired"

u=http://127.0.0.1:10000
cat <<TXT

api-auth-filter is running on $u: contract 002 (inference keys), JWTs from the
demo issuer, keys from the demo key service and a signed webhook (local testing only; the
demo issuer is on 127.0.0.1:18081, the key service on 127.0.0.1:18082). Run these from the
repository root ($PWD):

  # 401, OpenAI error format: no credentials
  curl -si -X POST $u/v1/chat/completions

  # 200: the llm key may call chat completions (the echo shows what the upstream got:
  # no Authorization, x-auth-key-id set)
  curl -s -X POST $u/v1/chat/completions \\
    -H 'Authorization: Bearer cm_example_llm_only'

  # 403 permission_denied: the llm key may not call text-to-speech
  curl -si -X POST $u/v1/audio/speech -H 'Authorization: Bearer cm_example_llm_only'

  # Anthropic endpoint with x-api-key
  curl -s -X POST $u/v1/messages -H 'x-api-key: cm_example_llm_only'

  # 200 then 403 {"detail":"Insufficient scope: bots:write"}
  curl -s $u/api/v1/bots -H 'Authorization: Bearer cm_example_bots_reader'
  curl -si -X POST $u/api/v1/bots -H 'Authorization: Bearer cm_example_bots_reader'

  # 401: revoked key
  curl -si $u/api/v1/bots -H 'Authorization: Bearer cm_example_revoked'

The key service (api-auth-keys, cluster demo_keys, SQLite in $kdb) holds keys the
static table does not, as SHA-256 digests only; the filter posts a key's SHA-256 to POST
/v1/keys/lookup (logged below as "api-auth-keys: POST /v1/keys/lookup 200"), caches the
answer for 10 s (cache_ttl_s), and reports last uses every 5 s. One key was made for you
on the first run ($demo/service-key):

  # 200: the upstream sees x-auth-key-id: the key's id
  curl -s -X POST $u/v1/chat/completions \\
    -H "Authorization: Bearer \$(cat $demo/service-key)"

  # 401 key_unknown: neither the table nor the service knows it (the service answers 404)
  curl -si -X POST $u/v1/chat/completions -H 'Authorization: Bearer cm_demo_unknown'

Create a key (printed once: only its digest is stored), use it, revoke it and watch the
filter follow within 10 s. The command line works on the store directly:

  export API_AUTH_KEYS_DB=$kdb API_AUTH_KEYS_PREFIXES=cm_
  k=\$($keys create --name mine --permission llm)
  curl -s -o /dev/null -w '%{http_code}\\n' -X POST $u/v1/chat/completions \\
    -H "Authorization: Bearer \$k"                     # 200
  $keys list                            # ids, status, last_used_at (moves with use)
  $keys revoke <id>                     # the id list printed; then the curl: 401 within 10 s

The same through the admin API (its bearer token: $demo/admin-token):

  curl -s http://127.0.0.1:18082/admin/v1/keys \\
    -H "Authorization: Bearer \$(cat $demo/admin-token)"
  curl -s http://127.0.0.1:18082/admin/v1/keys -H 'content-type: application/json' \\
    -H "Authorization: Bearer \$(cat $demo/admin-token)" -d '{"permissions":["llm"]}'
  curl -s -X POST http://127.0.0.1:18082/admin/v1/keys/<id>/revoke \\
    -H "Authorization: Bearer \$(cat $demo/admin-token)"

A signed webhook: POST /hooks/demo (public, webhook "demo") passes only a body whose
x-webhook-signature is its HMAC-SHA256 under DEMO_WEBHOOK_SECRET (set in envoy/envoy.yaml):

  export DEMO_WEBHOOK_SECRET=$secret
  sig=\$($cli sign-webhook --secret-env DEMO_WEBHOOK_SECRET $demo/hook.json)

  # 200: the signature verifies, the upstream gets the body
  curl -s $u/hooks/demo --data-binary @$demo/hook.json \\
    -H "x-webhook-signature: \$sig"

  # 401 signature_invalid: signed with another secret
  bad=\$($cli sign-webhook --secret not-the-secret $demo/hook.json)
  curl -si $u/hooks/demo --data-binary @$demo/hook.json \\
    -H "x-webhook-signature: \$bad"

Envoy's own filters on the filter's verdict (envoy/envoy.yaml):

  # 403 "RBAC: access denied": the filter allows key_all, the RBAC rule on the filter state
  # it wrote (wasm.api_auth.key_id) blocks that key
  curl -si -X POST $u/v1/chat/completions \\
    -H 'Authorization: Bearer cm_example_all_services'

  # 429 once key_llm has used its 5 requests a minute (the rate limit per x-auth-key-id)
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\\n' -X POST \\
    $u/v1/chat/completions -H 'Authorization: Bearer cm_example_llm_only'; done

  # a gRPC caller gets HTTP 200, grpc-status: 16 and grpc-message instead of a JSON body
  curl -si -X POST $u/v1/chat/completions -H 'content-type: application/grpc'

  # the filter's counters, labelled by reason and credential kind
  curl -s http://127.0.0.1:9901/stats/prometheus | grep '^api_auth_'

JWTs minted just now by \`$cli mint-token\` into $demo/ (token: sub user_demo,
org_id org_demo, scope bots:read, permissions [llm]; token-no-org; token-expired), verified
with the keys the filter fetched from the demo issuer:

  # 200: the upstream sees x-auth-subject: user_demo, x-auth-organization: org_demo
  curl -s $u/api/v1/me -H "Authorization: Bearer \$(cat $demo/token)"

  # 200 on an inference route (permissions claim), 403 on bots:write (scope claim)
  curl -s -X POST $u/v1/chat/completions \\
    -H "Authorization: Bearer \$(cat $demo/token)"
  curl -si -X POST $u/api/v1/bots -H "Authorization: Bearer \$(cat $demo/token)"

  # 403 {"detail":"Organization required"}: a token without an organisation
  curl -si $u/api/v1/me -H "Authorization: Bearer \$(cat $demo/token-no-org)"

  # 401 {"detail":"Could not validate credentials"}: a token that expired ten minutes ago
  curl -si $u/api/v1/me -H "Authorization: Bearer \$(cat $demo/token-expired)"

Mint others, and ask the CLI what the filter decides and why (same config, same engine):

  $cli mint-token --key $key \\
    --org org_x --claims '{"scope":"bots:*"}'
  $cli explain $config POST /api/v1/bots \\
    -H 'Authorization: Bearer cm_example_bots_reader'
  $cli jwks --key $key > $demo/jwks.json
  $cli explain $config GET /api/v1/me \\
    --jwks $demo/jwks.json \\
    -H "Authorization: Bearer \$(cat $demo/token)"

Each request prints one access-log line below (also in $log): the status, why
(api_auth.<reason> for the filter's own denials, via_upstream, RBAC's or the rate limit's
reason) and the principal, never a credential. The probe just sent without credentials:

  ${probe:-(no line yet: see $log)}

Ctrl-C stops Envoy, the upstream, the key service and the demo issuer.

--- access log (and the key service's requests) ---
TXT
tail -n 0 -f "$log" & pids+=($!)
wait "$envoy"
