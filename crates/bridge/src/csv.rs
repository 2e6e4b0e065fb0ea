//! The lossless CSV profile: RFC 4180 quoting, UTF-8, LF line ends, and one
//! rule RFC 4180 leaves open: an unquoted empty field is NULL, a quoted
//! empty field (`""`) is the empty string.

/// One cell: `None` is SQL NULL.
pub type Cell = Option<String>;

/// Appends one record (with its LF) to `out`.
pub fn write_record(out: &mut Vec<u8>, cells: &[Cell]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let Some(text) = cell else { continue };
        let needs_quotes = text.is_empty() || text.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if needs_quotes {
            out.push(b'"');
            for b in text.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.push(b'\n');
}

/// One record as text, without its LF (for messages).
pub fn write_record_string(cells: &[Cell]) -> String {
    let mut out = Vec::new();
    write_record(&mut out, cells);
    out.pop();
    String::from_utf8(out).expect("cells are UTF-8")
}

/// Why a chunk did not parse; returned by [`Reader::next_record`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("line {line}: quoted field is not closed")]
    Unterminated { line: usize },
    #[error("line {line}: unexpected character after a closing quote")]
    AfterQuote { line: usize },
    #[error("line {line}: a quote inside an unquoted field")]
    StrayQuote { line: usize },
    #[error("line {line}: not valid UTF-8")]
    Utf8 { line: usize },
    #[error("line {line}: carriage return outside quotes (files must use LF)")]
    BareCr { line: usize },
}

/// Reads records from a whole chunk held in memory.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0, line: 1 }
    }

    /// The line the next record starts on (1-based).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next record, `Ok(None)` at the end.
    pub fn next_record(&mut self) -> Result<Option<Vec<Cell>>, Error> {
        let mut cells = Vec::new();
        Ok(self.next_into(&mut cells)?.then_some(cells))
    }

    /// Reads the next record into `cells`, reusing its strings; `false` at
    /// the end. On error `cells` holds part of the record.
    pub fn next_into(&mut self, cells: &mut Vec<Cell>) -> Result<bool, Error> {
        if self.pos >= self.data.len() {
            return Ok(false);
        }
        let start_line = self.line;
        let mut n = 0;
        loop {
            if n == cells.len() {
                cells.push(None);
            }
            let end_of_record = self.field(start_line, &mut cells[n])?;
            n += 1;
            if end_of_record {
                cells.truncate(n);
                return Ok(true);
            }
        }
    }

    /// One field into `cell`; returns whether the record ended after it.
    fn field(&mut self, start_line: usize, cell: &mut Cell) -> Result<bool, Error> {
        let d = self.data;
        if d.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            let mut text = std::mem::take(cell.get_or_insert_with(String::new)).into_bytes();
            text.clear();
            loop {
                // Copy up to the next quote in one go.
                let rest = &d[self.pos..];
                let Some(q) = rest.iter().position(|&b| b == b'"') else {
                    return Err(Error::Unterminated { line: start_line });
                };
                let run = &rest[..q];
                self.line += run.iter().filter(|&&b| b == b'\n').count();
                text.extend_from_slice(run);
                self.pos += q;
                if d.get(self.pos + 1) == Some(&b'"') {
                    text.push(b'"');
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    break;
                }
            }
            *cell = Some(String::from_utf8(text).map_err(|_| Error::Utf8 { line: start_line })?);
            self.end_of_field().ok_or(Error::AfterQuote { line: self.line })
        } else {
            let start = self.pos;
            loop {
                match d.get(self.pos) {
                    None | Some(b',') | Some(b'\n') => break,
                    Some(b'"') => return Err(Error::StrayQuote { line: self.line }),
                    Some(b'\r') => return Err(Error::BareCr { line: self.line }),
                    Some(_) => self.pos += 1,
                }
            }
            let raw = &d[start..self.pos];
            if raw.is_empty() {
                *cell = None;
            } else {
                let text = std::str::from_utf8(raw).map_err(|_| Error::Utf8 { line: self.line })?;
                let buf = cell.get_or_insert_with(String::new);
                buf.clear();
                buf.push_str(text);
            }
            // The loop above stopped at a comma, LF or the end.
            Ok(self.end_of_field().expect("a field ends at a separator"))
        }
    }

    /// Steps over the separator after a field: `Some(true)` when the record
    /// ended (LF or end of data), `Some(false)` at a comma, `None` when
    /// something else follows.
    fn end_of_field(&mut self) -> Option<bool> {
        match self.data.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                Some(false)
            }
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                Some(true)
            }
            None => Some(true),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cells: Vec<Cell>) {
        let mut out = Vec::new();
        write_record(&mut out, &cells);
        let mut r = Reader::new(&out);
        assert_eq!(r.next_record().unwrap(), Some(cells.clone()), "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(r.next_record().unwrap(), None);
    }

    #[test]
    fn profile_round_trips() {
        round_trip(vec![None, Some(String::new()), Some("a".into())]);
        round_trip(vec![Some("comma, \"quote\"\r\nCRLF\nLF".into()), None]);
        round_trip(vec![Some("emoji 🎉 ünïcödé".into())]);
        round_trip(vec![None]);
        round_trip(vec![Some(String::new())]);
    }

    #[test]
    fn damage_is_reported_with_lines() {
        assert_eq!(Reader::new(b"a,\"b\n").next_record(), Err(Error::Unterminated { line: 1 }));
        let mut r = Reader::new(b"ok\nx\"y\n");
        r.next_record().unwrap();
        assert_eq!(r.next_record(), Err(Error::StrayQuote { line: 2 }));
        assert_eq!(Reader::new(b"a\r\n").next_record(), Err(Error::BareCr { line: 1 }));
        assert_eq!(Reader::new(b"\"a\"b\n").next_record(), Err(Error::AfterQuote { line: 1 }));
    }
}
