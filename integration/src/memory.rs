//! What a process holds in wasm linear memory, read from /proc.

/// The wasm linear memories of a process, (size, resident) in KiB each. V8 reserves each wasm
/// memory as a read-write mapping of its current size followed by a guard region of several
/// GiB with no access: the read-write mapping right before such a region is a linear memory
/// (Envoy 1.40 has no per-VM memory stat).
pub fn wasm_linear_memories(pid: u32) -> Vec<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // (start, end, perms, rss)
    let mut maps: Vec<(u64, u64, String, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                maps.push((a, b, parts.next().unwrap_or("").to_string(), 0));
                continue;
            }
        }
        if let (Some(rss), Some(last)) = (line.strip_prefix("Rss:"), maps.last_mut()) {
            last.3 = rss.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    let mut wasm = Vec::new();
    for w in maps.windows(2) {
        let (mem, guard) = (&w[0], &w[1]);
        if guard.2.starts_with("---") && guard.1 - guard.0 >= 4 << 30 && mem.1 == guard.0 && mem.2.starts_with("rw") {
            wasm.push(((mem.1 - mem.0) / 1024, mem.3));
        }
    }
    wasm
}
