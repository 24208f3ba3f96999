//! Reading what a stdio upstream writes, one line at a time, in bounded memory: a child that
//! writes a line without end (or a huge one) costs at most `max` bytes, and the rest of
//! that line is passed over.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The whole line is in the buffer (with its `\n`, unless the stream ended first).
    Line,
    /// The line was longer than the limit: the buffer holds its first `max` bytes, and this
    /// is its full length.
    Cut(usize),
    /// The stream ended.
    End,
}

/// Reads the next line into `line` (cleared first), keeping at most `max` bytes of it.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Read> {
    line.clear();
    let mut length = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match length {
                0 => Read::End,
                n if n > max => Read::Cut(n),
                _ => Read::Line,
            });
        }
        let (chunk, done) = match memchr(available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        length = length.saturating_add(chunk.len());
        let used = chunk.len();
        reader.consume(used);
        if done {
            return Ok(if length > max {
                Read::Cut(length)
            } else {
                Read::Line
            });
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// What a line on a stdio upstream's stdout is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// Starts like a JSON-RPC message (an object, or a batch): passed to the client.
    Message,
    /// Only whitespace.
    Blank,
    /// Anything else (a print left in the server's code): skipped with a warning.
    Other,
}

pub fn kind(line: &[u8]) -> Kind {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Kind::Message,
        None => Kind::Blank,
        Some(_) => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Read, Vec<u8>)> {
        // A small buffer, so lines span several reads.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, max).await.unwrap() {
                Read::End => return out,
                read => out.push((read, line.clone())),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_read_whole_or_cut_at_the_limit() {
        let got = lines(b"{\"a\":1}\nxxxxxxxxxxxxxxxxxxxx\n[1]\nlast", 8).await;
        assert_eq!(
            got,
            [
                (Read::Line, b"{\"a\":1}\n".to_vec()),
                (Read::Cut(21), b"xxxxxxxx".to_vec()),
                (Read::Line, b"[1]\n".to_vec()),
                (Read::Line, b"last".to_vec()),
            ]
        );
        assert_eq!(lines(b"", 8).await, []);
        assert_eq!(
            lines(b"0123456789", 4).await,
            [(Read::Cut(10), b"0123".to_vec())]
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(b"  {\"jsonrpc\"}"), Kind::Message);
        assert_eq!(kind(b"[]"), Kind::Message);
        assert_eq!(kind(b" \r\n"), Kind::Blank);
        assert_eq!(kind(b"hello"), Kind::Other);
    }
}
