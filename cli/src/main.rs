//! `api-auth`: the native companion of api-auth-filter. It runs the filter's own core (the same
//! configuration compiler and the same `engine::decide` as inside Envoy) on the command line,
//! and carries the small tools a deployment needs around it: key digests, webhook signatures,
//! and a demo issuer with tokens for local testing.
//!
//! Nothing here prints a key, token, secret, digest or configuration the user did not ask for.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod args;
mod check;
mod explain;
mod failure;
mod issuer;
mod keys;
mod util;
mod webhook;

use std::process::ExitCode;

use failure::Failure;

const USAGE: &str = "\
api-auth: the command-line companion of api-auth-filter

Usage: api-auth <command> [options] [arguments]

Commands:
  check CONFIG                    validate a filter configuration (the filter's own compiler)
  explain CONFIG METHOD PATH      what the filter decides for a request, and why
  hash-key KEY|-                  the SHA-256 digest of an API key (api_keys.keys[].sha256)
  sign-webhook BODY_FILE|-        the signature header value of a webhook body
  mint-token                      an RS256 token signed with the demo key (local testing only)
  jwks                            the demo key's JWKS (local testing only)
  demo-issuer                     a loopback server of the demo key's JWKS (local testing only)
  help [COMMAND]                  this text, or a command's

Run `api-auth <command> --help` for a command's options.
Exit status: 0 success, 1 failure (invalid configuration, unreadable file, ...), 2 usage error.
";

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(_) => return fail(Failure::Usage("arguments must be UTF-8".into()), None),
        }
    }
    let Some(command) = argv.first().cloned() else {
        util::print_err(USAGE);
        return ExitCode::from(2);
    };
    let rest = argv.split_off(1);
    let result = match command.as_str() {
        "check" => check::run(rest),
        "explain" => explain::run(rest),
        "hash-key" => keys::hash_key(rest),
        "sign-webhook" => webhook::run(rest),
        "mint-token" => keys::mint_token(rest),
        "jwks" => keys::jwks(rest),
        "demo-issuer" => issuer::run(rest),
        "help" | "--help" | "-h" => help(rest.first().map(String::as_str)),
        "--version" | "-V" => Ok(format!("api-auth {}\n", env!("CARGO_PKG_VERSION"))),
        other => Err(Failure::Usage(format!("unknown command '{other}'"))),
    };
    match result {
        Ok(text) => {
            if util::print_out(&text) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(f) => fail(f, Some(&command)),
    }
}

fn help(command: Option<&str>) -> Result<String, Failure> {
    Ok(match command {
        None => USAGE,
        Some("check") => check::HELP,
        Some("explain") => explain::HELP,
        Some("hash-key") => keys::HASH_HELP,
        Some("sign-webhook") => webhook::HELP,
        Some("mint-token") => keys::MINT_HELP,
        Some("jwks") => keys::JWKS_HELP,
        Some("demo-issuer") => issuer::HELP,
        Some(other) => return Err(Failure::Usage(format!("unknown command '{other}'"))),
    }
    .to_string())
}

fn fail(f: Failure, command: Option<&str>) -> ExitCode {
    match f {
        Failure::Usage(msg) => {
            let hint = match command {
                Some(c) if c != "help" && !c.starts_with('-') && help(Some(c)).is_ok() => format!("api-auth {c} --help"),
                _ => "api-auth --help".to_string(),
            };
            util::print_err(&format!("api-auth: {msg}\nTry `{hint}`.\n"));
            ExitCode::from(2)
        }
        Failure::Error(msg) => {
            util::print_err(&format!("api-auth: {msg}\n"));
            ExitCode::from(1)
        }
    }
}
