//! The deployment files: the Kubernetes manifests parse, agree with each other, hold a spec
//! that `vitrine validate` accepts, and the cluster settings they rely on (process id from
//! the pod's name, peers from the headless Service) give each pod its place, as
//! `vitrine run --dry-run` shows against a real broker: which worker of which pod reads
//! which partition; and the viewer tier's Deployment runs `vitrine serve` on the same spec,
//! ready once it has read the state topic, exiting 0 on SIGTERM.

use std::process::Command;

use serde_yaml_ng::Value;
use vitrine_tests::{root, temp_dir, vitrine_bin, Broker};

fn manifests() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/vitrine.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not text: {v:?}"))
}

#[test]
fn the_kubernetes_manifests_give_every_pod_its_place_in_the_cluster() {
    let docs = manifests();
    let set = kind(&docs, "StatefulSet");
    let service = kind(&docs, "Service");
    let config = kind(&docs, "ConfigMap");
    assert_eq!(service["spec"]["clusterIP"], "None", "the peers' Service is headless");
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    assert_eq!(set["spec"]["podManagementPolicy"], "Parallel", "a timely cluster starts together");
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(text(&env(container, "VITRINE_PROCESSES")["value"]), replicas.to_string());
    let cluster_service = text(&env(container, "VITRINE_CLUSTER_SERVICE")["value"]);
    let timely_port = container["ports"].as_sequence().unwrap().iter().find(|p| p["name"] == "timely").unwrap();
    assert!(cluster_service.starts_with(&format!("{}.", text(&service["metadata"]["name"]))), "{cluster_service}");
    assert!(cluster_service.ends_with(&format!(":{}", timely_port["containerPort"].as_u64().unwrap())));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let volume = &set["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["configMap"]["name"], config["metadata"]["name"]);

    // The spec of the ConfigMap, with the image's paths pointing into this checkout.
    let dir = temp_dir("deploy");
    let spec = text(&config["data"]["spec.yaml"]).replace("/opt/vitrine/", &format!("{}/", root().display()));
    let spec_path = dir.join("spec.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = Command::new(vitrine_bin()).arg("validate").arg(&spec_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Each pod of the set, as Kubernetes starts it, against a real broker with 4 partitions.
    let broker = Broker::start();
    let status = Command::new(vitrine_bin())
        .args(["topics", "create", "--partitions", "4"])
        .arg(&spec_path)
        .env("VITRINE_BROKERS", &broker.address)
        .status();
    assert!(status.unwrap().success());
    let workers = text(&env(container, "VITRINE_WORKERS")["value"]).parse::<usize>().unwrap();
    for pod in 0..replicas {
        let out = Command::new(vitrine_bin())
            .args(["run", "--dry-run"])
            .arg(&spec_path)
            .env("HOSTNAME", format!("{}-{pod}", text(&set["metadata"]["name"])))
            .env("VITRINE_PROCESSES", replicas.to_string())
            .env("VITRINE_WORKERS", workers.to_string())
            .env("VITRINE_CLUSTER_SERVICE", cluster_service.replace("$(POD_NAMESPACE)", "shop"))
            .env("VITRINE_BROKERS", &broker.address)
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{plan}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            plan.contains(&format!(
                "process {pod} of {replicas} x {workers} worker(s) (workers {}..{}), listening on vitrine-{pod}.vitrine-cluster.shop.svc.cluster.local:2101",
                pod as usize * workers,
                (pod as usize + 1) * workers
            )),
            "{plan}"
        );
        for partition in 0..4usize {
            let worker = partition % (replicas as usize * workers);
            let owner = worker / workers;
            let mine = if owner == pod as usize { "  <- this process" } else { "" };
            let line = format!("partition {partition} -> worker {worker} (process {owner}){mine}\n");
            assert!(plan.contains(&line), "{line} not in {plan}");
        }
        assert!(plan.contains("parquet: s3://analytics/vitrine"), "{plan}");
    }

    // The viewer tier: a Deployment of `vitrine serve` on the same ConfigMap, behind its Service.
    let viewers = docs.iter().find(|d| d["kind"] == "Deployment").expect("the viewer tier's Deployment");
    let pod = &viewers["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["args"][0], "serve");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(pod["spec"]["volumes"][0]["configMap"]["name"], config["metadata"]["name"]);
    let front = docs.iter().find(|d| d["kind"] == "Service" && d["spec"]["selector"] == pod["metadata"]["labels"]);
    assert!(front.is_some_and(|s| s["spec"]["ports"][0]["targetPort"] == "http"), "a Service in front of the viewers");
    let port = vitrine_tests::free_port();
    let log = dir.join("serve.log");
    let mut serve = Command::new(vitrine_bin())
        .args(
            container["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| text(a).replace("/etc/vitrine/spec.yaml", &spec_path.display().to_string())),
        )
        .env("VITRINE_BROKERS", &broker.address)
        .env("VITRINE_LISTEN", format!("127.0.0.1:{port}"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        && vitrine_tests::http_response(port, "/readyz").0.starts_with("http/1.0 200"))
    {
        assert!(std::time::Instant::now() < deadline, "never ready:\n{}", std::fs::read_to_string(&log).unwrap());
        assert!(serve.try_wait().unwrap().is_none(), "exited:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let status = serve.wait().unwrap();
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(&log).unwrap());
}

#[test]
fn kafka_client_settings_come_from_vitrine_kafka_variables() {
    let dir = temp_dir("kafka-settings");
    let spec = dir.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: settings\nsources:\n  - kind: kafka\n    brokers: 127.0.0.1:9\nmodel:\n  path: {}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx\ncatalog:\n  path: {}/examples/demo-catalog.jsonl\n",
            root().display(),
            root().display()
        ),
    )
    .unwrap();
    let out =
        Command::new(vitrine_bin()).arg("run").arg(&spec).env("VITRINE_KAFKA_NO_SUCH_SETTING", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no.such.setting") && stderr.contains("VITRINE_KAFKA_"), "{stderr}");
}
