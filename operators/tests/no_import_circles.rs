//! The modules of `operators/` use each other one way: a module never reaches, through the
//! others, back to itself. A circle (decode <-> since_tiled, infer <-> model_pool, fixed in
//! issue 28) means two modules can only be read and changed together.
//!
//! Read from the source: `crate::module` paths, and names the crate root re-exports
//! (`crate::{Turn}` is `crop_schedule`'s, by `pub use crop_schedule::{.., Turn, ..}`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// Each name the crate root re-exports, and the module it comes from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut owners = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        let Some((module, names)) = rest.trim_end_matches(';').split_once("::") else { continue };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            owners.insert(name.trim().to_string(), module.to_string());
        }
    }
    owners
}

/// The modules `source` uses (a link in a comment is not a use).
fn uses(source: &str, modules: &BTreeSet<String>, owners: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code: Vec<&str> = source.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
    let source = code.join("\n");
    let mut used = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(0)].split(',').map(str::trim).collect(),
            None => vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")],
        };
        for name in names {
            let head = name.split("::").next().unwrap_or("");
            if modules.contains(head) {
                used.insert(head.to_string());
            } else if let Some(owner) = owners.get(head) {
                used.insert(owner.clone());
            }
        }
    }
    used
}

/// A circle through `module`, if any: the modules on it, `module` first and last.
fn circle_from(module: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut path = vec![module.to_string()];
    fn walk(graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, goal: &str) -> bool {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == goal {
                path.push(next.clone());
                return true;
            }
            if !path.contains(next) {
                path.push(next.clone());
                if walk(graph, path, goal) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(graph, &mut path, module).then_some(path)
}

#[test]
fn no_module_of_operators_uses_itself_through_others() {
    let sources = sources();
    let owners = reexports(&sources["lib"]);
    let modules: BTreeSet<String> = sources.keys().filter(|m| *m != "lib").cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| {
            let mut used = uses(&sources[m], &modules, &owners);
            used.remove(m);
            (m.clone(), used)
        })
        .collect();
    assert!(graph["model_pool"].contains("infer"), "the reading of the source broke: {graph:?}");
    let circles: Vec<String> = modules.iter().filter_map(|m| circle_from(m, &graph)).map(|c| c.join(" -> ")).collect();
    assert!(circles.is_empty(), "import circles in operators/src: {circles:#?}");
}

#[test]
fn a_circle_is_seen() {
    let modules: BTreeSet<String> = ["a", "b"].map(String::from).into();
    let owners = reexports("pub use b::{Thing, Other};\n");
    let graph = BTreeMap::from([
        ("a".to_string(), uses("use crate::{Thing};", &modules, &owners)),
        ("b".to_string(), uses("use crate::a::Helper;", &modules, &owners)),
    ]);
    assert_eq!(circle_from("a", &graph), Some(vec!["a".into(), "b".into(), "a".into()]));
}
