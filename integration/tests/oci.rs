//! `make oci`: the OCI image layout of the built filter, checked the way a registry client and
//! Istio's image fetcher read it, with code independent of the writer: every blob is named by the
//! SHA-256 of its bytes and described with its true size, index -> manifest -> config + one
//! tar+gzip layer, the compat annotation, and a layer whose tar holds exactly `plugin.wasm` with
//! the bytes of the built module. Two builds into two directories give the same bytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use api_auth_integration::repo_root;
use serde_json::Value;
use sha2::{Digest, Sha256};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn wasm_path() -> PathBuf {
    let rel = std::env::var("WASM").unwrap_or_else(|_| "target/wasm32-wasip1/release/api_auth_filter.wasm".into());
    let p = PathBuf::from(rel);
    let p = if p.is_absolute() { p } else { repo_root().join(p) };
    assert!(p.is_file(), "filter not built at {}: run `make build` (make test does)", p.display());
    p
}

/// A scratch directory removed on drop, also when an assertion fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("api-auth-oci-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the image writer; returns the layout directory and the archive path.
fn build(scratch: &Scratch, epoch: Option<&str>) -> (PathBuf, PathBuf) {
    let out = scratch.0.join("layout");
    let archive = scratch.0.join("layout.tar");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oci-image"));
    cmd.arg("--wasm").arg(wasm_path()).arg("--out").arg(&out).arg("--archive").arg(&archive).arg("--tag").arg("test");
    match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let run = cmd.output().expect("run oci-image");
    assert!(run.status.success(), "oci-image failed: {}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("manifest digest:  sha256:"), "prints the manifest digest: {stdout}");
    (out, archive)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Reads the blob a descriptor points at, checking its name is its digest and its size is right.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_hex(&bytes), hex, "blob file name is the SHA-256 of its bytes");
    assert_eq!(desc["size"].as_u64(), Some(bytes.len() as u64), "descriptor size of {digest}");
    bytes
}

/// Every file under a directory, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// One entry of a ustar archive, parsed here rather than trusted to the writer.
#[derive(Debug)]
struct TarEntry {
    name: String,
    typeflag: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    uname: String,
    gname: String,
    mtime: u64,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text: String = field.iter().take_while(|&&b| b != 0 && b != b' ').map(|&b| b as char).collect();
    u64::from_str_radix(&text, 8).unwrap_or_else(|_| panic!("octal field {field:?}"))
}

fn cstr(field: &[u8]) -> String {
    String::from_utf8(field.iter().take_while(|&&b| b != 0).copied().collect()).expect("UTF-8 tar field")
}

fn untar(tar: &[u8]) -> Vec<TarEntry> {
    assert_eq!(tar.len() % 512, 0, "tar is made of 512-byte blocks");
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            assert!(tar[at..].iter().all(|&b| b == 0), "nothing after the end-of-archive blocks");
            assert!(tar.len() - at >= 1024, "two zero blocks close the archive");
            return entries;
        }
        assert_eq!(&h[257..263], b"ustar\0", "ustar magic");
        let mut blank = h.to_vec();
        blank[148..156].fill(b' ');
        let sum: u64 = blank.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(octal(&h[148..156]), sum, "header checksum");
        let size = octal(&h[124..136]) as usize;
        let data = tar[at + 512..at + 512 + size].to_vec();
        entries.push(TarEntry {
            name: cstr(&h[0..100]),
            typeflag: h[156],
            mode: octal(&h[100..108]),
            uid: octal(&h[108..116]),
            gid: octal(&h[116..124]),
            uname: cstr(&h[265..297]),
            gname: cstr(&h[297..329]),
            mtime: octal(&h[136..148]),
            data,
        });
        assert!(cstr(&h[345..500]).is_empty(), "no name prefix");
        at += 512 + size.next_multiple_of(512);
    }
}

