//! What a tool writes: each line is logged, tagged with the volume, with
//! every secret of its command hidden; stderr lines also go to a short tail
//! for errors and Status. Lines are read with a bound, so a tool that
//! writes without newlines costs netfs a fixed amount of memory: a longer
//! line is logged cut, marked, and the rest of it skipped. Used for the
//! volumes' tools (`supervisor`) and the ssh masters (`connections`) alike;
//! it knows neither.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::secret::Secret;

/// Lines of stderr kept for errors and Status, and the longest kept line.
pub const TAIL_LINES: usize = 10;
const TAIL_LINE_MAX: usize = 400;
/// The longest line logged whole.
pub const LOG_LINE_MAX: usize = 8 * 1024;

pub type Lines = Arc<Mutex<VecDeque<String>>>;

/// A new, empty tail for [`pump`].
pub fn lines() -> Lines {
    Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)))
}

/// The last lines a tool wrote on stderr, shown after an error message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail(pub Vec<String>);

impl Tail {
    /// What `lines` holds now.
    pub fn of(lines: &Lines) -> Tail {
        Tail(
            lines
                .lock()
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn text(&self) -> String {
        self.0.join("\n")
    }
}

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.0.join("; "))
        }
    }
}

/// Reads bytes, not UTF-8, so odd output never stops the pump (a full pipe
/// would block the tool).
pub fn pump(
    volume: String,
    stream: &'static str,
    reader: impl AsyncRead + Unpin + Send + 'static,
    secrets: Arc<[Secret]>,
    tail: Option<Lines>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BoundedLines::new(BufReader::new(reader), LOG_LINE_MAX);
        let mut buf = Vec::new();
        while let Ok(Some(cut)) = lines.next(&mut buf).await {
            let line = shown(&buf, cut, &secrets);
            tracing::info!(volume = %volume, stream, "{line}");
            if let (Some(tail), false) = (&tail, line.is_empty()) {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    let mut end = line.len().min(TAIL_LINE_MAX);
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    t.push_back(line[..end].to_owned());
                }
            }
        }
    })
}

/// A line as it may be shown: secrets replaced by `***`; a cut line loses
/// any trailing start of a secret (the cut may fall inside one) and says
/// that it was cut.
fn shown(bytes: &[u8], cut: bool, secrets: &[Secret]) -> String {
    let mut line = String::from_utf8_lossy(bytes).trim_end().to_owned();
    for secret in secrets {
        line = line.replace(secret.expose(), "***");
    }
    if !cut {
        return line;
    }
    for secret in secrets {
        let s = secret.expose();
        let partial = (1..s.len())
            .rev()
            .filter_map(|k| s.get(..k))
            .find(|start| line.ends_with(start));
        if let Some(start) = partial {
            line.truncate(line.len() - start.len());
        }
    }
    line.push_str(&format!(" [cut: line longer than {LOG_LINE_MAX} bytes]"));
    line
}

/// Lines of at most `max` bytes from a reader: a longer line comes out cut
/// at `max` and the rest of it, up to its newline, is skipped.
struct BoundedLines<R> {
    reader: R,
    max: usize,
    /// Inside the rest of a line that was cut.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            skipping: false,
        }
    }

    /// Puts the next line, without its newline, in `buf`; says whether it
    /// was cut, or None at the end of the stream.
    async fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
        buf.clear();
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                // The end: a last line without a newline still counts.
                return Ok((!buf.is_empty()).then_some(false));
            }
            let newline = chunk.iter().position(|b| *b == b'\n');
            let through_newline = newline.map_or(chunk.len(), |i| i + 1);
            if self.skipping {
                self.skipping = newline.is_none();
                self.reader.consume(through_newline);
                continue;
            }
            let end = newline.unwrap_or(chunk.len());
            let room = self.max - buf.len();
            if end > room {
                buf.extend_from_slice(&chunk[..room]);
                self.reader.consume(room);
                self.skipping = true;
                return Ok(Some(true));
            }
            buf.extend_from_slice(&chunk[..end]);
            self.reader.consume(through_newline);
            if newline.is_some() {
                return Ok(Some(false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], capacity: usize, max: usize) -> Vec<(String, bool)> {
        let reader = BufReader::with_capacity(capacity, input);
        let mut lines = BoundedLines::new(reader, max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(cut) = lines.next(&mut buf).await.unwrap() {
            assert!(buf.len() <= max);
            out.push((String::from_utf8(buf.clone()).unwrap(), cut));
        }
        out
    }

    #[tokio::test]
    async fn long_lines_are_cut_at_the_bound_and_the_rest_skipped() {
        let x = |n| "x".repeat(n);
        let input = format!("a\nbb\n{}\n{}\nc\n{}\n{}", x(20), x(8), x(9), x(30));
        let want = [
            ("a".to_owned(), false),
            ("bb".into(), false),
            (x(8), true),
            (x(8), false),
            ("c".into(), false),
            (x(8), true),
            (x(8), true),
        ];
        // Whatever the reads' sizes, the same lines.
        for capacity in [1, 3, 8, 64] {
            assert_eq!(
                read_all(input.as_bytes(), capacity, 8).await,
                want,
                "capacity {capacity}"
            );
        }
        assert_eq!(read_all(b"", 4, 8).await, []);
        assert_eq!(
            read_all(b"\n\n", 4, 8).await,
            [(String::new(), false), (String::new(), false)]
        );
    }

    #[test]
    fn a_cut_line_shows_no_part_of_a_secret() {
        let secrets = [Secret::new("hunter2")];
        assert_eq!(shown(b"pw hunter2 ok", false, &secrets), "pw *** ok");
        let cut = shown(b"pw=hunte", true, &secrets);
        assert!(cut.starts_with("pw= [cut: line longer than"), "{cut}");
        assert!(!cut.contains("hunte"));
        let cut = shown(b"pw=hunter2", true, &secrets);
        assert!(cut.starts_with("pw=*** [cut"), "{cut}");
        assert_eq!(
            shown(b"plain", true, &[]),
            format!("plain [cut: line longer than {LOG_LINE_MAX} bytes]")
        );
    }
}
