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

/// What [`scan_record`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The input ends before the record's LF.
    Incomplete,
    /// A record of `len` bytes (LF included) with `fields` fields.
    /// `canonical`: the bytes are exactly what [`write_record`] writes for
    /// these cells, so they can be stored as they are.
    Record { len: usize, fields: usize, canonical: bool },
}

/// Finds the end of the first record of `data` without decoding it,
/// decoding only the fields that `wanted` marks into `cells` (which must be
/// as long as `wanted`). For sources that already speak this profile
/// (PostgreSQL's `COPY ... (FORMAT csv)`), whose records can be stored
/// without being decoded and written again.
pub fn scan_record(data: &[u8], wanted: &[bool], cells: &mut [Cell]) -> Result<Scan, Error> {
    let mut pos = 0;
    let mut field = 0;
    let mut canonical = true;
    loop {
        let keep = wanted.get(field).copied().unwrap_or(false);
        if data.get(pos) == Some(&b'"') {
            let start = pos + 1;
            let mut i = start;
            let mut escaped = false;
            let mut special = false;
            loop {
                let Some(q) = memchr::memchr(b'"', &data[i..]) else { return Ok(Scan::Incomplete) };
                special = special || memchr::memchr3(b',', b'\r', b'\n', &data[i..i + q]).is_some();
                i += q;
                match data.get(i + 1) {
                    Some(b'"') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(_) => break,
                    None => return Ok(Scan::Incomplete),
                }
            }
            // Quotes around text that needs none are not what the writer
            // writes (the empty string needs them).
            canonical = canonical && (special || escaped || i == start);
            if keep {
                let text = std::str::from_utf8(&data[start..i]).map_err(|_| Error::Utf8 { line: 1 })?;
                let cell = cells[field].get_or_insert_with(String::new);
                cell.clear();
                if escaped {
                    // Each `""` becomes one `"`.
                    for (n, part) in text.split("\"\"").enumerate() {
                        if n > 0 {
                            cell.push('"');
                        }
                        cell.push_str(part);
                    }
                } else {
                    cell.push_str(text);
                }
            }
            pos = i + 1;
        } else {
            // A CR here is caught for the whole record below.
            let start = pos;
            match memchr::memchr3(b',', b'\n', b'"', &data[pos..]) {
                None => return Ok(Scan::Incomplete),
                Some(n) if data[pos + n] == b'"' => return Err(Error::StrayQuote { line: 1 }),
                Some(n) => pos += n,
            }
            if keep {
                let raw = &data[start..pos];
                if raw.is_empty() {
                    cells[field] = None;
                } else {
                    let cell = cells[field].get_or_insert_with(String::new);
                    cell.clear();
                    cell.push_str(std::str::from_utf8(raw).map_err(|_| Error::Utf8 { line: 1 })?);
                }
            }
        }
        field += 1;
        match data.get(pos) {
            Some(b',') => pos += 1,
            Some(b'\n') => {
                pos += 1;
                let record = &data[..pos];
                std::str::from_utf8(record).map_err(|_| Error::Utf8 { line: 1 })?;
                if memchr::memchr(b'\r', record).is_some() {
                    // Rare: CR is allowed only inside quotes; the reader knows where.
                    Reader::new(record).next_record()?;
                }
                return Ok(Scan::Record { len: pos, fields: field, canonical });
            }
            None => return Ok(Scan::Incomplete),
            Some(_) => return Err(Error::AfterQuote { line: 1 }),
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
    fn scan_finds_records_and_decodes_only_wanted_fields() {
        let data = b"1,\"a, \"\"b\"\"\",,\"\"\n2,\"plain\",x\n3,\"unfinished";
        let mut cells = vec![Some("stale".to_string()), None, None, None];
        let wanted = [true, true, false, false];
        let Scan::Record { len, fields, canonical } = scan_record(data, &wanted, &mut cells).unwrap() else {
            panic!("a record")
        };
        assert_eq!((fields, canonical), (4, true));
        assert_eq!(&cells[..2], &[Some("1".to_string()), Some("a, \"b\"".to_string())]);
        let mut written = Vec::new();
        write_record(&mut written, &Reader::new(&data[..len]).next_record().unwrap().unwrap());
        assert_eq!(written, &data[..len]);
        // Quotes the writer would not write make the record non-canonical.
        let rest = &data[len..];
        let Scan::Record { len: len2, canonical, .. } = scan_record(rest, &wanted, &mut cells).unwrap() else {
            panic!("a record")
        };
        assert!(!canonical);
        assert_eq!(scan_record(&rest[len2..], &wanted, &mut cells), Ok(Scan::Incomplete));
        assert_eq!(scan_record(b"1,x\"y\n", &wanted, &mut cells), Err(Error::StrayQuote { line: 1 }));
        assert_eq!(scan_record(b"\"a\"b\n", &wanted, &mut cells), Err(Error::AfterQuote { line: 1 }));
        assert_eq!(scan_record(b"a\r\n", &wanted, &mut cells), Err(Error::BareCr { line: 1 }));
        assert_eq!(scan_record(b"\xff,a\n", &wanted, &mut cells), Err(Error::Utf8 { line: 1 }));
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
