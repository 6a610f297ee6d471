//! Errors, input and output shared by the commands.

use std::io::{Read, Write};
use std::path::Path;

use api_auth_filter::config::{Config, ConfigError};

use crate::args::{self, Parser};
use crate::failure::{err, Failure};

/// Writes to stdout; false when it could not (a closed pipe is not worth a panic).
pub fn print_out(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_ok()
}

pub fn print_err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
    let _ = e.flush();
}

/// A file's bytes, or standard input for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin().lock().read_to_end(&mut buf).map_err(|e| err(format!("cannot read standard input: {e}")))?;
    } else {
        buf = std::fs::read(Path::new(path)).map_err(|e| err(format!("cannot read {path}: {e}")))?;
    }
    Ok(buf)
}

pub fn display_name(path: &str) -> &str {
    if path == "-" {
        "<stdin>"
    } else {
        path
    }
}

/// The wasm VM's environment as the CLI stands in for it: `--env NAME=VALUE` first, then the
/// process environment, then (with `--any-env`) a placeholder for any name.
#[derive(Default)]
pub struct VmEnv {
    vars: Vec<(String, String)>,
    any: bool,
}

/// The options of `VmEnv`, for help texts (`concat!` wants a literal).
#[macro_export]
macro_rules! env_help {
    () => {
        concat!(
            "  --env NAME=VALUE            a variable of the wasm VM's environment (webhook secrets\n",
            "                              named by `env`); the process environment is read too.\n",
            "                              Values are never printed.\n",
            "  --any-env                   treat every `env` secret as set (to a placeholder that\n",
            "                              verifies nothing): validate a configuration without its\n",
            "                              secrets at hand.\n",
        )
    };
}

impl VmEnv {
    /// Takes `--env` and `--any-env`; false when the flag is not one of them.
    pub fn take(&mut self, flag: &str, inline: Option<String>, p: &mut Parser) -> Result<bool, Failure> {
        match flag {
            "--env" | "-e" => {
                let v = p.value(flag, inline)?;
                let (name, value) = v.split_once('=').ok_or_else(|| Failure::Usage(format!("{flag} wants NAME=VALUE")))?;
                if name.is_empty() {
                    return Err(Failure::Usage(format!("{flag} wants NAME=VALUE")));
                }
                self.vars.push((name.to_string(), value.to_string()));
                Ok(true)
            }
            "--any-env" => {
                args::no_value(flag, inline)?;
                self.any = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        if let Ok(v) = std::env::var(name) {
            return Some(v);
        }
        self.any.then(|| "api-auth-placeholder-secret".to_string())
    }
}

/// Reads and compiles a configuration with the filter's own compiler. The error names the
/// file and the path of the field at fault; it never quotes the document.
pub fn load_config(path: &str, env: &VmEnv) -> Result<(Config, serde_json::Value), Failure> {
    let bytes = read_input(path)?;
    let cfg = Config::from_json_with_env(&bytes, &|name| env.get(name)).map_err(|e: ConfigError| invalid(path, &e))?;
    // It compiled, so it is JSON; the raw form only serves to show routes as written.
    let raw = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((cfg, raw))
}

fn invalid(path: &str, e: &ConfigError) -> Failure {
    err(format!("{}: {e}", display_name(path)))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

