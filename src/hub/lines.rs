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
    /// Bytes read after the last whole line.
    pending: Vec<u8>,
    /// Bytes of the source consumed before `pending`, for messages.
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
            pending: Vec::new(),
            offset: 0,
            done: false,
            batch: batch.max(1),
        }
    }
}

impl<R: Read> TwinLines for SnapshotLines<R> {
    fn shown(&self) -> &str {
        &self.shown
    }

    fn fill(&mut self, buffer: &mut String) -> Result<bool, HubError> {
        if self.done {
            return Ok(false);
        }
        let mut block = std::mem::take(&mut self.pending);
        let start = block.len();
        block.resize(start + self.batch, 0);
        let mut filled = start;
        // Read until the block is full or the source ends, so that a batch
        // is never cut short by a small read.
        while filled < block.len() {
            match self
                .reader
                .read(block.get_mut(filled..).unwrap_or_default())
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
        block.truncate(filled);
        // Keep what follows the last newline for the next batch; at the end,
        // the last line need not end in one.
        let cut = if self.done {
            block.len()
        } else {
            block
                .iter()
                .rposition(|&byte| byte == b'\n')
                .map_or(0, |at| at + 1)
        };
        self.pending = block.split_off(cut);
        if cut == 0 && !self.done {
            // A line longer than a block: read on until it ends.
            return self.fill(buffer);
        }
        let text = String::from_utf8(block).map_err(|error| HubError::Io {
            path: self.shown.clone(),
            reason: format!(
                "not UTF-8 (first bad byte at offset {})",
                self.offset + error.utf8_error().valid_up_to()
            ),
        })?;
        self.offset += text.len();
        buffer.push_str(&text);
        if !buffer.ends_with('\n') && !buffer.is_empty() {
            buffer.push('\n');
        }
        Ok(!self.done)
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
