//! A worker's output (stdout, stderr) as log lines.
//!
//! The entry script prints what it likes: bytes that are not UTF-8, megabytes without a
//! newline (a `\r` progress bar). The reader must never stop on it, since a worker whose output
//! pipe is no longer read fails on its next `print()`, and must never hold more than a line
//! of it: so bytes are read with a bounded line length, long lines are split, `\r` ends a
//! line as `\n` does, and text is decoded lossily.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest log line a worker's output makes, in bytes; longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

/// Bytes read from the pipe at a time.
const CHUNK: usize = 8 * 1024;

/// Log lines from a worker's output stream.
pub struct Lines<R> {
    reader: R,
    chunk: Box<[u8]>,
    /// The unread part of `chunk`.
    start: usize,
    end: usize,
    /// The line being gathered: never longer than [`MAX_LINE`].
    line: Vec<u8>,
    /// The last line ended with `\r`: a `\n` right after it belongs to it.
    after_cr: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            chunk: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            line: Vec::with_capacity(MAX_LINE),
            after_cr: false,
        }
    }

    /// The next line, without its end; `None` at the end of the stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if self.start == self.end {
                let read = self.reader.read(&mut self.chunk).await?;
                if read == 0 {
                    if self.line.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(self.take(self.line.len())));
                }
                self.start = 0;
                self.end = read;
            }
            if self.after_cr {
                self.after_cr = false;
                if self.chunk[self.start] == b'\n' {
                    self.start += 1;
                    continue;
                }
            }
            let room = MAX_LINE - self.line.len();
            let available = &self.chunk[self.start..self.end];
            // One byte past the room too: a line of exactly MAX_LINE bytes keeps its end.
            let scan = &available[..available.len().min(room + 1)];
            if let Some(at) = scan.iter().position(|&b| b == b'\n' || b == b'\r') {
                self.after_cr = scan[at] == b'\r';
                self.line.extend_from_slice(&scan[..at]);
                self.start += at + 1;
                if self.after_cr && self.line.is_empty() {
                    // A progress bar's `\r` before its first state: no line of its own.
                    continue;
                }
                return Ok(Some(self.take(self.line.len())));
            }
            if scan.len() <= room {
                self.line.extend_from_slice(scan);
                self.start += scan.len();
                continue;
            }
            // Longer than MAX_LINE: split, but not inside a character, whose first bytes then
            // begin the next line.
            self.line.extend_from_slice(&scan[..room]);
            self.start += room;
            let cut = MAX_LINE - incomplete_tail(&self.line);
            return Ok(Some(self.take(cut)));
        }
    }

    /// The first `n` bytes of the line, decoded; the rest stays for the next line.
    fn take(&mut self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.line[..n]).into_owned();
        self.line.drain(..n);
        text
    }

    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.line.capacity() + self.chunk.len()
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not complete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xc0 == 0x80 {
            // A continuation byte: the character began earlier.
            continue;
        }
        let length = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if length > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<String> {
        let mut reader = Lines::new(input);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_end_at_newlines_and_carriage_returns() {
        assert_eq!(
            lines(b"a\nb\r\nc\r10%\r20%\n\nlast").await,
            ["a", "b", "c", "10%", "20%", "", "last"]
        );
        assert_eq!(lines(b"\r10%\r20%\r\n").await, ["10%", "20%"]);
        assert!(lines(b"").await.is_empty());
        assert_eq!(lines(b"one\n").await, ["one"]);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced_and_reading_goes_on() {
        assert_eq!(
            lines(b"\xff\xfe\nafter \xc3\xa9\n").await,
            ["\u{fffd}\u{fffd}", "after é"]
        );
    }

    /// 1 MB without a newline comes out in lines of `MAX_LINE` bytes, and the reader never
    /// holds more than a line and a chunk.
    #[tokio::test]
    async fn long_lines_are_split_and_the_buffer_stays_bounded() {
        let input = vec![b'x'; 1_000_000];
        let mut reader = Lines::new(&input[..]);
        let mut total = 0;
        let mut count = 0;
        while let Some(line) = reader.next_line().await.unwrap() {
            assert!(line.len() <= MAX_LINE);
            assert!(reader.buffered_capacity() <= MAX_LINE + CHUNK);
            total += line.len();
            count += 1;
        }
        assert_eq!(total, input.len());
        assert_eq!(count, input.len().div_ceil(MAX_LINE));
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_bound_is_one_line() {
        let mut input = vec![b'y'; MAX_LINE];
        input.extend_from_slice(b"\nnext\n");
        let out = lines(&input).await;
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].len(), out[1].as_str()), (MAX_LINE, "next"));
    }

    /// A split never cuts a character in two: each piece decodes without replacements.
    #[tokio::test]
    async fn splits_fall_between_characters() {
        for prefix in 0..4 {
            let mut input = "a".repeat(prefix).into_bytes();
            while input.len() < 3 * MAX_LINE {
                input.extend_from_slice("é€😀".as_bytes());
            }
            let out = lines(&input).await;
            assert!(
                out.iter().all(|l| !l.contains('\u{fffd}')),
                "prefix {prefix}"
            );
            assert!(out.iter().all(|l| l.len() <= MAX_LINE));
            assert_eq!(out.concat().into_bytes(), input);
        }
    }
}
