//! Twins as lines of JSON, a batch at a time: how large fleets are planned
//! without holding them. A snapshot file is read in blocks; a local hub in
//! pages of rows, in (device, module) order. Each batch ends on a whole line.

use std::io::Read;

use crate::hub::HubError;
use crate::hub::local::LocalHub;

/// About how many bytes a batch holds.
pub const BATCH_BYTES: usize = 8 << 20;

/// A source of twin lines.
pub trait TwinLines {
    /// Where the lines come from, for messages.
    fn shown(&self) -> &str;

    /// Appends whole lines (each ending in `\n`) to `buffer`, about
    /// [`BATCH_BYTES`] of them. Returns `false` once the source is used up:
    /// the lines this call appended, if any, were the last.
    ///
    /// # Errors
    /// When the source cannot be read or is not UTF-8.
    fn fill(&mut self, buffer: &mut String) -> Result<bool, HubError>;
}

/// NDJSON from a reader: a snapshot file, or a committed one in memory.
pub struct SnapshotLines<R> {
    reader: R,
    shown: String,
    /// Read buffer, reused; its first `kept` bytes follow the last whole
    /// line handed out.
    block: Vec<u8>,
    kept: usize,
    /// Bytes of the source handed out, for messages.
    offset: usize,
    done: bool,
    /// Bytes read per batch.
    batch: usize,
}

impl<R: Read> SnapshotLines<R> {
    /// Lines of `reader`, shown as `shown` in messages.
    pub fn new(reader: R, shown: &str) -> Self {
        Self::with_batch(reader, shown, BATCH_BYTES)
    }

    /// The same, reading `batch` bytes at a time.
    pub fn with_batch(reader: R, shown: &str, batch: usize) -> Self {
        Self {
            reader,
            shown: shown.to_owned(),
            block: Vec::new(),
            kept: 0,
            offset: 0,
            done: false,
            batch: batch.max(1),
        }
    }

    /// Reads into the block after `from` until `batch` more bytes are
    /// there or the source ends; returns where the bytes end.
    fn read_block(&mut self, from: usize) -> Result<usize, HubError> {
        let end = from + self.batch;
        if self.block.len() < end {
            // Exactly: a block is a batch and the start of a line, and
            // doubling would hold twice that for the whole read.
            self.block.reserve_exact(end - self.block.len());
            self.block.resize(end, 0);
        }
        let mut filled = from;
        while filled < end {
            match self
                .reader
                .read(self.block.get_mut(filled..end).unwrap_or_default())
            {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(HubError::Io {
                        path: self.shown.clone(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(filled)
    }
}

impl<R: Read> TwinLines for SnapshotLines<R> {
    fn shown(&self) -> &str {
        &self.shown
    }

    fn fill(&mut self, buffer: &mut String) -> Result<bool, HubError> {
        if self.done && self.kept == 0 {
            return Ok(false);
        }
        let mut filled = self.kept;
        let cut = loop {
            if !self.done {
                filled = self.read_block(filled)?;
            }
            // Hand out whole lines; at the end, the last need not end in a
            // newline. A line longer than a block is read on until it ends.
            let whole = self
                .block
                .get(..filled)
                .unwrap_or_default()
                .iter()
                .rposition(|&byte| byte == b'\n')
                .map(|at| at + 1);
            match whole {
                _ if self.done => break filled,
                Some(cut) => break cut,
                None => {}
            }
        };
        let bytes = self.block.get(..cut).unwrap_or_default();
        let text = std::str::from_utf8(bytes).map_err(|error| HubError::Io {
            path: self.shown.clone(),
            reason: format!(
                "not UTF-8 (first bad byte at offset {})",
                self.offset + error.valid_up_to()
            ),
        })?;
        buffer.reserve_exact(text.len() + 1);
        buffer.push_str(text);
        if !buffer.is_empty() && !buffer.ends_with('\n') {
            buffer.push('\n');
        }
        self.offset += cut;
        self.block.copy_within(cut..filled, 0);
        self.kept = filled - cut;
        Ok(!(self.done && self.kept == 0))
    }
}

/// Rows of a local hub, in (device, module) order.
pub struct HubLines<'h> {
    hub: &'h LocalHub,
    shown: String,
    after: Option<(String, String)>,
    done: bool,
}

/// Rows read from a local hub at a time.
const ROWS_PER_BATCH: usize = 2048;

impl<'h> HubLines<'h> {
    /// Every twin of `hub`.
    #[must_use]
    pub fn new(hub: &'h LocalHub) -> Self {
        Self {
            hub,
            shown: hub.path().to_owned(),
            after: None,
            done: false,
        }
    }
}

impl TwinLines for HubLines<'_> {
    fn shown(&self) -> &str {
        &self.shown
    }

    fn fill(&mut self, buffer: &mut String) -> Result<bool, HubError> {
        if self.done {
            return Ok(false);
        }
        let start = buffer.len();
        while buffer.len() - start < BATCH_BYTES {
            let after = self.after.as_ref().map(|(d, m)| (d.as_str(), m.as_str()));
            let last = self.hub.rows(after, ROWS_PER_BATCH, buffer)?;
            let Some(last) = last else {
                self.done = true;
                break;
            };
            self.after = Some(last);
        }
        Ok(!self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::{SnapshotLines, TwinLines};
    use crate::hub::HubError;

    /// Every batch, as `fill` hands them out.
    fn batches(bytes: &[u8], batch: usize) -> Result<Vec<String>, HubError> {
        let mut lines = SnapshotLines::with_batch(bytes, "s.ndjson", batch);
        let mut out = Vec::new();
        loop {
            let mut buffer = String::new();
            let more = lines.fill(&mut buffer)?;
            if !buffer.is_empty() {
                out.push(buffer);
            }
            if !more {
                return Ok(out);
            }
        }
    }

    #[test]
    fn batches_end_on_whole_lines_whatever_their_size() {
        let text = "a\nbbbbbbbbbbbb\n\ncc\nlast";
        for batch in [1, 2, 3, 5, 64] {
            let got = batches(text.as_bytes(), batch).unwrap();
            assert!(got.iter().all(|b| b.ends_with('\n')), "{batch}: {got:?}");
            assert_eq!(got.concat(), format!("{text}\n"), "{batch}");
        }
        assert!(batches(b"", 4).unwrap().is_empty());
    }

    #[test]
    fn bad_utf8_is_reported_at_its_offset() {
        let Err(HubError::Io { reason, .. }) = batches(b"ok\nfine\n\xff\n", 3) else {
            panic!("not UTF-8");
        };
        assert_eq!(reason, "not UTF-8 (first bad byte at offset 8)");
    }
}
