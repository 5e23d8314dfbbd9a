//! Source files and byte spans into them.
//!
//! Spans are byte ranges (what miette and SARIF renderers need); YAML parsers
//! count characters, so `load` converts once through [`SourceFile::offset`].

use std::sync::Arc;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileId(pub u32);

/// A byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// The file.
    pub file: FileId,
    /// First byte.
    pub start: usize,
    /// One past the last byte; equal to `start` for an empty span.
    pub end: usize,
}

impl Span {
    /// The bytes `start..end` of `file` (an inverted range becomes empty).
    #[must_use]
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Self {
            file,
            start,
            end: end.max(start),
        }
    }

    /// The span `offset..offset + len` bytes into this one.
    #[must_use]
    pub fn sub(self, offset: usize, len: usize) -> Self {
        let start = self.start + offset;
        Self::new(self.file, start, start + len)
    }
}

/// A 1-based line and column (the column counts characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// One source file: its display path (relative to the project) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as shown to the user, with `/` separators.
    pub path: String,
    /// The text; invalid UTF-8 was replaced (see `utf8_error`).
    pub text: Arc<str>,
    /// Byte offset of the first invalid UTF-8 sequence, if the file had one.
    pub utf8_error: Option<usize>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A source file from raw bytes; invalid UTF-8 is replaced and remembered.
    #[must_use]
    pub fn from_bytes(path: impl Into<String>, bytes: &[u8]) -> Self {
        let (text, utf8_error) = match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_owned(), None),
            Err(error) => (
                String::from_utf8_lossy(bytes).into_owned(),
                Some(error.valid_up_to()),
            ),
        };
        Self::new(path, text, utf8_error)
    }

    /// A source file from text.
    #[must_use]
    pub fn from_text(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(path, text.into(), None)
    }

    fn new(path: impl Into<String>, text: String, utf8_error: Option<usize>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self {
            path: path.into(),
            text: text.into(),
            utf8_error,
            line_starts,
        }
    }

    /// The byte offset of a 1-based `line` and 0-based character `column`,
    /// clamped to the text.
    #[must_use]
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&line_start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = self.text.get(line_start..).unwrap_or_default();
        line_start
            + rest
                .char_indices()
                .nth(column)
                .map_or(rest.len(), |(at, _)| at)
    }

    /// The line and column of a byte offset.
    #[must_use]
    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |prefix| prefix.chars().count());
        Location {
            line: line.max(1),
            column: column + 1,
        }
    }

    /// The end of the line `offset` is on (before the newline).
    #[must_use]
    pub fn line_end(&self, offset: usize) -> usize {
        self.text
            .get(offset..)
            .and_then(|rest| rest.find('\n'))
            .map_or(self.text.len(), |at| offset + at)
    }
}

/// All source files of a run, addressed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, file: SourceFile) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(file);
        id
    }

    /// The file with `id`, if any.
    #[must_use]
    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// Every file with its id, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(index, file)| (FileId(u32::try_from(index).unwrap_or(u32::MAX)), file))
    }

    /// `path:line:col` of the start of `span`, or `?` if the file is unknown.
    #[must_use]
    pub fn describe(&self, span: Span) -> String {
        self.get(span.file).map_or_else(
            || "?".to_owned(),
            |file| {
                let at = file.location(span.start);
                format!("{}:{}:{}", file.path, at.line, at.column)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Location, SourceFile};

    #[test]
    fn offsets_and_locations_round_trip_over_multibyte_text() {
        let file = SourceFile::from_text("p.yaml", "a: é\nbé: c\n\nlast");
        assert_eq!(file.offset(2, 2), "a: é\nbé".len());
        assert_eq!(
            file.location(file.offset(2, 2)),
            Location { line: 2, column: 3 }
        );
        assert_eq!(file.location(0), Location { line: 1, column: 1 });
        assert_eq!(
            file.location(file.text.len()),
            Location { line: 4, column: 5 }
        );
        assert_eq!(file.offset(99, 0), file.text.len());
        assert_eq!(file.line_end(0), 5);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_located() {
        let file = SourceFile::from_bytes("p.yaml", b"name: a\xffb\n");
        assert_eq!(file.utf8_error, Some(7));
        assert_eq!(file.location(7), Location { line: 1, column: 8 });
    }
}