/// Checks the whole layout; returns the manifest digest.
fn check_layout(layout: &Path, wasm: &[u8], want_mtime: u64) -> String {
    assert_eq!(json(&std::fs::read(layout.join("oci-layout")).unwrap()), serde_json::json!({ "imageLayoutVersion": "1.0.0" }));

    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image in the layout");
    let mdesc = &manifests[0];
    assert_eq!(mdesc["mediaType"], MANIFEST_TYPE);
    assert_eq!(mdesc["annotations"]["org.opencontainers.image.ref.name"], "test");

    let manifest = json(&blob(layout, mdesc));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
    assert_eq!(manifest["annotations"]["module.wasm.image/variant"], "compat", "compat variant annotation");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "the compat variant has exactly one layer");
    assert_eq!(layers[0]["mediaType"], LAYER_TYPE);

    let layer = blob(layout, &layers[0]);
    // gzip header: deflate, no flags (so no file name), mtime 0.
    assert_eq!(&layer[0..3], &[0x1f, 0x8b, 8], "gzip, deflate");
    assert_eq!(layer[3], 0, "no gzip flags: no file name, comment or extra field");
    assert_eq!(&layer[4..8], &[0, 0, 0, 0], "gzip mtime 0");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer[..]).read_to_end(&mut tar).expect("layer gunzips");

    let config = json(&blob(layout, &manifest["config"]));
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([format!("sha256:{}", sha256_hex(&tar))]), "diff_id of the uncompressed layer");
    assert!(config.get("created").is_none() && config.get("history").is_none(), "no timestamps in the config");

    let entries = untar(&tar);
    assert_eq!(entries.len(), 1, "the layer holds one file: {:?}", entries.iter().map(|e| &e.name).collect::<Vec<_>>());
    let e = &entries[0];
    assert_eq!((e.name.as_str(), e.typeflag), ("plugin.wasm", b'0'));
    assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o644, 0, 0, want_mtime));
    assert_eq!((e.uname.as_str(), e.gname.as_str()), ("", ""));
    assert!(e.data == wasm, "plugin.wasm is the built filter, byte for byte");

    // Nothing but the three blobs the manifest names.
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    blobs.sort();
    let mut named: Vec<String> = [mdesc, &manifest["config"], &layers[0]].iter().map(|d| d["digest"].as_str().unwrap()[7..].to_string()).collect();
    named.sort();
    assert_eq!(blobs, named, "no stray blobs");

    mdesc["digest"].as_str().unwrap().to_string()
}

#[test]
fn oci_layout_is_a_compat_wasm_image_and_reproducible() {
    let wasm = std::fs::read(wasm_path()).expect("read wasm");
    let (one, two) = (Scratch::new("one"), Scratch::new("two"));
    let (layout1, archive1) = build(&one, None);
    let (layout2, archive2) = build(&two, None);

    let digest1 = check_layout(&layout1, &wasm, 0);
    let digest2 = check_layout(&layout2, &wasm, 0);
    assert_eq!(digest1, digest2, "two builds, one manifest digest");
    assert!(files(&layout1) == files(&layout2), "two builds, the same bytes in every file");
    assert!(std::fs::read(&archive1).unwrap() == std::fs::read(&archive2).unwrap(), "two builds, the same archive");

    // The archive is the layout, file for file, with the same fixed metadata.
    let entries = untar(&std::fs::read(&archive1).unwrap());
    let mut from_archive = BTreeMap::new();
    for e in &entries {
        assert_eq!((e.uid, e.gid, e.mtime, e.uname.as_str(), e.gname.as_str()), (0, 0, 0, "", ""), "{}", e.name);
        match e.typeflag {
            b'0' => assert!(from_archive.insert(e.name.clone(), e.data.clone()).is_none()),
            b'5' => assert!(e.name.ends_with('/') && e.mode == 0o755, "{}", e.name),
            t => panic!("unexpected entry type {t} for {}", e.name),
        }
    }
    assert!(from_archive == files(&layout1), "the archive holds exactly the layout");

    // Rebuilding into an existing layout replaces it rather than adding to it.
    let (again, _) = build(&one, None);
    assert_eq!(check_layout(&again, &wasm, 0), digest1);
}

#[test]
fn source_date_epoch_sets_the_file_time() {
    let wasm = std::fs::read(wasm_path()).expect("read wasm");
    let (plain, dated) = (Scratch::new("plain"), Scratch::new("dated"));
    let (layout0, _) = build(&plain, None);
    let (layout1, _) = build(&dated, Some("1700000000"));
    let d0 = check_layout(&layout0, &wasm, 0);
    let d1 = check_layout(&layout1, &wasm, 1_700_000_000);
    assert_ne!(d0, d1, "the file time is part of the image");
}

#[test]
fn refuses_to_overwrite_a_directory_that_is_not_a_layout() {
    let scratch = Scratch::new("foreign");
    let out = scratch.0.join("precious");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_oci-image")).arg("--wasm").arg(wasm_path()).arg("--out").arg(&out).output().unwrap();
    assert!(!run.status.success());
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "keep me");
}
