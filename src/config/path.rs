//! The path of the field a serde error is about, found after the fact (issue 23).
//!
//! The document is decoded once, untracked (`serde_json` over the bytes, into the `Raw` types);
//! only when that fails is the document read again, by the small JSON walk below, up to the
//! byte the error's line and column point at. What it names there is what
//! `serde_path_to_error` named when it wrapped every deserializer (it instantiated a tracked
//! copy of every `Raw` type's code, a sixth of the module): a map's key (`routes`,
//! `x-user`), an array's index (`[3]`), `?` for a key not read yet, joined with `.` as it
//! joined them. Which of the values open at that byte the error belongs to follows from where
//! `serde_json` places each kind of error (the comments below); `tests/config_paths.rs`
//! checks the walk against `serde_path_to_error` itself over every example with thousands of
//! edits.

/// Where an error is raised, told from its kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `unknown field`: raised by the key's own visitor, the key named.
    UnknownField,
    /// `missing field`, `duplicate field`, `invalid length`: raised by a struct's visitor
    /// over the whole map or array, named by the struct's path; `duplicate name` likewise by
    /// a map's (`shape::Named`).
    Container,
    /// `invalid type: map` or `sequence`: serde_json peeks the `{` or `[` without reading it.
    OpenType,
    /// A syntax error or end of input: at the byte read or peeked.
    Syntax,
    /// Any other: a value's visitor, at the end of the value.
    Value,
}

/// The expectation of `RawAuth`'s visitor: the one visitor of the schema that reads any
/// value and refuses an array (at its first element, like an element refusing an array).
pub(super) const AUTH_EXPECTING: &str = "\"none\" or an object of requirements";

pub(super) fn error_path(doc: &[u8], err: &serde_json::Error) -> String {
    if err.line() == 0 {
        return String::new();
    }
    let msg = err.to_string();
    let kind = if err.is_syntax() || err.is_eof() {
        Kind::Syntax
    } else if msg.starts_with("unknown field") {
        Kind::UnknownField
    } else if ["missing field", "duplicate field", "duplicate name", "invalid length"].iter().any(|p| msg.starts_with(p)) {
        Kind::Container
    } else if msg.starts_with("invalid type: map") || msg.starts_with("invalid type: sequence") {
        Kind::OpenType
    } else {
        Kind::Value
    };
    // serde_json's column counts the bytes of its line up to the error.
    let mut line_start = 0;
    for _ in 1..err.line() {
        match doc[line_start..].iter().position(|&b| b == b'\n') {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    let e = (line_start + err.column()).min(doc.len());
    let mut w = Walk {
        doc,
        e,
        kind,
        trailing: msg.starts_with("trailing characters"),
        auth: msg.contains(AUTH_EXPECTING),
        eof: err.is_eof(),
        variant_value: false,
        pos: 0,
        path: Vec::new(),
    };
    w.ws();
    let segs = match w.value() {
        Err(segs) => segs,
        Ok(()) => w.path,
    };
    let mut out = String::new();
    for s in &segs {
        match s {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k)
            }
            Seg::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?')
            }
        }
    }
    out
}

#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
    Unknown,
}

struct Walk<'a> {
    doc: &'a [u8],
    /// The bytes serde_json had read (or peeked) when it raised the error.
    e: usize,
    kind: Kind,
    trailing: bool,
    auth: bool,
    eof: bool,
    /// The next value is an enum's variant's (see `is_enum`).
    variant_value: bool,
    pos: usize,
    path: Vec<Seg>,
}

/// Stop: the path the error names.
type Step = Result<(), Vec<Seg>>;

