//! API-key digests, and the demo issuer's key: generated on first use, its JWKS, and RS256
//! tokens with any claims. The demo key is for local testing only.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::algorithms::RS256KeyPair;
use serde_json::{json, Map, Value};

use crate::args::{self, Arg, Parser};
use crate::failure::{err, Failure};
use crate::util;

/// The issuer of demo tokens unless `--iss` says otherwise; `make run`'s provider uses it.
pub const DEMO_ISSUER: &str = "https://demo-issuer.local";

pub const HASH_HELP: &str = "\
Usage: api-auth hash-key KEY|-

Prints the SHA-256 digest of an API key as 64 lower-case hex digits: the value of
`api_keys.keys[].sha256` (the filter never holds the key itself). With `-` the key is the
first line of standard input (keeps it out of the shell history and the process list).

Options:
  -h, --help   this text
";

pub const MINT_HELP: &str = "\
Usage: api-auth mint-token [options]

FOR LOCAL TESTING ONLY. Prints an RS256 JWT signed with the demo key, which is generated on
first use (2048-bit RSA, file mode 0600) and is nobody's production key: never configure its
JWKS where real traffic is authenticated.

Claims: iss, sub, aud (when given), org_id (when given), iat, nbf and exp (now + ttl), then
every member of --claims (which wins over the ones before).

Options:
  --key FILE       the demo key (PEM); default $API_AUTH_DEMO_KEY, else
                   <temp dir>/api-auth-demo/demo-key.pem. Created when missing.
  --kid K          the token's `kid` (default: the key's RFC 7638 thumbprint, as `jwks` uses)
  --iss URL        default https://demo-issuer.local
  --sub S          default user_demo
  --aud A          an audience; repeat for several (an array)
  --org ID         the organisation, as `org_id` (a default claim path of providers)
  --claims JSON    a JSON object merged into the claims, e.g.
                   '{\"scope\":\"bots:read\",\"permissions\":[\"llm\"],\"o\":{\"rol\":\"admin\"}}'
  --ttl SECONDS    lifetime (default 3600); negative: a token that expired that long ago
                   (issued an hour before it expired)
  -h, --help       this text

Example:
  api-auth jwks --key .tools/demo-issuer/key.pem > jwks.json
  TOKEN=$(api-auth mint-token --key .tools/demo-issuer/key.pem --org org_demo)
  api-auth explain config.json GET /api/me -H \"authorization: Bearer $TOKEN\" --jwks jwks.json
";

pub const JWKS_HELP: &str = "\
Usage: api-auth jwks [--key FILE] [--kid K]

FOR LOCAL TESTING ONLY. Prints the JWKS (public key only) of the demo key that `mint-token`
signs with, generating the key on first use. Serve it with `api-auth demo-issuer`, give it to
`api-auth explain --jwks`, or inline it in a test configuration.

Options:
  --key FILE   the demo key (see `api-auth mint-token --help`)
  --kid K      the key's `kid` (default: its RFC 7638 thumbprint)
  -h, --help   this text
";

pub fn hash_key(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let mut key = None;
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(HASH_HELP.to_string()),
            Arg::Flag(f, _) => return Err(args::unknown(&f)),
            Arg::Pos(v) if key.is_none() => key = Some(v),
            Arg::Pos(_) => return Err(Failure::Usage("one KEY only".into())),
        }
    }
    let key = key.ok_or_else(|| Failure::Usage("KEY (or - for standard input) is required".into()))?;
    let bytes = if key == "-" {
        let input = util::read_input("-")?;
        let line = input.split(|b| *b == b'\n').next().unwrap_or_default();
        line.strip_suffix(b"\r").unwrap_or(line).to_vec()
    } else {
        key.into_bytes()
    };
    if bytes.is_empty() {
        return Err(err("the key is empty"));
    }
    Ok(format!("{}\n", api_auth_filter::text::hex(&api_auth_filter::apikeys::digest(&bytes))))
}

/// The demo key and its `kid`.
pub struct DemoKey {
    pair: RS256KeyPair,
    pub kid: String,
}

impl DemoKey {
    /// Loads the key at `path`, or creates it there when missing.
    pub fn open(path: Option<String>, kid: Option<String>) -> Result<DemoKey, Failure> {
        let path = path.map(PathBuf::from).unwrap_or_else(default_key_path);
        let pair = load_or_create(&path)?;
        let kid = kid.unwrap_or_else(|| pair.jwk_thumbprint());
        Ok(DemoKey { pair, kid })
    }

    pub fn jwks(&self) -> Value {
        let c = self.pair.public_key().to_components();
        json!({ "keys": [ { "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                            "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e) } ] })
    }

    /// An RS256 compact JWS over exactly these claims.
    pub fn sign(&self, claims: &Value) -> Result<String, Failure> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let der = self.pair.to_der().map_err(|_| err("cannot encode the demo key"))?;
        let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der))
            .map_err(|_| err("cannot decode the demo key"))?;
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
        let sig = signer.try_sign(input.as_bytes()).map_err(|_| err("cannot sign with the demo key"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_vec())))
    }
}

