//! Reading newline-delimited input in bounded memory, whatever a client sends.

use std::io::BufRead;

pub enum Line {
    /// End of input.
    End,
    /// A line (with its newline, if any) is in the buffer.
    Complete,
    /// The line was longer than the limit: it was read and dropped, the buffer holds a prefix.
    TooLong,
}

/// Reads up to the next newline into `buf` (cleared first), keeping at most `max` bytes; the
/// rest of a longer line is read and dropped, so one huge line never sits in memory whole.
pub fn read_bounded_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut seen = 0usize;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if seen == 0 {
                Line::End
            } else if seen > max {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
        let (used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if seen + used <= max {
            buf.extend_from_slice(&chunk[..used]);
        }
        seen += used;
        input.consume(used);
        if done {
            return Ok(if seen > max { Line::TooLong } else { Line::Complete });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_dropped_and_the_next_line_is_read() {
        let mut input = "short\nwaytoolong\nlast".as_bytes();
        let mut buf = Vec::new();
        assert!(matches!(read_bounded_line(&mut input, &mut buf, 6).unwrap(), Line::Complete));
        assert_eq!(buf, b"short\n");
        assert!(matches!(read_bounded_line(&mut input, &mut buf, 6).unwrap(), Line::TooLong));
        assert!(matches!(read_bounded_line(&mut input, &mut buf, 6).unwrap(), Line::Complete));
        assert_eq!(buf, b"last");
        assert!(matches!(read_bounded_line(&mut input, &mut buf, 6).unwrap(), Line::End));
    }
}
