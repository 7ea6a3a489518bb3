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

    /// Parses the `names` metadata of Ultralytics exports, a Python dict such as
    /// `{0: 'person', 1: 'bicycle'}`.
    pub fn parse_python_dict(text: &str) -> Result<Labels, String> {
        let body = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or("not a {id: 'name'} dict")?;
        let mut names = HashMap::new();
        let mut rest = body.trim();
        while !rest.is_empty() {
            let (id, after) = rest.split_once(':').ok_or_else(|| format!("no `id:` at {rest:.20}"))?;
            let id: u32 = id.trim().parse().map_err(|_| format!("`{}` is not a class id", id.trim()))?;
            let after = after.trim_start();
            let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or("names must be quoted")?;
            let end = after[1..].find(quote).ok_or("unterminated name")? + 1;
            names.insert(id, after[1..end].to_string());
            rest = after[end + 1..].trim_start().trim_start_matches(',').trim_start();
        }
        if names.is_empty() {
            return Err("no labels in the dict".into());
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
    fn ultralytics_names_metadata() {
        let l = Labels::parse_python_dict("{0: 'person', 1: \"it's\", 12: 'FACE_MALE'}").unwrap();
        assert_eq!(
            (l.name(0), l.name(1), l.name(12), l.len()),
            ("person".into(), "it's".into(), "FACE_MALE".into(), 3)
        );
        assert!(Labels::parse_python_dict("[person]").is_err());
    }

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
