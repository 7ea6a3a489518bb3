use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::ModelError;

/// A loaded ONNX Runtime. The library is loaded once per process (`ort` keeps it global).
#[derive(Clone, Debug)]
pub struct Runtime {
    env: ort::environment::Environment,
    library: PathBuf,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

impl Runtime {
    /// Loads the ONNX Runtime C library at `library` (first call wins; later calls return it).
    pub fn load(library: &Path) -> Result<Runtime, ModelError> {
        let result = RUNTIME.get_or_init(|| {
            let builder = ort::init_from(library).map_err(|e| e.to_string())?;
            let env = builder.with_name("vitrine").build().map_err(|e| e.to_string())?;
            tracing::info!(library = %library.display(), "ONNX Runtime loaded");
            Ok(Runtime { env, library: library.to_path_buf() })
        });
        result.clone().map_err(|reason| ModelError::RuntimeLibrary { path: library.to_path_buf(), reason })
    }

    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    pub fn library(&self) -> &Path {
        &self.library
    }
}

/// Where to find `libonnxruntime.so`: the configured path, else `$ORT_DYLIB_PATH`, else the
/// newest `libonnxruntime.so.*` in `.vitrine/onnxruntime/` in any of `roots` or their parents.
pub fn find_runtime_library(configured: Option<&Path>, roots: &[&Path]) -> Result<PathBuf, ModelError> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(path));
    }
    let mut looked = vec!["ORT_DYLIB_PATH".to_string()];
    looked.extend(roots.iter().map(|r| format!("{}/.vitrine/onnxruntime and above", r.display())));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in roots {
        for dir in root.ancestors() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    for root in &dirs {
        let dir = root.join(".vitrine/onnxruntime");
        if !dir.is_dir() {
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        found.sort();
        if let Some(last) = found.pop() {
            return Ok(last);
        }
    }
    Err(ModelError::NoRuntimeLibrary { looked: looked.join(", ") })
}
