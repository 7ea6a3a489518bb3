//! The product catalog from a JSONL file: loaded at start, watched for changes, and turned
//! into differences (+1 new or changed entry, -1 old entry) for the differential collection.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
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

/// Reads a catalog file: JSONL (`.jsonl`, `.json`), CSV (`.csv`) or Parquet (`.parquet`), by
/// its extension. Bad rows are returned as problems and left out; the rest is used. Local
/// pictures are added to `images` and their `image` becomes the served URL.
pub fn load(path: &Path, images: &ImageStore) -> Result<(BTreeSet<CatalogItem>, Vec<CatalogProblem>), String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let read_error = |e: String| format!("cannot read catalog {}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
    let rows = rows(&ext, bytes).map_err(read_error)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = BTreeSet::new();
    let mut skus = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (line, row) in rows {
        let problem = |reason: String| CatalogProblem { path: path.into(), line, reason };
        let mut item = match row {
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
        if let Err(e) = serve_image(&mut item, base, images) {
            problems.push(problem(e));
        }
        items.insert(item);
    }
    Ok((items, problems))
}

/// The rows of a whole catalog file's `bytes` in format `ext` (`csv`, `parquet`, else JSONL):
/// per row its line or row number and the entry, or why it is not one. Err: the file as a
/// whole cannot be read so.
pub fn rows(ext: &str, bytes: Vec<u8>) -> Result<formats::Rows, String> {
    match ext {
        "csv" => Ok(formats::csv_rows(&bytes)),
        "parquet" => formats::parquet_rows(bytes),
        _ => formats::jsonl_rows(bytes),
    }
}

/// Row readers per file format: (line or row number, the entry or why it is not one).
pub mod formats {
    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray};
    use vitrine_schemas::{CatalogItem, Money};

    pub type Rows = Vec<(usize, Result<CatalogItem, String>)>;

    pub fn jsonl_rows(bytes: Vec<u8>) -> Result<Rows, String> {
        let text = String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text ({e}); JSONL catalogs are UTF-8"))?;
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim().starts_with("//"))
            .map(|(i, l)| (i + 1, serde_json::from_str(l.trim()).map_err(|e| e.to_string())))
            .collect())
    }

    /// A CSV row: the catalog fields as columns; `streams` separated by `;`.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CsvRow {
        sku: String,
        label: String,
        title: String,
        price: Money,
        currency: String,
        #[serde(default)]
        image: Option<String>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        in_stock: Option<bool>,
        #[serde(default)]
        streams: Option<String>,
    }

    pub fn csv_rows(bytes: &[u8]) -> Rows {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
        reader
            .deserialize::<CsvRow>()
            .enumerate()
            .map(|(i, row)| {
                let item = row.map_err(|e| e.to_string()).map(|r| CatalogItem {
                    sku: r.sku,
                    label: r.label,
                    title: r.title,
                    price: r.price,
                    currency: r.currency,
                    image: r.image.filter(|s| !s.is_empty()),
                    url: r.url.filter(|s| !s.is_empty()),
                    in_stock: r.in_stock.unwrap_or(true),
                    streams: r
                        .streams
                        .map(|s| s.split(';').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
                        .unwrap_or_default(),
                });
                (i + 2, item) // line 1 is the header
            })
            .collect()
    }

    /// Parquet columns: `sku`, `label`, `title`, `currency` (strings), `price` (double), and
    /// optionally `image`, `url` (strings), `in_stock` (boolean), `streams` (list of strings).
    pub fn parquet_rows(bytes: Vec<u8>) -> Result<Rows, String> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        let mut row = 0;
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            for i in 0..batch.num_rows() {
                row += 1;
                rows.push((row, parquet_item(&batch, i)));
            }
        }
        Ok(rows)
    }

    fn parquet_item(batch: &RecordBatch, i: usize) -> Result<CatalogItem, String> {
        let column = |name: &str| batch.column_by_name(name);
        let text = |name: &str| -> Result<Option<String>, String> {
            match column(name) {
                None => Ok(None),
                Some(c) => {
                    let c =
                        c.as_any().downcast_ref::<StringArray>().ok_or(format!("column `{name}` must be a string"))?;
                    Ok((!c.is_null(i)).then(|| c.value(i).to_string()))
                }
            }
        };
        let required = |name: &str| text(name)?.ok_or(format!("`{name}` is missing"));
        let price = match column("price") {
            Some(c) if c.as_any().is::<Float64Array>() => {
                let c = c.as_any().downcast_ref::<Float64Array>().expect("checked");
                if c.is_null(i) {
                    None
                } else {
                    Some(c.value(i))
                }
            }
            Some(c) if c.as_any().is::<Int64Array>() => {
                let c = c.as_any().downcast_ref::<Int64Array>().expect("checked");
                if c.is_null(i) {
                    None
                } else {
                    Some(c.value(i) as f64)
                }
            }
            _ => return Err("column `price` must be a double".into()),
        }
        .ok_or("`price` is missing")?;
        if !price.is_finite() || price < 0.0 {
            return Err(format!("price must be a non-negative number, got {price}"));
        }
        let in_stock = match column("in_stock") {
            Some(c) => {
                let c = c.as_any().downcast_ref::<BooleanArray>().ok_or("column `in_stock` must be a boolean")?;
                c.is_null(i) || c.value(i)
            }
            None => true,
        };
        let streams = match column("streams") {
            Some(c) => {
                let c = c.as_any().downcast_ref::<ListArray>().ok_or("column `streams` must be a list of strings")?;
                if c.is_null(i) {
                    Vec::new()
                } else {
                    let values = c.value(i);
                    let values = values
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or("column `streams` must be a list of strings")?;
                    values.iter().flatten().map(str::to_owned).collect()
                }
            }
            None => Vec::new(),
        };
        Ok(CatalogItem {
            sku: required("sku")?,
            label: required("label")?,
            title: required("title")?,
            price: Money((price * 100.0).round() as i64),
            currency: required("currency")?,
            image: text("image")?,
            url: text("url")?,
            in_stock,
            streams,
        })
    }
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

