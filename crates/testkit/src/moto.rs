//! `moto_server` (the AWS emulator, installed by `make emulator`) on a free port, for one test.
//! Every service answers on the one port; the process is killed when the handle drops.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub port: u16,
    child: Child,
}

fn binary() -> String {
    std::env::var("MOTO_SERVER")
        .unwrap_or_else(|_| crate::workspace_root().join(".cache/moto/bin/moto_server").display().to_string())
}

impl Moto {
    /// Starts moto on a port the OS picks (`-p 0`) and reads the port from its startup line, so
    /// no other test's listener can be mistaken for it.
    pub fn start() -> Self {
        let bin = binary();
        assert!(std::path::Path::new(&bin).exists(), "{bin} not found: run `make emulator` (or set MOTO_SERVER)");
        Self::start_command(Command::new(&bin))
    }

    /// Moto serving one request at a time (conditional writes atomic, as in AWS: see
    /// `tests/emulator/serial_moto_server.py`) and recording every request it serves (JSON lines
    /// in `path`), so tests can count the calls that reached the emulator, on the wire.
    pub fn start_serial_recording(path: &std::path::Path) -> Self {
        let path = path.to_str().expect("utf-8 path");
        let bin = binary();
        let python = std::path::Path::new(&bin).with_file_name("python");
        let mut cmd = Command::new(python);
        cmd.arg(crate::workspace_root().join("tests/emulator/serial_moto_server.py"))
            .envs([("MOTO_ENABLE_RECORDING", "True"), ("MOTO_RECORDER_FILEPATH", path)]);
        Self::start_command(cmd)
    }

    fn start_command(mut cmd: Command) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep draining after the port is known: a full pipe would block moto's logging.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) =
                    line.split("Running on http://127.0.0.1:").nth(1).and_then(|p| p.trim().parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).expect("moto_server did not report its port");
        let moto = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server is not accepting connections");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes the emulator (SIGSTOP): connections are accepted by the kernel and never answered.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }

    /// The SDK configuration the tests' own clients use (static test credentials).
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        sdk_for(&self.url()).await
    }
}

pub async fn sdk_for(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// Environment for a `kvs-infer` child process pointed at `url`.
pub fn env_for(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", url.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    ddb.create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().expect("key"))
        .send()
        .await
        .expect("create table");
}
