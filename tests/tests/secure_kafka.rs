//! Kafka as managed services run it: over TLS, with credentials. The settings come from
//! `VITRINE_KAFKA_*` variables; a refused certificate or refused credentials stop the run
//! with exit 1 and a message that names the settings to check.
//!
//! The broker is Tansu with a TLS terminator in front (tests/tools/tls_proxy.py, since
//! Tansu 0.6.0's own TLS listener never completes a handshake), and Tansu with
//! `--authentication` for SCRAM. A successful SCRAM login is not tested: Tansu creates users
//! only through an authenticated connection, or in a storage its in-memory engine cannot share.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vitrine_tests::kafka_runs::{kafka_spec, topic_messages_with, Pipeline};
use vitrine_tests::{free_port, root, temp_dir, vitrine_bin, Broker, TlsProxy};

fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A broker reachable only through a TLS terminator: clients bootstrap on the proxy and the
/// broker advertises the proxy's address.
fn broker_behind_tls() -> (Broker, TlsProxy) {
    let port = free_port();
    let broker = Broker::start_with(Some(&format!("127.0.0.1:{port}")), &[]);
    let broker_port = broker.address.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = TlsProxy::start(port, broker_port);
    (broker, proxy)
}

fn tls_settings(ca: &Path) -> Vec<(&'static str, String)> {
    vec![("security.protocol", "SSL".into()), ("ssl.ca.location", ca.display().to_string())]
}

fn tls_env(ca: &Path) -> Vec<(&'static str, String)> {
    vec![("VITRINE_KAFKA_SECURITY_PROTOCOL", "SSL".into()), ("VITRINE_KAFKA_SSL_CA_LOCATION", ca.display().to_string())]
}

#[test]
fn frames_and_events_travel_over_tls_to_a_broker_with_its_own_ca() {
    let (_broker, proxy) = broker_behind_tls();
    let dir = temp_dir("kafka-tls");
    let sinks = format!(
        "sinks:\n  kafka:\n    brokers: {}\n    detections_topic: tls.detections\n    events_topic: tls.events\n    \
         dead_letter_topic: tls.dead-letter\n",
        proxy.address
    );
    let spec = kafka_spec(&dir, "tls", &proxy.address, "tls", &["shop1"], &sinks);
    let env = tls_env(&proxy.ca);
    let with_env = |c: &mut Command| {
        c.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    };
    let mut create = Command::new(vitrine_bin());
    create.args(["topics", "create", "--partitions", "1"]).arg(&spec);
    with_env(&mut create);
    run_ok(&mut create);
    let mut sample = Command::new(vitrine_bin());
    sample
        .args(["sample", "--stream-id", "shop1", "--fps", "5", "--fast", "--brokers", &proxy.address, "--url"])
        .arg(root().join("examples/sample/shopping.mp4"));
    with_env(&mut sample);
    run_ok(&mut sample);

    let log = dir.join("vitrine.log");
    let mut pipeline = Pipeline::start(&spec, &[], &env, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let events = loop {
        let events =
            topic_messages_with(&proxy.address, &tls_settings(&proxy.ca), "tls.events", Duration::from_secs(2));
        if events.len() >= 6 {
            break events;
        }
        let log_text = || std::fs::read_to_string(&log).unwrap();
        assert!(pipeline.0.try_wait().unwrap().is_none(), "vitrine run exited:\n{}", log_text());
        assert!(Instant::now() < deadline, "{} of 6 events over TLS:\n{}", events.len(), log_text());
    };
    let mut kinds: Vec<(i64, String, String)> = events
        .iter()
        .map(|(_, v)| {
            (v["pts_ms"].as_i64().unwrap(), v["kind"].as_str().unwrap().into(), v["sku"].as_str().unwrap().into())
        })
        .collect();
    kinds.sort();
    let kinds: Vec<(&str, &str)> = kinds.iter().map(|(_, k, s)| (k.as_str(), s.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("appeared", "MUG-ESP-01"),
            ("disappeared", "MUG-ESP-01"),
            ("appeared", "APL-GALA-1KG"),
            ("disappeared", "APL-GALA-1KG"),
            ("appeared", "ORG-VAL-2KG"),
            ("disappeared", "ORG-VAL-2KG")
        ]
    );
}

/// `vitrine run` on a Kafka source at `brokers` with `env`: its exit status and stderr.
fn run_against(brokers: &str, env: &[(&str, &str)], name: &str) -> (Option<i32>, String) {
    let dir = temp_dir(name);
    let spec = kafka_spec(&dir, name, brokers, name, &[], "");
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).envs(env.iter().copied()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_tls_listener_the_client_cannot_use_stops_the_run_naming_the_tls_settings() {
    let (_broker, proxy) = broker_behind_tls();
    // Plain TCP to a TLS listener.
    let (code, stderr) = run_against(&proxy.address, &[], "tls-plain");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("VITRINE_KAFKA_SECURITY_PROTOCOL"), "{stderr}");
    // TLS, but the broker's certificate is signed by no CA the client trusts.
    let (code, stderr) = run_against(&proxy.address, &[("VITRINE_KAFKA_SECURITY_PROTOCOL", "SSL")], "tls-untrusted");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    assert!(stderr.contains("VITRINE_KAFKA_SSL_CA_LOCATION"), "{stderr}");
}

#[test]
fn credentials_the_broker_refuses_stop_the_run_naming_the_sasl_settings() {
    let broker = Broker::start_with(None, &["--authentication"]);
    let env = [
        ("VITRINE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("VITRINE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("VITRINE_KAFKA_SASL_USERNAME", "shop"),
        ("VITRINE_KAFKA_SASL_PASSWORD", "not-the-password"),
    ];
    let (code, stderr) = run_against(&broker.address, &env, "sasl-refused");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("SASL") && stderr.contains("VITRINE_KAFKA_SASL_USERNAME"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "the password must not be printed: {stderr}");
}
