//! A small YAML writer with a stable, readable style.
//!
//! Block style for mappings and lists, literal blocks for multi-line text (Dockerfiles), and
//! JSON-style double quotes for any scalar that YAML would otherwise read as something else.
//! Preserved foreign fields are written as inline JSON, which is valid YAML and keeps types exact.

/// A YAML value to write. Mapping order is the order given.
#[derive(Debug, Clone)]
pub enum Y {
    Str(String),
    Bool(bool),
    Int(i64),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
    Json(serde_json::Value),
}

impl Y {
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    pub fn strs<'a>(items: impl IntoIterator<Item = &'a String>) -> Self {
        Self::Seq(items.into_iter().map(|s| Self::Str(s.clone())).collect())
    }
}

/// Builds a mapping, skipping absent values.
#[derive(Debug, Default)]
pub struct MapBuilder(Vec<(String, Y)>);

impl MapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: &str, value: Y) -> &mut Self {
        self.0.push((key.to_string(), value));
        self
    }

    pub fn opt(&mut self, key: &str, value: Option<&String>) -> &mut Self {
        if let Some(v) = value {
            self.0.push((key.to_string(), Y::Str(v.clone())));
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn build(&mut self) -> Y {
        Y::Map(std::mem::take(&mut self.0))
    }
}

/// Render a document. The top level should be a mapping.
pub fn render(value: &Y) -> String {
    let mut out = String::new();
    write_block(&mut out, value, 0);
    out
}

fn write_block(out: &mut String, value: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Y::Map(entries) => {
            for (key, value) in entries {
                out.push_str(&pad);
                out.push_str(&scalar(key));
                out.push(':');
                write_after_key(out, value, indent);
            }
        }
        Y::Seq(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Y::Map(entries) if !entries.is_empty() => {
                        // First entry on the dash line, the rest aligned under it.
                        let mut first = true;
                        for (key, value) in entries {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                out.push_str(&" ".repeat(indent + 2));
                            }
                            out.push_str(&scalar(key));
                            out.push(':');
                            write_after_key(out, value, indent + 2);
                        }
                    }
                    other => write_after_key(out, other, indent),
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&inline(other, indent));
            out.push('\n');
        }
    }
}

fn write_after_key(out: &mut String, value: &Y, indent: usize) {
    match value {
        Y::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_block(out, value, indent + 2);
        }
        Y::Seq(items) if !items.is_empty() => {
            out.push('\n');
            write_block(out, value, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent));
            out.push('\n');
        }
    }
}

fn inline(value: &Y, indent: usize) -> String {
    match value {
        Y::Str(s) => match literal_block(s, indent + 2) {
            Some(block) => block,
            None => scalar(s),
        },
        Y::Bool(b) => b.to_string(),
        Y::Int(i) => i.to_string(),
        Y::Seq(_) => "[]".to_string(),
        Y::Map(_) => "{}".to_string(),
        Y::Json(v) => crate::canonical::sorted(v.clone()).to_string(),
    }
}

/// `|` / `|-` literal block for multi-line text, when it can represent the text exactly.
fn literal_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n') || s.contains('\r') || s.chars().any(|c| c.is_control() && c != '\n') {
        return None;
    }
    if s.starts_with([' ', '\t', '\n']) || s.ends_with("\n\n") {
        return None;
    }
    let (body, header) = match s.strip_suffix('\n') {
        Some(body) => (body, "|"),
        None => (s, "|-"),
    };
    if body.lines().any(|l| l.ends_with([' ', '\t'])) {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut out = header.to_string();
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    Some(out)
}

/// A scalar as plain text when that reads back as the same string, otherwise double-quoted.
pub fn scalar(s: &str) -> String {
    if needs_quotes(s) {
        serde_json::to_string(s).expect("string serializes")
    } else {
        s.to_string()
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s != s.trim() {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) {
        return true;
    }
    if s.parse::<f64>().is_ok()
        || s.starts_with(['0', '+', '.'])
            && s.chars()
                .all(|c| c.is_ascii_digit() || "+-._oxXeE".contains(c))
    {
        return true;
    }
    // A leading dash is only special as `- ` (a list item) or `---`; `-e` and `--index-url`
    // read back as plain text. Every other indicator character is quoted.
    let plain_dash =
        s.starts_with('-') && s.len() > 1 && !s.starts_with("- ") && !s.starts_with("---");
    if !plain_dash
        && s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
    {
        return true;
    }
    s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(scalar("3.10"), "\"3.10\"");
        assert_eq!(scalar("numpy>=1.2"), "numpy>=1.2");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("--index-url https://x"), "--index-url https://x");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar("${secret:X}"), "${secret:X}");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("*"), "\"*\"");
        assert_eq!(scalar("--opt a: b"), "\"--opt a: b\"");
        assert_eq!(scalar("-"), "\"-\"");
    }
}
