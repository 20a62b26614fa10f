//! The config read from AWS (`CONFIG_FILE=ssm:/…` or `s3://…`), against moto: an SSM
//! SecureString and an S3 object load; a missing parameter or object and a read the caller's IAM
//! policy denies fail with a message that names the place and the permission.

use std::process::Command;

use crate::common::moto::{self, Moto};

const PARAMETER: &str = "/kvs-infer/test/config";
const BUCKET: &str = "kvs-infer-config";
const KEY: &str = "staging/config.yaml";

fn config_text() -> String {
    std::fs::read_to_string(kvs_infer_testkit::workspace_root().join("config/local.yaml")).expect("config/local.yaml")
}

/// Puts the sample config into moto's SSM (as a SecureString) and S3.
async fn store_config(moto: &Moto) {
    let sdk = moto.sdk().await;
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(PARAMETER)
        .value(config_text())
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .tier(aws_sdk_ssm::types::ParameterTier::Advanced)
        .send()
        .await
        .expect("put parameter");
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    s3.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    s3.put_object().bucket(BUCKET).key(KEY).body(config_text().into_bytes().into()).send().await.expect("put object");
}

/// `kvs-infer <args>` with `CONFIG_FILE=location`, pointed at moto: (exit code, stdout, stderr).
fn run(url: &str, location: &str, args: &[&str], keys: Option<(&str, &str)>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvs-infer"));
    cmd.current_dir(kvs_infer_testkit::workspace_root())
        .envs(moto::env_for(url))
        .env("CONFIG_FILE", location)
        .args(args);
    if let Some((id, secret)) = keys {
        cmd.env("AWS_ACCESS_KEY_ID", id).env("AWS_SECRET_ACCESS_KEY", secret);
    }
    let out = cmd.output().expect("run kvs-infer");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn config_loads_from_an_ssm_parameter_and_an_s3_object() {
    let moto = Moto::start();
    store_config(&moto).await;
    for location in [format!("ssm:{PARAMETER}"), format!("s3://{BUCKET}/{KEY}")] {
        let (code, stdout, stderr) = run(&moto.url(), &location, &["check-config"], None);
        assert_eq!(code, 0, "{location}: {stderr}");
        assert!(stdout.starts_with(&format!("{location}: valid (1 camera(s)")), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_parameter_or_object_is_named_and_serve_fails_its_first_stage() {
    let moto = Moto::start();
    store_config(&moto).await;
    for (location, names) in [
        ("ssm:/kvs-infer/test/nothing-here", "SSM parameter /kvs-infer/test/nothing-here does not exist"),
        (
            "s3://kvs-infer-config/staging/other.yaml",
            "S3 object s3://kvs-infer-config/staging/other.yaml does not exist",
        ),
        ("s3://no-such-bucket/config.yaml", "S3 object s3://no-such-bucket/config.yaml does not exist"),
    ] {
        let (code, _, stderr) = run(&moto.url(), location, &["check-config"], None);
        assert_eq!(code, 1, "{location}: {stderr}");
        assert!(stderr.contains(names) && stderr.contains(moto::REGION), "{location}: {stderr}");
    }
    // `serve` reads its config in stage `starting`, before anything listens: it exits 1 saying why.
    let (code, _, stderr) = run(&moto.url(), "ssm:/kvs-infer/test/nothing-here", &["serve"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invalid configuration ssm:/kvs-infer/test/nothing-here"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    // A location that names nothing is a usage error, named.
    let (code, _, stderr) = run(&moto.url(), "s3://bucket-only", &["check-config"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("s3://<bucket>/<key>"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_read_names_the_permission_the_role_lacks() {
    let moto = Moto::start();
    store_config(&moto).await;
    // A caller allowed to list the bucket and describe parameters, but not to read either config.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:ListBucket","ssm:DescribeParameters"],"Resource":"*"}]}"#;
    let python = kvs_infer_testkit::workspace_root().join(".cache/moto/bin/python");
    let script = kvs_infer_testkit::workspace_root().join("tests/emulator/enforce_iam.py");
    let out = Command::new(python).arg(script).arg(moto.url()).arg(policy).output().expect("enforce_iam.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).expect("key JSON");
    let keys = (key["AccessKeyId"].as_str().expect("id"), key["SecretAccessKey"].as_str().expect("secret"));
    for (location, needs) in [
        (
            format!("ssm:{PARAMETER}"),
            format!("the task role needs ssm:GetParameter on arn:aws:ssm:<region>:<account>:parameter{PARAMETER}"),
        ),
        (format!("s3://{BUCKET}/{KEY}"), format!("the task role needs s3:GetObject on arn:aws:s3:::{BUCKET}/{KEY}")),
    ] {
        let (code, _, stderr) = run(&moto.url(), &location, &["check-config"], Some(keys));
        assert_eq!(code, 1, "{location}: {stderr}");
        assert!(stderr.contains("was denied") && stderr.contains(&needs), "{location}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watchlist_kept_in_ssm_is_read_and_a_missing_one_is_named() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name("/kvs-infer/test/stolen")
        .value("# reported stolen\nKVS 2026\nXY34 ZZZ\n")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put parameter");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |parameter: &str| {
        let yaml = config_text().replace("  - id: local-0\n", "  - id: local-0\n    watchlists: [stolen]\n")
            + &format!("\nwatchlists:\n  stolen: {{ from: \"ssm:{parameter}\" }}\n");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).expect("config");
        path.display().to_string()
    };
    let (code, stdout, stderr) = run(&moto.url(), &config("/kvs-infer/test/stolen"), &["check-config"], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    let (code, _, stderr) = run(&moto.url(), &config("/kvs-infer/test/none"), &["check-config"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("watchlists.stolen.from: SSM parameter /kvs-infer/test/none does not exist"), "{stderr}");
}
