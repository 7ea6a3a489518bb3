//! Every message of the viewer protocol, as vitrine encodes it, is valid against the JSON
//! Schema published in docs/protocol.schema.json, and the schema is not so loose that a
//! broken message passes. (A small validator for the keywords the schema uses.)

use serde_json::{json, Value};
use vitrine_schemas::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use vitrine_schemas::{BBox, EventKind, Money, ProductEvent};

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local refs only");
            resolve(root, &root["$defs"][name])
        }
        None => node,
    }
}

fn type_ok(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("type {other} not handled"),
    }
}

/// Whether `value` is valid against `node` (a sub-schema of `root`).
fn valid(root: &Value, node: &Value, value: &Value) -> bool {
    let node = resolve(root, node);
    if let Some(options) = node.get("oneOf").and_then(Value::as_array) {
        if options.iter().filter(|o| valid(root, o, value)).count() != 1 {
            return false;
        }
    }
    if let Some(all) = node.get("allOf").and_then(Value::as_array) {
        if !all.iter().all(|o| valid(root, o, value)) {
            return false;
        }
    }
    if let Some(ty) = node.get("type") {
        let ok = match ty {
            Value::String(t) => type_ok(value, t),
            Value::Array(ts) => ts.iter().any(|t| type_ok(value, t.as_str().unwrap())),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    if node.get("const").is_some_and(|c| c != value) {
        return false;
    }
    if node.get("enum").and_then(Value::as_array).is_some_and(|e| !e.contains(value)) {
        return false;
    }
    if let Some(object) = value.as_object() {
        if let Some(required) = node.get("required").and_then(Value::as_array) {
            if !required.iter().all(|k| object.contains_key(k.as_str().unwrap())) {
                return false;
            }
        }
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (key, v) in object {
                match properties.get(key) {
                    Some(p) if !valid(root, p, v) => return false,
                    None if node.get("additionalProperties") == Some(&Value::Bool(false)) => return false,
                    _ => {}
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (node.get("items"), value.as_array()) {
        if !array.iter().all(|v| valid(root, items, v)) {
            return false;
        }
    }
    true
}

fn event(kind: EventKind, bbox: Option<BBox>) -> ProductEvent {
    ProductEvent {
        event_id: "2a971380bcbe355c".into(),
        kind,
        stream_id: "demo".into(),
        sku: "MUG-ESP-01".into(),
        label: "cup".into(),
        title: "Espresso mug".into(),
        price: Money(1490),
        currency: "EUR".into(),
        in_stock: true,
        image_url: Some("/v1/images/0123456789abcdef.jpg".into()),
        product_url: None,
        bbox,
        score: 0.82,
        match_score: Some(0.81),
        pts_ms: 3000,
        emitted_at_ms: 1_795_000_000_000,
    }
}

fn messages() -> Vec<Value> {
    let bbox = Some(BBox { x0: 0.1, y0: 0.2, x1: 0.4, y1: 0.7 });
    let server = [
        ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            stream_id: "demo".into(),
            server_time_ms: 1,
            run_started_ms: 1,
            media_time_ms: None,
        },
        ServerMessage::Snapshot {
            media_time_ms: Some(3400),
            products: vec![event(EventKind::Appeared, bbox)],
            last_event_id: Some("2a971380bcbe355c".into()),
        },
        ServerMessage::Event(event(EventKind::Updated, bbox)),
        ServerMessage::Event(event(EventKind::Disappeared, None)),
        ServerMessage::Heartbeat { server_time_ms: 1, media_time_ms: Some(9000) },
    ];
    let mut out: Vec<Value> = server.iter().map(|m| serde_json::to_value(m).unwrap()).collect();
    out.push(serde_json::to_value(ClientMessage::Snapshot).unwrap());
    out
}

#[test]
fn every_message_vitrine_sends_or_takes_is_valid_against_the_published_schema() {
    let schema = schema();
    for message in messages() {
        assert!(valid(&schema, &schema, &message), "not valid against docs/protocol.schema.json: {message}");
    }
}

#[test]
fn the_schema_refuses_broken_messages() {
    let schema = schema();
    let mut event = serde_json::to_value(ServerMessage::Event(event(EventKind::Appeared, None))).unwrap();
    event["kind"] = json!("teleported");
    let broken = [
        json!({"type": "hello", "protocol": 2, "stream_id": "demo", "server_time_ms": 1, "media_time_ms": null}),
        json!({"type": "snapshot", "products": []}),
        event,
        json!({"type": "heartbeat", "server_time_ms": "soon", "media_time_ms": null}),
        json!({"type": "resume"}),
    ];
    for message in broken {
        assert!(!valid(&schema, &schema, &message), "should be refused: {message}");
    }
}
