//! Reading HTTP/1.1 off a stream, for the servers (requests) and the client (responses).

use std::io::BufRead;

fn read_line(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).ok()?;
    if n == 0 {
        return None;
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Some(line)
}

/// A request or status line, and the header fields after it.
pub(crate) type Head = (Vec<u8>, Vec<(String, Vec<u8>)>);

pub(crate) fn read_head(r: &mut impl BufRead) -> Option<Head> {
    let first = read_line(r)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|b| *b == b':')?;
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        let mut value = &line[colon + 1..];
        while value.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value = &value[1..];
        }
        headers.push((name, value.to_vec()));
    }
    Some((first, headers))
}

pub(crate) fn read_body(r: &mut impl BufRead, headers: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| String::from_utf8_lossy(v).trim().to_string());
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(r)?;
            let text = String::from_utf8_lossy(&size_line);
            let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                return Some(body);
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            read_line(r)?;
        }
    }
    let len: usize = get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}
