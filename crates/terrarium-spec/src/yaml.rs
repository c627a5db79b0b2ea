//! A YAML tree that remembers where every node came from.
//!
//! serde-based YAML loaders drop positions once a document is parsed, but every error Terrarium
//! reports must name the file, the line and the field. So the formats walk this tree instead:
//! each node carries its 1-based line, and [`Map`] records which keys were read, so unknown keys
//! can be reported with their line too.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::{Location, SpecError, Warning};
use crate::source::SourceFile;

/// One YAML node and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    /// For a mapping's value, the line of its key (a block value starts on a later line).
    pub key_line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// A scalar keeps its text; `plain` is false for quoted scalars (which are never null/bool).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are scalars; order is kept.
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parse `source` as a single YAML document. An empty document is `Null`.
pub fn parse(source: &SourceFile) -> Result<Node, SpecError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(&source.text);
    if let Err(err) = parser.load(&mut builder, false) {
        return Err(SpecError::invalid(
            Location::line(&source.path, err.marker().line().max(1)),
            format!("invalid YAML: {}", err.info()),
        ));
    }
    if let Some(line) = builder.too_large {
        return Err(SpecError::invalid(
            Location::line(&source.path, line),
            format!("the document holds more than {MAX_NODES} entries"),
        ));
    }
    if let Some((line, key)) = builder.duplicate {
        return Err(SpecError::invalid(
            Location::field(&source.path, line, &key),
            "duplicate key",
        ));
    }
    if let Some(line) = builder.complex_key {
        return Err(SpecError::invalid(
            Location::line(&source.path, line),
            "mapping keys must be scalars",
        ));
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        key_line: 0,
        value: Value::Null,
    }))
}

/// The most nodes one document may hold, aliases counted as what they expand to: a definition
/// has hundreds; this bounds memory and time for a hostile one (a server parses what it is sent).
pub const MAX_NODES: usize = 100_000;

enum Frame {
    Seq(Node),
    Map {
        node: Node,
        pending_key: Option<(String, usize)>,
        /// The keys so far, so a duplicate is found in constant time.
        keys: HashSet<String>,
    },
}

#[derive(Default)]
struct Builder {
    /// Open collections: the frame, its anchor, and how many nodes it holds so far.
    stack: Vec<(Frame, usize, usize)>,
    /// Anchored nodes and their sizes.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    duplicate: Option<(usize, String)>,
    complex_key: Option<usize>,
    /// Nodes in the document so far.
    nodes: usize,
    too_large: Option<usize>,
}

impl Builder {
    /// Add a finished node of `size` nodes to the collection being built.
    fn push_value(&mut self, node: Node, size: usize, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        if let Some((_, _, parent_size)) = self.stack.last_mut() {
            *parent_size += size;
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((Frame::Seq(seq), _, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some((
                Frame::Map {
                    node: map,
                    pending_key,
                    keys,
                },
                _,
                _,
            )) => match pending_key.take() {
                None => match node.value {
                    Value::Scalar { text, .. } => *pending_key = Some((text, node.line)),
                    Value::Null => *pending_key = Some((String::new(), node.line)),
                    _ => {
                        self.complex_key.get_or_insert(node.line);
                        *pending_key = Some((String::new(), node.line));
                    }
                },
                Some((key, line)) => {
                    if let Value::Map(entries) = &mut map.value {
                        if !keys.insert(key.clone()) {
                            self.duplicate.get_or_insert((line, key.clone()));
                        }
                        let mut node = node;
                        node.key_line = line;
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        if self.too_large.is_some() {
            return;
        }
        if matches!(
            ev,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            self.nodes += 1;
            if self.nodes > MAX_NODES {
                self.too_large = Some(line);
                return;
            }
        }
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.push_value(
                    Node {
                        line,
                        key_line: 0,
                        value,
                    },
                    1,
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Frame::Seq(Node {
                    line,
                    key_line: 0,
                    value: Value::Seq(Vec::new()),
                }),
                anchor,
                1,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Frame::Map {
                    node: Node {
                        line,
                        key_line: 0,
                        value: Value::Map(Vec::new()),
                    },
                    pending_key: None,
                    keys: HashSet::new(),
                },
                anchor,
                1,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((frame, anchor, size)) = self.stack.pop() {
                    let node = match frame {
                        Frame::Seq(node) | Frame::Map { node, .. } => node,
                    };
                    self.push_value(node, size, anchor);
                }
            }
            Event::Alias(id) => {
                // An alias expands to a copy: count it as its size, before copying, so nested
                // aliases ("billion laughs") stop at the bound instead of exhausting memory.
                let size = self.anchors.get(&id).map_or(1, |(_, size)| *size);
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    self.too_large = Some(line);
                    return;
                }
                let node = self.anchors.get(&id).map_or(
                    Node {
                        line,
                        key_line: 0,
                        value: Value::Null,
                    },
                    |(node, _)| node.clone(),
                );
                self.push_value(node, size, 0);
            }
            _ => {}
        }
    }
}

/// Typed access to YAML nodes that records errors and warnings against one file.
pub struct Reader<'a> {
    pub source: &'a SourceFile,
    pub warnings: Vec<Warning>,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a SourceFile) -> Self {
        Self {
            source,
            warnings: Vec::new(),
        }
    }

    pub fn error(&self, line: usize, field: &str, message: impl Into<String>) -> SpecError {
        SpecError::invalid(Location::field(&self.source.path, line, field), message)
    }

    pub fn warn(&mut self, line: usize, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            location: Location::field(&self.source.path, line, field),
            message: message.into(),
        });
    }

