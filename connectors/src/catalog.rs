//! The product catalog from a JSONL file: loaded at start, watched for changes, and turned
//! into differences (+1 new or changed entry, -1 old entry) for the differential collection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vitrine_schemas::CatalogItem;

use crate::images::ImageStore;

/// A catalog line that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogProblem {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// A change of the catalog: an entry and +1 (added) or -1 (removed).
pub type CatalogChange = (CatalogItem, isize);

/// Reads a JSONL catalog. Bad lines are returned as problems and left out; the rest is used.
/// Local pictures are added to `images` and their `image` becomes the served URL.
pub fn load(path: &Path, images: &ImageStore) -> Result<(BTreeSet<CatalogItem>, Vec<CatalogProblem>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read catalog {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = BTreeSet::new();
    let mut skus = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let problem = |reason: String| CatalogProblem { path: path.into(), line: i + 1, reason };
        let mut item: CatalogItem = match serde_json::from_str(line) {
            Ok(item) => item,
            Err(e) => {
                problems.push(problem(format!("not a catalog entry: {e}")));
                continue;
            }
        };
        if item.sku.is_empty() || item.label.is_empty() {
            problems.push(problem("`sku` and `label` must not be empty".into()));
            continue;
        }
        if !skus.insert(item.sku.clone()) {
            problems.push(problem(format!("sku `{}` appears more than once; the first entry is used", item.sku)));
            continue;
        }
        if let Some(image) = &item.image {
            // A URL is left as it is; anything else is a picture file that vitrine serves.
            if !image.contains("://") {
                match images.add_file(&base.join(image)) {
                    Ok(url) => item.image = Some(url),
                    Err(e) => {
                        problems.push(problem(format!("image {e}; the product is shown without a picture")));
                        item.image = None;
                    }
                }
            }
        }
        items.insert(item);
    }
    Ok((items, problems))
}

/// A picture given as a file (not a URL) is added to `images` and replaced by its served URL.
/// A picture that cannot be read is dropped (the product is shown without one) and reported.
pub fn serve_image(item: &mut CatalogItem, base: &Path, images: &ImageStore) -> Result<(), String> {
    let Some(image) = &item.image else { return Ok(()) };
    if image.contains("://") {
        return Ok(());
    }
    match images.add_file(&base.join(image)) {
        Ok(url) => {
            item.image = Some(url);
            Ok(())
        }
        Err(e) => {
            item.image = None;
            Err(format!("image {e}; the product is shown without a picture"))
        }
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &BTreeSet<CatalogItem>, new: &BTreeSet<CatalogItem>) -> Vec<CatalogChange> {
    let removed = old.difference(new).map(|i| (i.clone(), -1));
    let added = new.difference(old).map(|i| (i.clone(), 1));
    removed.chain(added).collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads the catalog, sends it as additions, then (if `watch`) polls the file and sends
/// what changed until `stop`. Problems go to `on_problem`.
pub fn run(
    path: &Path,
    watch: bool,
    poll: Duration,
    images: &ImageStore,
    changes: &Sender<Vec<CatalogChange>>,
    stop: &Arc<AtomicBool>,
    on_problem: &dyn Fn(CatalogProblem),
) -> Result<(), String> {
    let mut seen = stamp(path);
    let (mut current, problems) = load(path, images)?;
    problems.into_iter().for_each(on_problem);
    tracing::info!(catalog = %path.display(), products = current.len(), "catalog loaded");
    if changes.send(current.iter().map(|i| (i.clone(), 1)).collect()).is_err() || !watch {
        return Ok(());
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(poll);
        let now = stamp(path);
        if now == seen {
            continue;
        }
        seen = now;
        match load(path, images) {
            Ok((next, problems)) => {
                problems.into_iter().for_each(on_problem);
                let delta = diff(&current, &next);
                if !delta.is_empty() {
                    tracing::info!(catalog = %path.display(), changes = delta.len(), "catalog changed");
                    if changes.send(delta).is_err() {
                        return Ok(());
                    }
                }
                current = next;
            }
            Err(e) => tracing::warn!(error = %e, "catalog reload failed; keeping the previous one"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_and_the_rest_is_kept() {
        let dir = std::env::temp_dir().join(format!("vitrine-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"sku":"A","label":"cup","title":"Mug","price":12.5,"currency":"EUR"}"#,
                "\n",
                r#"{"sku":"B","label":"cup","title":"Mug","price":"free","currency":"EUR"}"#,
                "\n",
                "not json\n",
                r#"{"sku":"A","label":"apple","title":"Dup","price":1,"currency":"EUR"}"#,
                "\n",
                r#"{"sku":"C","label":"apple","title":"Apple","price":-1,"currency":"EUR"}"#,
                "\n",
            ),
        )
        .unwrap();
        let (items, problems) = load(&path, &ImageStore::default()).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(problems[3].reason.contains("non-negative"), "{}", problems[3]);
    }

    #[test]
    fn a_price_change_is_a_retraction_and_an_addition() {
        let item = |cents| CatalogItem {
            sku: "A".into(),
            label: "cup".into(),
            title: "Mug".into(),
            price: vitrine_schemas::Money(cents),
            currency: "EUR".into(),
            image: None,
            url: None,
            in_stock: true,
            streams: vec![],
        };
        let old: BTreeSet<_> = [item(100)].into();
        let new: BTreeSet<_> = [item(200)].into();
        assert_eq!(diff(&old, &new), vec![(item(100), -1), (item(200), 1)]);
    }
}
