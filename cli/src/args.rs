//! Hand-rolled argument parsing: `--name value`, `--name=value`, `-H value`, `-Hvalue`, `--`
//! (everything after is positional) and `-` (a positional: standard input).

use crate::failure::Failure;

#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// A flag as written (`--ttl`, `-H`) and its inline value (`--ttl=60`, `-Hx: y`).
    Flag(String, Option<String>),
    Pos(String),
}

pub struct Parser {
    args: std::vec::IntoIter<String>,
    only_positional: bool,
}

impl Parser {
    pub fn new(args: Vec<String>) -> Parser {
        Parser { args: args.into_iter(), only_positional: false }
    }

    pub fn next_arg(&mut self) -> Option<Arg> {
        let a = self.args.next()?;
        if self.only_positional || a == "-" || !a.starts_with('-') {
            return Some(Arg::Pos(a));
        }
        if a == "--" {
            self.only_positional = true;
            return self.next_arg();
        }
        if a.starts_with("--") {
            return Some(match a.split_once('=') {
                Some((name, value)) => Arg::Flag(name.to_string(), Some(value.to_string())),
                None => Arg::Flag(a, None),
            });
        }
        // A short flag: `-H` then its value, or `-Hvalue`.
        let mut chars = a[1..].chars();
        let name = chars.next().map(|c| format!("-{c}")).unwrap_or_default();
        let rest = chars.as_str();
        Some(Arg::Flag(name, (!rest.is_empty()).then(|| rest.to_string())))
    }

    /// The value of a flag: inline, or the next argument whatever it looks like (`--ttl -60`).
    pub fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, Failure> {
        inline.or_else(|| self.args.next()).ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
    }
}

/// A flag that takes no value.
pub fn no_value(flag: &str, inline: Option<String>) -> Result<(), Failure> {
    match inline {
        None => Ok(()),
        Some(_) => Err(Failure::Usage(format!("{flag} takes no value"))),
    }
}

pub fn unknown(flag: &str) -> Failure {
    Failure::Usage(format!("unknown option '{flag}'"))
}

pub fn is_help(flag: &str) -> bool {
    flag == "--help" || flag == "-h"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Vec<Arg> {
        let mut p = Parser::new(v.iter().map(|s| s.to_string()).collect());
        std::iter::from_fn(|| p.next_arg()).collect()
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse(&["a", "--x=1", "--y", "-Hk: v", "-", "--", "--z"]),
            vec![
                Arg::Pos("a".into()),
                Arg::Flag("--x".into(), Some("1".into())),
                Arg::Flag("--y".into(), None),
                Arg::Flag("-H".into(), Some("k: v".into())),
                Arg::Pos("-".into()),
                Arg::Pos("--z".into()),
            ]
        );
        let mut p = Parser::new(vec!["--ttl".into(), "-60".into()]);
        let Some(Arg::Flag(f, inline)) = p.next_arg() else { unreachable!() };
        assert_eq!(p.value(&f, inline).ok().as_deref(), Some("-60"));
        let mut p = Parser::new(vec!["--ttl".into()]);
        let Some(Arg::Flag(f, inline)) = p.next_arg() else { unreachable!() };
        assert!(p.value(&f, inline).is_err());
    }
}
