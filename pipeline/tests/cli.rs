//! The `vitrine` command line: exit statuses and messages a user sees first.
//! (Having integration tests here also makes cargo build the binary for `tests/`.)

use std::process::Command;

fn vitrine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vitrine"))
}

#[test]
fn a_missing_spec_file_is_exit_status_2_with_its_name() {
    let out = vitrine().args(["validate", "no/such/spec.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read no/such/spec.yaml"), "{stderr}");
}

#[test]
fn run_refuses_an_invalid_spec_before_starting_anything() {
    let dir = std::env::temp_dir().join(format!("vitrine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("s.yaml");
    std::fs::write(&spec, "name: x\nsources: []\nmodel: {path: m.onnx}\ncatalog: {path: c.jsonl}\n").unwrap();
    let out = vitrine().arg("run").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in ["sources:", "model.path:", "catalog.path:"] {
        assert!(stderr.contains(path), "{path} not in {stderr}");
    }
}

#[test]
fn help_lists_the_commands() {
    let out = vitrine().arg("--help").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("run") && stdout.contains("validate"), "{stdout}");
}

#[test]
fn athena_ddl_prints_a_table_per_parquet_table() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo.yaml");
    // The demo writes to a local folder: Athena needs to be told where it is synced.
    let out = vitrine().args(["athena-ddl", demo]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--location s3://"), "{out:?}");
    let out =
        vitrine().args(["athena-ddl", demo, "--location", "s3://shop/vitrine", "--database", "live"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let ddl = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ddl.matches("CREATE EXTERNAL TABLE IF NOT EXISTS live.").count(), 3, "{ddl}");
    assert!(ddl.contains("LOCATION 's3://shop/vitrine/product_events/'"), "{ddl}");
}
