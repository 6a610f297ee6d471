//! `api-auth sign-webhook`: the signature a sender puts on a webhook body
//! (docs/configuration.md, "Webhooks"): HMAC-SHA256 over the raw body, or over
//! `<timestamp>.<body>` when a timestamp is given.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::args::{self, Arg, Parser};
use crate::failure::{err, Failure};
use crate::util;

pub const HELP: &str = "\
Usage: api-auth sign-webhook (--secret S | --secret-env NAME) [options] BODY_FILE|-

Prints the value of a webhook's signature header for a body, as the filter verifies it:
HMAC-SHA256 of the raw body bytes (or of `<timestamp>.<body>` with --timestamp), encoded in
hex or base64, after a prefix.

Options:
  --secret S          the shared secret (visible to other local users in the process list:
                      prefer --secret-env)
  --secret-env NAME   read the secret from environment variable NAME
  --timestamp T       sign `<T>.<body>` (T: Unix seconds, or `now`, which is echoed on stderr);
                      send T in the webhook's timestamp header
  --prefix P          default `sha256=`
  --encoding E        hex (default) or base64
  -h, --help          this text

Example:
  curl -X POST http://127.0.0.1:10000/hooks/in --data-binary @body.json \\
    -H \"x-webhook-signature: $(api-auth sign-webhook --secret-env WEBHOOK_SECRET body.json)\"
";

enum Encoding {
    Hex,
    Base64,
}

pub fn run(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let mut secret: Option<String> = None;
    let mut timestamp: Option<String> = None;
    let mut prefix = "sha256=".to_string();
    let mut encoding = Encoding::Hex;
    let mut file = None;
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(HELP.to_string()),
            Arg::Flag(f, inline) => match f.as_str() {
                "--secret" => secret = Some(p.value(&f, inline)?),
                "--secret-env" => {
                    let name = p.value(&f, inline)?;
                    secret = Some(std::env::var(&name).map_err(|_| err(format!("environment variable {name} is not set")))?);
                }
                "--timestamp" => timestamp = Some(p.value(&f, inline)?),
                "--prefix" => prefix = p.value(&f, inline)?,
                "--encoding" => {
                    encoding = match p.value(&f, inline)?.as_str() {
                        "hex" => Encoding::Hex,
                        "base64" => Encoding::Base64,
                        _ => return Err(Failure::Usage("--encoding must be hex or base64".into())),
                    }
                }
                _ => return Err(args::unknown(&f)),
            },
            Arg::Pos(v) if file.is_none() => file = Some(v),
            Arg::Pos(v) => return Err(Failure::Usage(format!("unexpected argument '{v}'"))),
        }
    }
    let secret = secret.ok_or_else(|| Failure::Usage("--secret or --secret-env is required".into()))?;
    if secret.is_empty() {
        return Err(err("the secret is empty"));
    }
    let file = file.ok_or_else(|| Failure::Usage("BODY_FILE (or - for standard input) is required".into()))?;
    let body = util::read_input(&file)?;
    let mut signed = Vec::new();
    if let Some(t) = timestamp {
        let t = if t == "now" {
            let now = util::unix_now().to_string();
            util::print_err(&format!("timestamp: {now}\n"));
            now
        } else {
            t
        };
        // What the filter accepts: 1 to 12 ASCII digits.
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Failure::Usage("--timestamp must be Unix seconds (digits) or `now`".into()));
        }
        signed.extend_from_slice(t.as_bytes());
        signed.push(b'.');
    }
    signed.extend_from_slice(&body);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|_| err("unusable secret"))?;
    mac.update(&signed);
    let tag = mac.finalize().into_bytes();
    let encoded = match encoding {
        Encoding::Hex => api_auth_filter::text::hex(&tag),
        Encoding::Base64 => STANDARD.encode(tag),
    };
    Ok(format!("{prefix}{encoded}\n"))
}
