//! `make oci`: the built filter as an OCI image layout, without Docker, in the "compat" variant of
//! the Wasm image specification that Istio's `WasmPlugin` pulls (solo-io/wasm spec-compat.md):
//! exactly one `application/vnd.oci.image.layer.v1.tar+gzip` layer whose tar holds `plugin.wasm`,
//! and the annotation `module.wasm.image/variant: compat` on the manifest.
//!
//! Byte for byte reproducible, so that the manifest digest printed here is the one to pin in
//! `WasmPlugin.url` (`oci://...@sha256:<digest>`) or `WasmPlugin.sha256` (Istio compares an OCI
//! image's manifest digest, not the digest of the wasm): the tar entry has mode 0644, uid/gid 0,
//! empty user and group names and mtime 0 (or `SOURCE_DATE_EPOCH`); the gzip header has mtime 0
//! and no file name; every JSON document has sorted keys and no whitespace; the image config
//! carries no timestamp.
//!
//! ```text
//! oci-image --wasm FILE --out DIR [--tag TAG] [--archive FILE.tar]
//! ```
//!
//! `--archive` also writes the layout as one tar (`skopeo copy oci-archive:FILE ...`).

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The only file of the layer: the name Istio and the spec look for.
const WASM_NAME: &str = "plugin.wasm";

struct Args {
    wasm: PathBuf,
    out: PathBuf,
    tag: String,
    archive: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("oci-image: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args(std::env::args().skip(1))?;
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => s.trim().parse::<u64>().map_err(|_| format!("SOURCE_DATE_EPOCH={s}: not a number of seconds"))?,
        _ => 0,
    };
    let wasm = std::fs::read(&args.wasm).map_err(|e| format!("{}: {e} (run `make build` first)", args.wasm.display()))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(format!("{}: not a WebAssembly module", args.wasm.display()));
    }

    let image = Image::new(&wasm, mtime);
    write_layout(&args.out, &image, &args.tag)?;
    if let Some(archive) = &args.archive {
        let tar = layout_archive(&image, &args.tag, mtime);
        std::fs::write(archive, tar).map_err(|e| format!("{}: {e}", archive.display()))?;
    }
    println!("OCI image layout: {} (tag {})", args.out.display(), args.tag);
    if let Some(archive) = &args.archive {
        println!("OCI archive:      {}", archive.display());
    }
    println!("manifest digest:  {}", image.manifest.digest);
    Ok(())
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    const USAGE: &str = "usage: oci-image --wasm FILE --out DIR [--tag TAG] [--archive FILE.tar]";
    let (mut wasm, mut out, mut tag, mut archive) = (None, None, None, None);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--wasm" => wasm = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--tag" => tag = Some(value()?),
            "--archive" => archive = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let tag = tag.unwrap_or_else(|| "latest".into());
    // The OCI distribution spec's tag grammar, so that the ref name can be pushed as is.
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !tag_ok {
        return Err(format!("--tag {tag}: not a valid OCI tag"));
    }
    Ok(Args { wasm: wasm.ok_or(USAGE)?, out: out.ok_or(USAGE)?, tag, archive })
}

/// A content-addressed blob and its descriptor fields.
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        Blob { bytes, digest }
    }

    fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

struct Image {
    layer: Blob,
    config: Blob,
    manifest: Blob,
}

impl Image {
    fn new(wasm: &[u8], mtime: u64) -> Image {
        let mut tar = Vec::new();
        tar_file(&mut tar, WASM_NAME, wasm, mtime);
        tar_end(&mut tar);
        // The config names the uncompressed layer (diff_id); the manifest the compressed one.
        let diff_id = format!("sha256:{}", hex(&Sha256::digest(&tar)));
        let layer = Blob::new(gzip(&tar));
        // A wasm module runs on no particular CPU or OS: GOARCH/GOOS "wasm"/"wasip1", as the
        // OCI image spec asks for these fields, and as the CNCF Wasm OCI artifact layout uses.
        let config = Blob::new(canonical(&json!({
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        })));
        let manifest = Blob::new(canonical(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config.descriptor(CONFIG_TYPE),
            "layers": [layer.descriptor(LAYER_TYPE)],
            // Required by the compat variant when the layer is the OCI tar+gzip type.
            "annotations": { "module.wasm.image/variant": "compat" },
        })));
        Image { layer, config, manifest }
    }

    fn blobs(&self) -> [&Blob; 3] {
        [&self.layer, &self.config, &self.manifest]
    }
}