impl Walk<'_> {
    fn ws(&mut self) {
        while self.pos < self.doc.len() && matches!(self.doc[self.pos], b' ' | b'\n' | b'\t' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    fn here(&self) -> Vec<Seg> {
        self.path.clone()
    }

    fn with(&self, s: Seg) -> Vec<Seg> {
        let mut p = self.path.clone();
        p.push(s);
        p
    }

    /// A value at `pos` (whitespace read), named `path`.
    fn value(&mut self) -> Step {
        let of_variant = std::mem::take(&mut self.variant_value);
        let start = self.pos;
        if start >= self.doc.len() || self.e <= start {
            return Err(self.here());
        }
        // A type that refuses a map or an array outright (an enum's variant name): serde_json
        // raises `expected value` at the `{` or `[` it peeked.
        if self.kind == Kind::Syntax && !self.eof && self.e == start + 1 && matches!(self.doc[start], b'{' | b'[') {
            return Err(self.here());
        }
        let end = match self.doc[start] {
            b'{' => return self.object(),
            b'[' => return self.array(),
            b'"' => self.string(start),
            b'-' | b'0'..=b'9' => self.number(start),
            b't' => self.ident(start, b"true"),
            b'f' => self.ident(start, b"false"),
            b'n' => self.ident(start, b"null"),
            _ => None,
        };
        match end {
            // A scalar serde_json could not read: the error is in it.
            None => Err(self.here()),
            Some(end) => {
                // A value's error is raised at its end (or within it); a struct's at the
                // byte after its last value, which is the map's or array's to name.
                // (The end of the input after a whole value is the container's to report.)
                if self.e <= end && (self.kind != Kind::Container || self.e < end) && !(self.eof && self.e == end)
                    // serde_json checks an enum's `}` where its value ends, raising no error of the value's.
                    && !(of_variant && self.kind == Kind::Syntax && self.e == end)
                {
                    return Err(self.here());
                }
                self.pos = end;
                Ok(())
            }
        }
    }

    /// The end of the string opening at `start`, past its closing quote.
    fn string(&self, start: usize) -> Option<usize> {
        let mut i = start + 1;
        while i < self.doc.len() {
            match self.doc[i] {
                b'"' => return Some(i + 1),
                b'\\' => match self.doc.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') if self.doc.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 6,
                    // serde_json reads an escape's four digits before it judges them: the
                    // error is this string's, wherever it is placed.
                    _ => return None,
                },
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
        None
    }

    fn number(&self, start: usize) -> Option<usize> {
        let d = self.doc;
        let digits = |mut i: usize| {
            let s = i;
            while i < d.len() && d[i].is_ascii_digit() {
                i += 1;
            }
            (i > s).then_some(i)
        };
        let mut i = start;
        if d[i] == b'-' {
            i += 1;
        }
        i = match d.get(i) {
            Some(b'0') => {
                if d.get(i + 1).is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
                i + 1
            }
            _ => digits(i)?,
        };
        if d.get(i) == Some(&b'.') {
            i = digits(i + 1)?;
        }
        if matches!(d.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(d.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = digits(i)?;
        }
        Some(i)
    }

    fn ident(&self, start: usize, word: &[u8]) -> Option<usize> {
        self.doc[start..].starts_with(word).then_some(start + word.len())
    }

    /// After a map or array closed at `pos`: serde_json places the errors of a visitor that
    /// read it whole (`missing field`, `invalid length`, a refusal) past its close.
    fn closed(&mut self) -> Step {
        self.pos += 1;
        if self.e == self.pos && self.kind != Kind::UnknownField && !self.eof {
            return Err(self.here());
        }
        Ok(())
    }

    /// Where the schema has a unit enum (`Unmatched`, `RawPathParameters`, `KeyStatus`,
    /// `OverrideAction`). serde_json reads one written as a map (`{"deny": null}`) as the
    /// enum's variant and value, not as a map: what goes wrong there is the enum's, but in the
    /// variant's value.
    fn is_enum(&self) -> bool {
        let k = |s: &Seg, name: &str| matches!(s, Seg::Key(x) if x == name);
        match self.path.as_slice() {
            [a] => k(a, "unmatched") || k(a, "path_parameters"),
            [a, b, Seg::Index(_), c] => k(a, "api_keys") && k(b, "keys") && k(c, "status"),
            [a, b, c] => k(a, "forward") && k(b, "override_headers") && k(c, "action"),
            _ => false,
        }
    }

    /// Before a map's key is read: `?`, but an enum's own.
    fn no_key(&self, variant: bool) -> Vec<Seg> {
        if variant {
            self.here()
        } else {
            self.with(Seg::Unknown)
        }
    }

    fn object(&mut self) -> Step {
        let variant = self.is_enum();
        self.pos += 1;
        let mut first = true;
        loop {
            self.ws();
            // Between a map's entries serde_json asks for the next key (`has_next_key`): its
            // syntax errors come before a key is read, `?`. A visitor that refuses a map at
            // once (after the `{`) names the map.
            let at = self.pos;
            if at >= self.doc.len() {
                return Err(self.no_key(variant));
            }
            if self.e <= at {
                return Err(self.here());
            }
            match self.peek() {
                Some(b'}') if first => return self.closed(),
                Some(b'"') if first => {}
                Some(b'}') => return self.closed(),
                Some(b',') if !first => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() != Some(b'"') || self.e <= self.pos {
                        return Err(self.no_key(variant));
                    }
                }
                _ => return Err(self.no_key(variant)),
            }
            first = false;
            // The key.
            let start = self.pos;
            let Some(end) = self.string(start) else { return Err(self.no_key(variant)) };
            if self.e < end {
                return Err(self.no_key(variant));
            }
            let key: String = match serde_json::from_slice(&self.doc[start..end]) {
                Ok(k) => k,
                Err(_) => return Err(self.no_key(variant)),
            };
            self.pos = end;
            self.ws();
            let closes = self.peek() == Some(b'}') && matches!(self.kind, Kind::UnknownField | Kind::Container);
            if self.e <= self.pos || (closes && self.e == self.pos + 1) {
                // Raised by the key's visitor or the struct's on reading it, placed past the
                // whitespace after the key (and past a `}` there): `unknown field` names the
                // key; `duplicate field` and a refused enum variant the map.
                return Err(if self.kind == Kind::UnknownField { self.with(Seg::Key(key)) } else { self.here() });
            }
            // The colon belongs to the map (`next_value_seed` outside the value).
            if self.peek() != Some(b':') {
                return Err(self.here());
            }
            self.pos += 1;
            self.ws();
            self.path.push(Seg::Key(key));
            self.variant_value = variant;
            self.value()?;
            self.path.pop();
            if variant {
                // One variant: then the `}`, or an error of the enum's.
                self.ws();
                if self.peek() == Some(b'}') && self.e > self.pos {
                    return self.closed();
                }
                return Err(self.here());
            }
        }
    }

    fn array(&mut self) -> Step {
        self.pos += 1;
        let mut index = 0;
        loop {
            self.ws();
            let at = self.pos;
            let b = self.peek();
            // Between elements serde_json asks for the next one (`has_next_element`): its
            // errors name the array, as do a struct's `invalid length` at the `]` it peeked
            // and a visitor that refuses an array at once.
            if at >= self.doc.len() {
                return Err(self.here());
            }
            if index == 0 {
                if b == Some(b']') {
                    return self.closed();
                }
                if self.e <= at && !self.element_refuses_open(b) {
                    return Err(self.here());
                }
            } else {
                if self.e <= at {
                    return Err(self.here());
                }
                match b {
                    Some(b']') => return self.closed(),
                    Some(b',') => {}
                    _ => return Err(self.here()),
                }
                self.pos += 1;
                self.ws();
                let at = self.pos;
                let b = self.peek();
                if at >= self.doc.len() || b == Some(b']') || (self.trailing && self.e == at + 1) {
                    return Err(self.here());
                }
                if self.e <= at && !self.element_refuses_open(b) {
                    return Err(self.here());
                }
            }
            self.path.push(Seg::Index(index));
            self.value()?;
            self.path.pop();
            index += 1;
        }
    }

    /// An error at the `{` or `[` that starts an element: the element's (its type refuses a
    /// map or an array, peeked), unless it is the array itself refused by a visitor that read
    /// its `[` first (`RawAuth`'s, the only such visitor).
    fn element_refuses_open(&self, b: Option<u8>) -> bool {
        if self.kind != Kind::OpenType {
            return false;
        }
        matches!(b, Some(b'{' | b'[')) && !self.auth
    }
}