fn default_key_path() -> PathBuf {
    match std::env::var_os("API_AUTH_DEMO_KEY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::temp_dir().join("api-auth-demo").join("demo-key.pem"),
    }
}

fn load_or_create(path: &Path) -> Result<RS256KeyPair, Failure> {
    match std::fs::read_to_string(path) {
        Ok(pem) => return parse_pem(path, &pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("cannot read {}: {e}", path.display()))),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let pair = RS256KeyPair::generate(2048).map_err(|_| err("cannot generate an RSA key"))?;
    let pem = pair.to_pem().map_err(|_| err("cannot encode the new key"))?;
    // Written aside, then linked into place: two first uses at once agree on one key, and a
    // half-written file is never read.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_private(&tmp, pem.as_bytes())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            util::print_err(&format!("api-auth: generated a demo signing key (local testing only) at {}\n", path.display()));
            Ok(pair)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pem = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            parse_pem(path, &pem)
        }
        Err(e) => Err(err(format!("cannot write {}: {e}", path.display()))),
    }
}

fn parse_pem(path: &Path, pem: &str) -> Result<RS256KeyPair, Failure> {
    RS256KeyPair::from_pem(pem).map_err(|_| err(format!("{} is not an RSA private key in PEM form", path.display())))
}

fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// `--key` and `--kid`, shared by `mint-token`, `jwks` and `demo-issuer`; false when the flag is
/// not one of them.
pub fn take_key_flag(
    flag: &str,
    inline: Option<String>,
    p: &mut Parser,
    key: &mut Option<String>,
    kid: &mut Option<String>,
) -> Result<bool, Failure> {
    match flag {
        "--key" => *key = Some(p.value(flag, inline)?),
        "--kid" => {
            let k = p.value(flag, inline)?;
            if k.is_empty() {
                return Err(Failure::Usage("--kid must not be empty".into()));
            }
            *kid = Some(k);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

pub fn jwks(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let (mut key, mut kid) = (None, None);
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(JWKS_HELP.to_string()),
            Arg::Flag(f, inline) => {
                if !take_key_flag(&f, inline, &mut p, &mut key, &mut kid)? {
                    return Err(args::unknown(&f));
                }
            }
            Arg::Pos(v) => return Err(Failure::Usage(format!("unexpected argument '{v}'"))),
        }
    }
    let k = DemoKey::open(key, kid)?;
    Ok(format!("{}\n", k.jwks()))
}

pub fn mint_token(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let (mut key, mut kid) = (None, None);
    let mut iss = DEMO_ISSUER.to_string();
    let mut sub = "user_demo".to_string();
    let mut aud: Vec<String> = Vec::new();
    let mut org: Option<String> = None;
    let mut extra: Option<Map<String, Value>> = None;
    let mut ttl: i64 = 3600;
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(MINT_HELP.to_string()),
            Arg::Flag(f, inline) => match f.as_str() {
                "--iss" => iss = p.value(&f, inline)?,
                "--sub" => sub = p.value(&f, inline)?,
                "--aud" => aud.push(p.value(&f, inline)?),
                "--org" => org = Some(p.value(&f, inline)?),
                "--claims" => {
                    let text = p.value(&f, inline)?;
                    match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Object(m)) => extra.get_or_insert_with(Map::new).extend(m),
                        Ok(_) => return Err(Failure::Usage("--claims must be a JSON object".into())),
                        Err(e) => return Err(Failure::Usage(format!("--claims is not JSON: {e}"))),
                    }
                }
                "--ttl" => {
                    let v = p.value(&f, inline)?;
                    ttl = v.parse().map_err(|_| Failure::Usage(format!("--ttl wants seconds, not '{v}'")))?;
                }
                _ => {
                    if !take_key_flag(&f, inline, &mut p, &mut key, &mut kid)? {
                        return Err(args::unknown(&f));
                    }
                }
            },
            Arg::Pos(v) => return Err(Failure::Usage(format!("unexpected argument '{v}'"))),
        }
    }
    let now = util::unix_now();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(iss));
    claims.insert("sub".into(), json!(sub));
    match aud.len() {
        0 => {}
        1 => {
            claims.insert("aud".into(), json!(aud[0]));
        }
        _ => {
            claims.insert("aud".into(), json!(aud));
        }
    }
    if let Some(o) = org {
        claims.insert("org_id".into(), json!(o));
    }
    let exp = now.saturating_add(ttl);
    // An expired token was still issued before it expired: an hour before.
    let iat = if ttl < 0 { exp.saturating_sub(3600) } else { now };
    claims.insert("iat".into(), json!(iat));
    claims.insert("nbf".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    if let Some(extra) = extra {
        claims.extend(extra);
    }
    let k = DemoKey::open(key, kid)?;
    Ok(format!("{}\n", k.sign(&Value::Object(claims))?))
}