    pub fn map<'n>(&self, node: &'n Node, field: &str) -> Result<Map<'n>, SpecError> {
        match &node.value {
            Value::Map(entries) => Ok(Map {
                line: node.line,
                entries,
                used: vec![false; entries.len()],
                prefix: field.to_string(),
            }),
            Value::Null if field.is_empty() => {
                Err(self.error(node.line, field, "the file is empty"))
            }
            _ if field.is_empty() => Err(self.error(
                node.line,
                field,
                format!(
                    "expected a mapping of fields (such as `name:`) at the top of the file, found {}",
                    node.kind()
                ),
            )),
            _ => Err(self.error(
                node.line,
                field,
                format!("expected a mapping, found {}", node.kind()),
            )),
        }
    }

    pub fn string(&self, node: &Node, field: &str) -> Result<String, SpecError> {
        match &node.value {
            Value::Scalar { text, .. } => Ok(text.clone()),
            _ => Err(self.error(
                node.line,
                field,
                format!("expected a string, found {}", node.kind()),
            )),
        }
    }

    /// A string, where YAML null means "absent".
    pub fn opt_string(
        &self,
        node: Option<&Node>,
        field: &str,
    ) -> Result<Option<String>, SpecError> {
        match node {
            None => Ok(None),
            Some(Node {
                value: Value::Null, ..
            }) => Ok(None),
            Some(node) => self.string(node, field).map(Some),
        }
    }

    pub fn bool(&self, node: &Node, field: &str) -> Result<bool, SpecError> {
        match &node.value {
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                other => Err(self.error(
                    node.line,
                    field,
                    format!("expected true or false, found `{other}`"),
                )),
            },
            _ => Err(self.error(
                node.line,
                field,
                format!("expected true or false, found {}", node.kind()),
            )),
        }
    }

    pub fn u16(&self, node: &Node, field: &str) -> Result<u16, SpecError> {
        let text = self.string(node, field)?;
        text.parse().map_err(|_| {
            self.error(
                node.line,
                field,
                format!("expected a port number (0-65535), found `{text}`"),
            )
        })
    }

    pub fn seq<'n>(&self, node: &'n Node, field: &str) -> Result<&'n [Node], SpecError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.error(
                node.line,
                field,
                format!("expected a list, found {}", node.kind()),
            )),
        }
    }

    pub fn string_list(&self, node: &Node, field: &str) -> Result<Vec<(usize, String)>, SpecError> {
        self.seq(node, field)?
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.string(item, &format!("{field}[{i}]"))
                    .map(|s| (item.line, s))
            })
            .collect()
    }

    /// A mapping of strings to strings, e.g. `tags` or `environment_variables`.
    pub fn string_map(
        &self,
        node: &Node,
        field: &str,
    ) -> Result<Vec<(String, String, usize)>, SpecError> {
        if node.value == Value::Null {
            return Ok(Vec::new());
        }
        let map = self.map(node, field)?;
        map.entries
            .iter()
            .map(|(key, value)| {
                let text = match &value.value {
                    Value::Null => String::new(),
                    _ => self.string(value, &format!("{field}.{key}"))?,
                };
                Ok((key.clone(), text, value.line))
            })
            .collect()
    }
}

/// A mapping being read: remembers which keys were used.
pub struct Map<'n> {
    pub line: usize,
    entries: &'n [(String, Node)],
    used: Vec<bool>,
    prefix: String,
}

impl<'n> Map<'n> {
    pub fn get(&mut self, key: &str) -> Option<&'n Node> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[index] = true;
        Some(&self.entries[index].1)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    pub fn field(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.prefix, key)
        }
    }

    /// Warn about every key that was not read.
    pub fn finish(self, reader: &mut Reader<'_>) {
        for ((key, node), used) in self.entries.iter().zip(&self.used) {
            if !used {
                let field = self.field(key);
                let line = if node.key_line > 0 {
                    node.key_line
                } else {
                    node.line
                };
                reader.warn(line, &field, "unknown key (ignored)");
            }
        }
    }
}

pub use crate::yaml_out::{render, MapBuilder, Y};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_text(text: &str) -> Result<Node, SpecError> {
        parse(&SourceFile::from_text(Path::new("env.yml"), text))
    }

    #[test]
    fn duplicate_keys_are_found_in_large_maps() {
        let mut text = String::from("environment_variables:\n");
        for i in 0..20_000 {
            text.push_str(&format!("  V{i}: x\n"));
        }
        text.push_str("  V7: again\n");
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("duplicate key"), "{err}");
        assert!(err.contains("20002"), "the line of the second V7: {err}");
    }

    #[test]
    fn a_document_past_the_bound_is_refused() {
        let mut text = String::from("environment_variables:\n");
        for i in 0..(MAX_NODES / 2 + 10) {
            text.push_str(&format!("  V{i}: x\n"));
        }
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("more than 100000 entries"), "{err}");
    }

    #[test]
    fn nested_aliases_stop_at_the_bound() {
        // Each level doubles: 2^40 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            text.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
        }
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(err.contains("entries"), "{err}");
    }
}
