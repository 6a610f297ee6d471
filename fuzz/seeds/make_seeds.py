#!/usr/bin/env python3
"""Writes fuzz/fixtures/keys.json and the seed corpora fuzz/corpus/<target>/seed-*.

The seeds are derived from the project's tests (tokens, JWKS, configurations, paths, header
values), the design examples and a handful of Wycheproof JWS/JWK vectors (read from
$SHARED/testdata/wycheproof, never copied whole). Run once when the targets' input formats change:

    python3 fuzz/seeds/make_seeds.py        # needs the `cryptography` package for Ed25519

The output is deterministic (Ed25519 and HMAC are deterministic; no randomness is used).
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import sys

FUZZ = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("SHARED", FUZZ.parent.parent / "shared"))
WYCHEPROOF = SHARED / "testdata" / "wycheproof"
NOW = 1_790_000_000  # the tests' clock (tests/engine.rs); the targets use the same

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError:  # pragma: no cover
    sys.exit("make_seeds.py needs the cryptography package (pip install cryptography)")


def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


# --- keys ---------------------------------------------------------------------------------------
# HMAC: Wycheproof's kid-aes-sign key (32 bytes). Ed25519: RFC 8037 Appendix A.1.
HMAC_KID = "kid-aes-sign"
HMAC_K = "-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE"
ED_KID = "ed-rfc8037"
ED_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
ED_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
ED = Ed25519PrivateKey.from_private_bytes(unb64(ED_D))

jws = json.loads((WYCHEPROOF / "json_web_signature_test.json").read_text())
jwk_doc = json.loads((WYCHEPROOF / "json_web_key_test.json").read_text())


def group(comment, kid):
    for g in jws["testGroups"]:
        k = g.get("public") or g.get("private") or {}
        if g["comment"] == comment and k.get("kid") == kid:
            return g, k
    raise KeyError((comment, kid))


rsa_sign_g, rsa_sign = group("rs256", "kid-rsa-sign")
rs2048_g, rs2048 = group("rs256", "RS256_2048")
ps2048_g, ps2048 = group("ps256", "PS256_2048")
ec_g, ec = group("es256", "kid-ec-sign")
ec_special_g, _ = group("SpecialCaseEs256", "kid-ec-sign")
hs_g, hs = group("hs256", "kid-aes-sign")


def pub(k, **extra):
    out = {f: k[f] for f in ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y") if f in k}
    out.update(extra)
    return out


public_keys = [
    pub(rsa_sign),
    pub(rs2048),
    pub(ps2048),
    pub(ec),
    {"kty": "OKP", "crv": "Ed25519", "kid": ED_KID, "alg": "EdDSA", "use": "sig", "x": ED_X},
]
hmac_key = {"kty": "oct", "kid": HMAC_KID, "alg": "HS256", "use": "sig", "k": HMAC_K}
mixed = {"keys": public_keys + [hmac_key]}


def valid_tokens(*groups):
    return [t["jws"] for g in groups for t in g["tests"] if t["result"] == "valid" and isinstance(t.get("jws"), str)]


def hs256(header, claims, key=unb64(HMAC_K)):
    si = b64(compact(header)) + "." + b64(compact(claims))
    return si + "." + b64(hmac.new(key, si.encode(), hashlib.sha256).digest())


def eddsa(header, claims):
    si = b64(compact(header)) + "." + b64(compact(claims))
    return si + "." + b64(ED.sign(si.encode()))


RFC8037_A4 = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." \
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"

known = valid_tokens(rsa_sign_g, rs2048_g, ps2048_g, ec_g, ec_special_g)
fixtures = {
    "comment": "Keys and known-good tokens of the jwt/jwks targets: Wycheproof JWS vectors (RSA, EC P-256, "
               "HMAC), RFC 8037 A.1 (Ed25519). Written by fuzz/seeds/make_seeds.py.",
    "jwks": mixed,
    "hmac_jwks": {"keys": [hmac_key]},
    "ed25519_seed": ED_D,
    "hmac_k": HMAC_K,
    "known_public_tokens": known,
}
(FUZZ / "fixtures" / "keys.json").write_text(json.dumps(fixtures, indent=1) + "\n")


# --- corpora ------------------------------------------------------------------------------------
def write(target, items):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = item.encode()
        (d / f"seed-{i:03d}").write_bytes(item)
    print(f"{target}: {len(items)} seeds")


claims_ok = {"iss": "https://fuzz.example", "aud": "api", "sub": "user_1", "exp": NOW + 600, "iat": NOW - 10,
             "azp": "https://app.example", "org_id": "org_1", "scope": "read write", "o": {"id": "org_2", "per": "a:read, b:write"}}
jwt_seeds = [
    hs256({"alg": "HS256", "kid": HMAC_KID}, claims_ok),
    hs256({"alg": "HS256"}, claims_ok),
    hs256({"alg": "HS256", "kid": HMAC_KID}, {**claims_ok, "exp": NOW - 120}),
    hs256({"alg": "HS256", "kid": HMAC_KID}, {**claims_ok, "sts": "pending", "aud": ["x", "api"]}),
    hs256({"alg": "HS384", "kid": HMAC_KID}, claims_ok),
    hs256({"alg": "none"}, claims_ok),
    hs256({"alg": "HS256", "crit": ["exp"]}, claims_ok),
    hs256({"alg": "HS256", "b64": False}, claims_ok),
    hs256({"alg": "HS256", "kid": 7}, claims_ok),
    hs256({"alg": "HS256", "kid": "k"}, {"sub": "u"}, b"0123456789abcdef0123456789abcdef"),  # src/jwt/tests.rs
    hs256({"alg": "HS256"}, "text"),
    eddsa({"alg": "EdDSA", "kid": ED_KID}, claims_ok),
    eddsa({"alg": "EdDSA"}, {**claims_ok, "nbf": NOW + 3600}),
    RFC8037_A4,
    "a.b",
    "a.b.c.d",
    "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",  # tests/engine.rs
] + known[:6] + valid_tokens(hs_g) + [t["jws"] for t in ec_special_g["tests"][1:4]] \
  + [t["jws"] for t in rsa_sign_g["tests"][1:4]]
write("jwt", jwt_seeds)

jwks_seeds = [compact(mixed), compact({"keys": [hmac_key]}), compact({"keys": public_keys[:1]}),
              compact({"keys": [public_keys[3], public_keys[4]]})]
for g in jwk_doc["testGroups"][:26]:
    k = g.get("public") or g.get("private")
    if k and len(compact(k)) < 3000:
        jwks_seeds.append(compact(k))
jwks_seeds += [
    compact({"keys": [  # src/jwt/tests.rs: unusable entries are skipped
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": b64(bytes([1] * 32)), "y": b64(bytes([2] * 32))},
        {"kty": "RSA", "kid": "small", "n": b64(bytes([0xff] * 128)), "e": "AQAB"},
        {"kty": "oct", "kid": "ops", "key_ops": ["sign"], "k": b64(b"0123456789abcdef0123456789abcdef")},
        {"kty": "weird"},
        {"kty": "oct", "kid": "good", "k": b64(b"0123456789abcdef0123456789abcdef")}]}),
    '{"keys": 1}',
    "<html>",
    compact({"keys": [public_keys[3], {**public_keys[3], "alg": "ES384"}]}),  # duplicate kid
]
# The structured half of the target reads its own format from the same bytes.
jwks_seeds += [bytes(range(i, i + 48)) for i in (0, 64, 128)]
write("jwks", jwks_seeds)

examples = sorted((FUZZ.parent / "examples").glob("0*.json"))
config_seeds = [p.read_bytes() for p in examples]
ex001 = json.loads((FUZZ.parent / "examples" / "001-tenant-jwt-webhooks.json").read_text())
for w in ex001.get("webhooks", {}).values():
    w["secrets"] = [{"value": "whsec_FUZZ_SECRET"}, {"env": "FUZZ_MISSING"}]
config_seeds.append(compact(ex001))
config_seeds += [
    compact({"api_keys": {"prefixes": ["cm_"], "keys": [{"id": "a", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "status": "whsec_FUZZ_SECRET"}]}}),
    compact({"api_keys": {"prefixes": ["cm_"], "keys": [{"id": "a", "sha256": "whsec_FUZZ_SECRET"}]}}),
    compact({"unmatched": "whsec_FUZZ_SECRET"}),
    compact({"routes": [{"match": {"prefix": "/"}, "auth": "whsec_FUZZ_SECRET"}]}),
    compact({"webhooks": {"w": {"secrets": [{"value": "whsec_FUZZ_SECRET", "env": "X"}]}}}),
    compact({"webhooks": {"w": {"secrets": [{"env": "FUZZ_MISSING"}]}}}),
    compact({"providers": {"p": {"issuer": "https://i", "algorithms": ["HS256"], "jwks": {"inline": {"keys": [
        {"kty": "oct", "k": b64(b"whsec_FUZZ_SECRET_whsec_FUZZ_SECRET")}]}}}}}),
    compact({"routes": [{"match": {"template": "/a/{x...}/b"}, "auth": "none"}]}),
    compact({"api_keys": {"prefixes": ["cm_"], "keys": [{"id": "k1", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a"}]},
             "routes": [{"match": {"template": "/t/{tool}"}, "auth": {"scopes": ["tools:{tol}"]}}]}),
    compact({"error_formats": {"mine": {"reasons": {"role_required": {"status": 200}}}}}),
    compact({"forward": {"headers": {"x-user": "subjet"}}}),
    compact({"protected_resource": {"resource": "http://api.example/v1", "paths": ["/m"]}}),
    '{"api_keys": {"prefixes": ["cm_secret"',
    '"just a string"',
]
# Structured mode: a selector byte (not '{' or whitespace) picks an example, the rest are edits.
config_seeds += [bytes([i]) + bytes(range(17 * i, 17 * i + 40)) for i in range(5)]
write("config", config_seeds)

routes_seeds = [
    "/v1/tools/agents/{tool}\n/v1/tools/agents/run\n\nGET\nrun",
    "/v1/tools/agents/{tool}\n/v1/tools/agents/\nPOST\nPOST",
    "/v1/tools/agents/{tool}\n/v1/tools/agents/run/extra\n\nGET",
    "/api/v1/bots/{id}/messages/{mid}\n/api/v1/bots/7/messages/9\nGET,post\nPOST\n7,9",
    "/files/{path...}\n/files/a/b/c.txt\n\nGET\na/b/c.txt",
    "/files/{path...}\n/files/\n\nGET",
    "/\n/\n\nGET",
    "/a/b\n/a/b/\n\nGET",
    "/a/{x}/{x}\n/a/1/2\n\nGET",
    "/a/pre{x}\n/a/prex\n\nGET",
    "/a/{}\n/a/b\n\nGET",
    "/v1/search\n/v1/search?q=a/b\nPOST\nPOST",
    "/v1/search\n/v1/search#frag\n\nGET",
    "/health\n/healthz\nGET,HEAD\nHEAD",
    "/api/\n/api/x\n\nDELETE",
    "/api/\n/apix\n\nDELETE",
    "/v1/\n/v1/anything?x=1\nGET\nget",
    "/api/v1/bots\n/api/v1/bots/42\nGET\nGET",
    "/v1/.well-known/oauth-protected-resource\n/v1/.well-known/oauth-protected-resource\nGET\nGET",
    # Route matching judges the request the upstream serves (docs/configuration.md): parameters, trailing
    # slashes, segment-boundary prefixes, HEAD as GET, lower-case methods.
    "/api/admin/\n/api/admin;x/users\n\nGET",
    "/v1/admin\n/v1/admin;/settings\n\nGET",
    "/v1/tools/platform/roadmap-items\n/v1/tools/platform/roadmap-items;a\nGET\nGET",
    "/v1/tools/platform/roadmap-items\n/v1/tools/platform/roadmap-items/\nGET,HEAD\nHEAD",
    "/v1/tools/agents/{tool}\n/v1/tools/agents/deploy/\n\nPOST\ndeploy",
    "/v1/tools/agents/{tool}/\n/v1/tools/agents/deploy;x\n\nPOST\ndeploy",
    "/v1/mcp\n/v1/mcp-admin\n\nGET",
    "/v1/mcp/\n/v1/mcp\n\nget",
    "/\n/x/y\n\nGET",
    "/health/\n/health\nHEAD\nHEAD",
    "/a/b\n/a/;x/b\n\nGET",
    "/\n/;x/\n\nGET",
    "/api/admin/\n/api/admin%3bx/users\n\nGET",
]
write("routes", routes_seeds)

BODY = b'{"event":"incident.created","incidentId":"inc_01HX9VT"}'


def sig_hex(secret, msg):
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sig_b64(secret, msg):
    return base64.b64encode(hmac.new(secret, msg, hashlib.sha256).digest()).decode()


S = b"whsec_FUZZ_SECRET"
headers_seeds = [
    b"authorization: Bearer cm_abc\n\n",
    b"authorization: bearer   cm_abc  \n\n",
    b"authorization: BEARER eyJhbGciOiJIUzI1NiJ9.e30.sig\n\n",
    b"x-api-key: cm_abc\n\n",
    b"x-api-key: cm_k\nauthorization: Bearer cm_a\n\n",
    b"authorization: Basic dXNlcjpwYXNz\n\n",
    b"authorization: Bearer\n\n",
    b"authorization: Bearer a b\n\n",
    b"authorization: Bearer cm_\xff\xfe\n\n",
    b"x-api-key: cm_\xff\n\n",
    b"x-api-key:   \n\n",
    b"x-other: cm_abc\n\n",
    b"x-api-key: cm_a\nx-api-key: cm_a\nx-api-key: cm_a\nx-api-key: cm_a\nx-api-key: cm_a\n\n",
    b"x-webhook-signature: sha256=" + sig_hex(S, BODY).encode() + b"\n\n" + BODY,
    b"x-webhook-signature: SHA256=" + sig_hex(S, BODY).upper().encode() + b"\n\n" + BODY,
    b"x-webhook-signature:   sha256=" + sig_hex(b"old_secret", BODY).encode() + b"  \n\n" + BODY,
    b"x-webhook-signature: sha256=00\n\n" + b"a" * 101,
    b"x-signature: v1=" + sig_b64(S, b"1700000000." + BODY).encode()
    + b"\nx-signature-timestamp: 1700000000\n\n" + BODY,
    b"x-signature: v1=" + sig_b64(S, b"1700000000." + BODY).rstrip("=").encode()
    + b"\nx-signature-timestamp: 1700000000\n\n" + BODY,
    b"x-webhook-signature: sha256=" + sig_hex(S, b"").encode() + b"\n\n",
]
write("headers", headers_seeds)


def req(method, path, *headers):
    return "\n".join([method, path] + [f"{n}: {v}" for n, v in headers]).encode()


dash_key = unb64("c2Vzc2lvbi1zaWduaW5nLXNlY3JldC1mb3ItZXhhbXBsZS1vbmx5")
dash = {"iss": "https://api.cm.example", "sub": "user_1", "exp": NOW + 600, "iat": NOW - 10, "org_id": "org_1"}
dash_jwt = hs256({"alg": "HS256", "kid": "session-2026", "typ": "JWT"}, dash, dash_key)
decide_seeds = [
    req("POST", "/v1/chat/completions"),
    req("POST", "/v1/chat/completions", ("authorization", "Bearer cm_example_llm_only")),
    req("POST", "/v1/chat/completions?stream=true", ("authorization", "Bearer cm_example_all_services")),
    req("POST", "/v1/audio/speech", ("authorization", "Bearer cm_example_llm_only")),
    req("POST", "/v1/messages", ("x-api-key", "cm_example_llm_only")),
    req("POST", "/v1/messages", ("x-api-key", "cm_example_revoked")),
    req("GET", "/api/v1/bots/42", ("authorization", "Bearer cm_example_bots_reader")),
    req("DELETE", "/api/v1/bots/42", ("authorization", "Bearer cm_example_bots_reader")),
    req("GET", "/api/v1/bots", ("authorization", "Bearer cm_example_bots_reader"), ("x-api-key", "cm_nope")),
    req("GET", "/api/v1/bots", ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln")),
    req("GET", "/api/v1/bots", ("authorization", "Bearer " + dash_jwt), ("x-organization-id", "org_1")),
    req("POST", "/v1/search", ("authorization", "Bearer " + dash_jwt)),
    req("GET", "/elsewhere", ("authorization", "Bearer cm_example_all_services")),
    req("GET", "/v1/tools/platform/roadmap-items", ("authorization", "Bearer cf_ak_example_full_access")),
    req("POST", "/v1/tools/agents/run", ("authorization", "Bearer cf_ak_example_agents_only")),
    req("POST", "/v1/tools/agents/run", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("GET", "/v1/anything", ("authorization", "Bearer cf_ak_example_expired")),
    req("GET", "/v1/mcp", ("authorization", "Bearer cf_ak_nope")),
    req("GET", "/v1/mcp", ("authorization", "Bearer " + dash_jwt)),
    req("GET", "/v1/.well-known/oauth-protected-resource"),
    req("HEAD", "/v1/.well-known/oauth-protected-resource?x"),
    req("GET", "/v1/anything", ("authorization", "Bearer cf_ak_example_list_roadmap"), ("x-organization-id", "org_other")),
    req("GET", "/v1/anything", ("authorization", "Bearer cf_ak_example_list_roadmap"), ("x-organization-id", "org_abc123"),
        ("x-auth-key-id", "forged")),
    # The requests: parameters, trailing slashes, HEAD, a neighbouring prefix, case.
    req("GET", "/v1/tools/platform/roadmap-items;a", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("POST", "/v1/tools/platform/roadmap-items/", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("POST", "/v1/tools/agents/deploy/", ("authorization", "Bearer cf_ak_example_agents_only")),
    req("HEAD", "/v1/tools/platform/roadmap-items", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("GET", "/v1/mcp-admin", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("get", "/v1/mcp", ("authorization", "Bearer cf_ak_example_full_access")),
    req("GET", "/api/admin;x/users"),
    req("GET", "/v1/tools/platform/roadmap-items%3Ba", ("authorization", "Bearer cf_ak_example_list_roadmap")),
    req("GET", "/v1/admin;/settings", ("authorization", "Bearer cf_ak_example_full_access")),
    req("HEAD", "/v1/.well-known/oauth-protected-resource/"),
    # Underscore twins, and an organisation outside the principal's (full_access provider).
    req("GET", "/v1/anything", ("authorization", "Bearer cf_ak_example_list_roadmap"), ("x_api_key", "cf_ak_x"),
        ("x_organization_id", "org_other"), ("x_auth_key_id", "forged")),
    req("POST", "/v1/chat/completions", ("authorization", "Bearer " + dash_jwt), ("x-organization-id", "org_2")),
    req("POST", "/v1/chat/completions", ("authorization", "Bearer " + dash_jwt), ("x-organization-id", "org_1")),
    # gRPC as Envoy reads it (issue 25): the exact type, a subtype, and look-alikes that are HTTP.
    req("POST", "/nowhere", ("content-type", "application/grpcforged")),
    req("POST", "/v1/chat/completions", ("content-type", "application/grpc")),
    req("POST", "/v1/audio/speech", ("authorization", "Bearer cm_example_llm_only"), ("content-type", "application/grpc+proto")),
    req("POST", "/v1/chat/completions", ("content-type", "application/grpc-web")),
    req("POST", "/v1/chat/completions", ("content-type", "application/grpc;charset=utf-8")),
    req("POST", "/v1/chat/completions", ("content-type", "application/grpc"), ("content-type", "application/grpc")),
    req("GET", "/v1/mcp", ("content-type", "Application/grpc")),
    # Token cookies (the target gives 002's provider from_cookies __session and an authorized
    # party) and filter state (the target gives 003 filter_state).
    req("GET", "/api/v1/bots", ("cookie", "a=1; __session=" + dash_jwt + "; b=2")),
    req("POST", "/v1/chat/completions", ("cookie", "__session=" + dash_jwt)),
    req("POST", "/v1/chat/completions", ("cookie", "__session=" + dash_jwt), ("origin", "https://app.cm.example")),
    req("POST", "/v1/chat/completions", ("cookie", "__session=" + dash_jwt), ("origin", "https://evil.example")),
    req("POST", "/v1/chat/completions", ("cookie", "__session=" + dash_jwt), ("authorization", "Bearer cm_example_llm_only")),
    req("GET", "/v1/tools/platform/roadmap-items", ("authorization", "Bearer cf_ak_example_full_access"), ("x-organization-id", "org_abc123")),
]
write("decide", decide_seeds)

# canonical: options line, `METHOD PATH`, then `route ...` lines (none: the target's default
# table) and `name: value` headers (fuzz/fuzz_targets/canonical.rs).
canonical_seeds = [
    "reject\nGET /api/admin;x/users\nx-api-key: k_all",
    "strip\nGET /api/admin;x/users\nx-api-key: k_all",
    "reject\nGET /v1/admin;/settings\nx-api-key: k_all",
    "strip\nGET /v1/admin;/settings\nx-api-key: k_agents",
    "strip\nGET /v1/tools/platform/roadmap-items;a\nx-api-key: k_list",
    "reject\nGET /v1/tools/platform/roadmap-items;a\nx-api-key: k_list",
    "reject\nPOST /v1/tools/platform/roadmap-items/\nx-api-key: k_list",
    "reject\nPOST /v1/tools/agents/deploy/\nx-api-key: k_agents",
    "strip\nPOST /v1/tools/agents/deploy;v=2/\nauthorization: Bearer k_agents",
    "reject\nHEAD /v1/tools/platform/roadmap-items\nx-api-key: k_list",
    "reject\nHEAD /v1/.well-known/oauth-protected-resource/",
    "reject\nGET /v1/mcp-admin\nx-api-key: k_all",
    "reject\nGET /v1/mcp/\nx-api-key: k_revoked",
    "allow\nget /v1/mcp",
    "reject\nGET /files/a/b/\nx-api-key: k_all",
    "strip\nGET /a/;x/b",
    "strip\nGET /;x/",
    "reject\nGET /api/admin%3bx/users\nx-api-key: k_all",
    "strip\nGET /api/admin%3Bx/users\nx-api-key: k_all",
    "reject router=admin-console\nGET /api/admin;x/users\nx-api-key: k_all",
    "strip router=admin-console\nHEAD /v1/mcp-admin/\nx-api-key: k_all",
    "strip meta=api_auth.tier=gold\nGET /v1/tools/agents/deploy;x/\nroute GET,HEAD meta api_auth.tier=gold scope:gold\n"
    "route * template /v1/tools/agents/{tool} key,scope:tools:agents.{tool}\nroute * prefix / none\nx-api-key: k_agents",
    "strip allow\nHEAD /v1/mcp/;jsessionid=1\nroute GET,HEAD prefix /v1/mcp/ key\nroute * prefix / none\n"
    "x_api_key: k_all\nauthorization: Bearer k_agents",
    "reject\nPOST /files/a/b/\nroute * template /files/{path...}/ scope:files.{path}\nroute * prefix / none\nx-api-key: k_all",
    "reject\nGET /x\nroute HEAD path /x none",
    "reject\nGET /x/\nroute get path /x/ none\nroute * prefix / key",
    "strip\nDELETE /api/v1/bots;x/7?force=1\nroute GET prefix /api/v1/bots scope:bots:read\n"
    "route * template /api/v1/bots/{id} scope:bots:write.{id}\nroute * prefix / none\nx-api-key: k_all",
]
write("canonical", canonical_seeds)