fn index(image: &Image, tag: &str) -> Vec<u8> {
    let mut manifest = image.manifest.descriptor(MANIFEST_TYPE);
    manifest["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    canonical(&json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest] }))
}

fn oci_layout() -> Vec<u8> {
    canonical(&json!({ "imageLayoutVersion": "1.0.0" }))
}

fn write_layout(out: &Path, image: &Image, tag: &str) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if out.exists() {
        // Only ever replace a previous layout (stale blobs must not linger), nothing else.
        let is_layout = out.join("oci-layout").is_file();
        let is_empty = std::fs::read_dir(out).map_err(|e| err(out, e))?.next().is_none();
        if !is_layout && !is_empty {
            return Err(format!("{}: exists and is not an OCI image layout; not touching it", out.display()));
        }
        std::fs::remove_dir_all(out).map_err(|e| err(out, e))?;
    }
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| err(&blobs, e))?;
    for blob in image.blobs() {
        let path = blobs.join(blob.hex());
        std::fs::write(&path, &blob.bytes).map_err(|e| err(&path, e))?;
    }
    for (name, bytes) in [("oci-layout", oci_layout()), ("index.json", index(image, tag))] {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| err(&path, e))?;
    }
    Ok(())
}

/// The same layout as one tar, entries in path order, with the same fixed metadata.
fn layout_archive(image: &Image, tag: &str, mtime: u64) -> Vec<u8> {
    let mut blobs: Vec<&Blob> = image.blobs().to_vec();
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut tar = Vec::new();
    tar_dir(&mut tar, "blobs/", mtime);
    tar_dir(&mut tar, "blobs/sha256/", mtime);
    for blob in blobs {
        tar_file(&mut tar, &format!("blobs/sha256/{}", blob.hex()), &blob.bytes, mtime);
    }
    tar_file(&mut tar, "index.json", &index(image, tag), mtime);
    tar_file(&mut tar, "oci-layout", &oci_layout(), mtime);
    tar_end(&mut tar);
    tar
}

// --- tar (POSIX ustar) ------------------------------------------------------------------------

fn tar_file(out: &mut Vec<u8>, name: &str, data: &[u8], mtime: u64) {
    tar_header(out, name, b'0', 0o644, data.len() as u64, mtime);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

fn tar_dir(out: &mut Vec<u8>, name: &str, mtime: u64) {
    tar_header(out, name, b'5', 0o755, 0, mtime);
}

/// Two zero blocks close the archive.
fn tar_end(out: &mut Vec<u8>) {
    out.resize(out.len() + 1024, 0);
}

fn tar_header(out: &mut Vec<u8>, name: &str, typeflag: u8, mode: u32, size: u64, mtime: u64) {
    assert!(name.len() < 100, "tar name too long: {name}");
    let mut h = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, name.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0"); // uid
    put(116, b"0000000\0"); // gid
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, format!("{mtime:011o}\0").as_bytes());
    put(148, b"        "); // checksum, counted as spaces
    put(156, &[typeflag]);
    put(257, b"ustar\0");
    put(263, b"00");
    // uname and gname (265..329) stay empty.
    put(329, b"0000000\0"); // devmajor
    put(337, b"0000000\0"); // devminor
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
}

// --- gzip, JSON, hex --------------------------------------------------------------------------

fn gzip(data: &[u8]) -> Vec<u8> {
    // GzBuilder writes mtime 0 and no file name unless told otherwise; the OS byte is pinned to
    // 255 ("unknown") so that it never depends on where the image was built.
    let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::best());
    gz.write_all(data).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// Compact JSON with object keys sorted, whatever serde_json's map ordering is compiled with.
fn canonical(v: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
