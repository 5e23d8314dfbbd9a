//! A loaded YAML document: its JSON value and a span for every JSON pointer.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use crate::diag::{FileId, Span};

/// Where one node of a document is: its key (in a mapping) and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSpans {
    /// The key that names the node, if its parent is a mapping.
    pub key: Option<Span>,
    /// The value (for a collection, its first line).
    pub value: Span,
}

/// JSON pointer (RFC 6901) → spans, for every node of one document.
#[derive(Clone, Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<String, NodeSpans>,
    whole: Span,
}

impl SpanIndex {
    /// An index whose fallback is `whole`, the span of the document.
    #[must_use]
    pub fn new(whole: Span) -> Self {
        Self {
            nodes: HashMap::new(),
            whole,
        }
    }

    /// Records the spans of the node at `pointer`.
    pub fn insert(&mut self, pointer: String, spans: NodeSpans) {
        self.nodes.insert(pointer, spans);
    }

    /// The spans of exactly `pointer`, if it is a node of the document.
    #[must_use]
    pub fn get(&self, pointer: &str) -> Option<NodeSpans> {
        self.nodes.get(pointer).copied()
    }

    /// The best span for `pointer`: its value, else its nearest ancestor's,
    /// else the document.
    #[must_use]
    pub fn locate(&self, pointer: &str) -> Span {
        self.nearest(pointer).map_or(self.whole, |node| node.value)
    }

    /// Like [`Self::locate`], but the key naming the node where there is one.
    #[must_use]
    pub fn locate_key(&self, pointer: &str) -> Span {
        self.nearest(pointer)
            .map_or(self.whole, |node| node.key.unwrap_or(node.value))
    }

    /// The span of the whole document.
    #[must_use]
    pub fn whole(&self) -> Span {
        self.whole
    }

    fn nearest(&self, pointer: &str) -> Option<NodeSpans> {
        let mut at = pointer;
        loop {
            if let Some(node) = self.nodes.get(at) {
                return Some(*node);
            }
            match at.rsplit_once('/') {
                Some((parent, _)) => at = parent,
                None => return None,
            }
        }
    }
}

/// One YAML document of a policy file, as JSON with spans.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from.
    pub file: FileId,
    /// Its position among the file's documents, from 0.
    pub index: usize,
    /// The content.
    pub value: Value,
    /// Where each node is.
    pub spans: SpanIndex,
}

/// Appends `key` to `pointer` with RFC 6901 escaping.
#[must_use]
pub fn join_pointer(pointer: &str, key: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + key.len() + 1);
    out.push_str(pointer);
    out.push('/');
    for ch in key.chars() {
        match ch {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            _ => out.push(ch),
        }
    }
    out
}

/// Splits a JSON pointer into unescaped keys, borrowed unless escaped.
pub fn pointer_keys(pointer: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    pointer.split('/').skip(1).map(|key| {
        if key.contains('~') {
            Cow::Owned(key.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(key)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{NodeSpans, SpanIndex, join_pointer, pointer_keys};
    use crate::diag::{FileId, Span};

    #[test]
    fn locate_falls_back_to_ancestors_then_document() {
        let whole = Span::new(FileId(0), 0, 100);
        let mut index = SpanIndex::new(whole);
        let desired = Span::new(FileId(0), 10, 20);
        let key = Span::new(FileId(0), 5, 9);
        index.insert(
            "/desired".into(),
            NodeSpans {
                key: Some(key),
                value: desired,
            },
        );
        assert_eq!(index.locate("/desired/a/b"), desired);
        assert_eq!(index.locate_key("/desired/a"), key);
        assert_eq!(index.locate("/name"), whole);
    }

    #[test]
    fn pointers_escape_and_unescape() {
        let pointer = join_pointer("/desired", "a/b~c");
        assert_eq!(pointer, "/desired/a~1b~0c");
        assert_eq!(
            pointer_keys(&pointer).collect::<Vec<_>>(),
            ["desired", "a/b~c"]
        );
    }
}
