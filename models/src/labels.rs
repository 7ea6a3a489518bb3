use std::collections::HashMap;
use std::path::Path;

use crate::ModelError;

/// Class id to label name, from a file of `id label` lines (ids may have gaps, as COCO's 90-id map has).
#[derive(Clone, Debug, Default)]
pub struct Labels {
    names: HashMap<u32, String>,
}

impl Labels {
    pub fn load(path: &Path) -> Result<Labels, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Labels { path: path.into(), reason: e.to_string() })?;
        Labels::parse(&text).map_err(|reason| ModelError::Labels { path: path.into(), reason })
    }

    /// Parses `id label` lines; a line with only a label takes the next id.
    pub fn parse(text: &str) -> Result<Labels, String> {
        let mut names = HashMap::new();
        let mut next = 0u32;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, name) = match line.split_once(char::is_whitespace) {
                Some((id, name)) if id.parse::<u32>().is_ok() => (id.parse().unwrap(), name.trim()),
                _ => (next, line),
            };
            if names.insert(id, name.to_string()).is_some() {
                return Err(format!("line {}: id {id} is given twice", n + 1));
            }
            next = id + 1;
        }
        if names.is_empty() {
            return Err("no labels in the file".into());
        }
        Ok(Labels { names })
    }

    /// The label of a class id, or the id itself when the file has none for it.
    pub fn name(&self, id: u32) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_gaps_and_bare_names() {
        let l = Labels::parse("0  person\n2 car\n\ntruck\n").unwrap();
        assert_eq!(l.name(0), "person");
        assert_eq!(l.name(2), "car");
        assert_eq!(l.name(3), "truck");
        assert_eq!(l.name(1), "1");
    }

    #[test]
    fn duplicate_id_is_an_error() {
        assert!(Labels::parse("1 a\n1 b\n").unwrap_err().contains("id 1"));
    }
}