/// Decides when a changed catalog file is read again: only once it has kept the same size and
/// modification time for a whole poll. Most writers (`std::fs::write`, `>` in a shell, editors
/// saving in place) truncate first and write after; reading between the two would take every
/// product off screen for one poll and put it back.
#[derive(Debug)]
struct Settle {
    loaded: Option<(SystemTime, u64)>,
    changed: Option<Option<(SystemTime, u64)>>,
}

impl Settle {
    fn new(loaded: Option<(SystemTime, u64)>) -> Self {
        Self { loaded, changed: None }
    }

    /// Takes the file's stamp at one poll; true when it should be read now.
    fn ready(&mut self, now: Option<(SystemTime, u64)>) -> bool {
        if now == self.loaded {
            self.changed = None;
            return false;
        }
        if self.changed == Some(now) {
            self.loaded = now;
            self.changed = None;
            return true;
        }
        self.changed = Some(now);
        false
    }
}

/// Loads the catalog, sends it as additions, then (if `watch`) polls the file and sends
/// what changed until `stop`. Problems go to `on_problem`.
pub fn run(
    path: &Path,
    watch: bool,
    poll: Duration,
    images: &ImageStore,
    changes: &SyncSender<Vec<CatalogChange>>,
    stop: &Arc<AtomicBool>,
    on_problem: &dyn Fn(CatalogProblem),
) -> Result<(), String> {
    let seen = stamp(path);
    let (mut current, problems) = load(path, images)?;
    problems.into_iter().for_each(on_problem);
    tracing::info!(catalog = %path.display(), products = current.len(), "catalog loaded");
    if changes.send(current.iter().map(|i| (i.clone(), 1)).collect()).is_err() || !watch {
        return Ok(());
    }
    let mut settle = Settle::new(seen);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(poll);
        if !settle.ready(stamp(path)) {
            continue;
        }
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
                images.keep_only(current.iter().filter_map(|i| i.image.as_deref()));
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
    fn a_change_is_read_once_the_file_has_settled_for_a_poll() {
        let t = |s: u64| Some((SystemTime::UNIX_EPOCH + Duration::from_secs(s), 100 + s));
        let mut settle = Settle::new(t(0));
        assert!(!settle.ready(t(0)), "nothing changed");
        // Truncated, then written: neither the empty file nor the half-written one is read.
        assert!(!settle.ready(Some((SystemTime::UNIX_EPOCH, 0))));
        assert!(!settle.ready(t(1)));
        assert!(settle.ready(t(1)), "the same stamp on two polls in a row");
        assert!(!settle.ready(t(1)), "read once");
        // A file that goes away is a change too, read (and refused) once it stays away.
        assert!(!settle.ready(None));
        assert!(settle.ready(None));
        // Put back as it was before it went away: read again.
        assert!(!settle.ready(t(1)));
        assert!(settle.ready(t(1)));
    }

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
    fn csv_and_parquet_catalogs_read_like_jsonl() {
        use std::sync::Arc;

        use arrow_array::builder::{ListBuilder, StringBuilder};
        use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};

        let dir = std::env::temp_dir().join(format!("vitrine-catalog-formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("c.csv");
        std::fs::write(
            &csv,
            "sku,label,title,price,currency,image,url,in_stock,streams\n\
             A,cup,\"Mug, red\",12.5,EUR,,https://x/a,true,show1;show2\n\
             B,cup,Mug,cheap,EUR,,,,\n",
        )
        .unwrap();
        let (items, problems) = load(&csv, &ImageStore::default()).unwrap();
        let a = items.iter().next().unwrap();
        assert_eq!((a.title.as_str(), a.price.0, a.streams.len()), ("Mug, red", 1250, 2));
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), vec![3], "{problems:?}");

        let mut streams = ListBuilder::new(StringBuilder::new());
        streams.values().append_value("show1");
        streams.append(true);
        streams.append(false);
        let strings = |v: [&str; 2]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let batch = RecordBatch::try_from_iter([
            ("sku", strings(["A", "B"])),
            ("label", strings(["cup", "apple"])),
            ("title", strings(["Mug", "Apple"])),
            ("price", Arc::new(Float64Array::from(vec![12.5, 0.99])) as ArrayRef),
            ("currency", strings(["EUR", "EUR"])),
            ("streams", Arc::new(streams.finish()) as ArrayRef),
        ])
        .unwrap();
        let pq = dir.join("c.parquet");
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (items, problems) = load(&pq, &ImageStore::default()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let v: Vec<_> = items.iter().map(|i| (i.sku.as_str(), i.price.0, i.streams.clone())).collect();
        assert_eq!(v, vec![("A", 1250, vec!["show1".to_string()]), ("B", 99, vec![])]);
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
