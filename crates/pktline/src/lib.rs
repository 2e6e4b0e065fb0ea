//! git's pkt-line framing: the length-prefixed packets every smart-protocol
//! exchange is made of, plus the side-band multiplexing used to stream packs.
//!
//! The central pieces are [`decode`] (one packet from the front of a byte
//! slice, never panicking on hostile input), [`Writer`] helpers that append
//! packets to a buffer, and [`sideband`] for channel-multiplexed output.
//!
//! ```
//! let mut out = Vec::new();
//! tessera_pktline::write_data(&mut out, b"hello\n").unwrap();
//! tessera_pktline::write_flush(&mut out);
//! let (pkt, used) = tessera_pktline::decode(&out).unwrap().unwrap();
//! assert_eq!(pkt, tessera_pktline::Packet::Data(b"hello\n"));
//! assert_eq!(used, 10);
//! ```
#![forbid(unsafe_code)]

/// The largest packet git allows, header included.
pub const MAX_PACKET_LEN: usize = 65520;
/// The largest payload of a data packet.
pub const MAX_DATA_LEN: usize = MAX_PACKET_LEN - 4;
/// The largest payload of one side-band-64k packet (one byte goes to the channel).
pub const MAX_SIDEBAND_DATA_LEN: usize = MAX_DATA_LEN - 1;

/// One decoded packet, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0000`: ends a message section.
    Flush,
    /// `0001`: separates sections in protocol v2.
    Delim,
    /// `0002`: ends a stateless response in protocol v2.
    ResponseEnd,
    /// A data packet's payload, line feed included if the sender put one.
    Data(&'a [u8]),
}

impl<'a> Packet<'a> {
    /// The payload without one trailing line feed, or `None` for control packets.
    pub fn line(&self) -> Option<&'a [u8]> {
        match self {
            Packet::Data(d) => Some(d.strip_suffix(b"\n").unwrap_or(d)),
            _ => None,
        }
    }
}

/// Why [`decode`] rejected the bytes; returned by [`decode`] and [`Parser`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pkt-line length header {0:?} is not four hex digits")]
    BadHeader([u8; 4]),
    #[error("pkt-line length {0} is reserved or shorter than its header")]
    BadLength(usize),
    #[error("pkt-line length {0} exceeds the maximum of {MAX_PACKET_LEN}")]
    TooLong(usize),
    #[error("input ended inside a pkt-line")]
    Truncated,
}

fn hex_value(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as usize),
        b'a'..=b'f' => Some((b - b'a' + 10) as usize),
        b'A'..=b'F' => Some((b - b'A' + 10) as usize),
        _ => None,
    }
}

/// Decodes the packet at the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a packet (read more and
/// call again), or the packet and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let header = [buf[0], buf[1], buf[2], buf[3]];
    let mut len = 0usize;
    for b in header {
        len = len * 16 + hex_value(b).ok_or(DecodeError::BadHeader(header))?;
    }
    let pkt = match len {
        0 => return Ok(Some((Packet::Flush, 4))),
        1 => return Ok(Some((Packet::Delim, 4))),
        2 => return Ok(Some((Packet::ResponseEnd, 4))),
        3 | 4 => return Err(DecodeError::BadLength(len)),
        n if n > MAX_PACKET_LEN => return Err(DecodeError::TooLong(n)),
        n => n,
    };
    if buf.len() < pkt {
        return Ok(None);
    }
    Ok(Some((Packet::Data(&buf[4..pkt]), pkt)))
}

/// Walks the packets of a complete message held in memory.
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Parser { buf, pos: 0 }
    }

    /// The next packet, `Ok(None)` at the clean end of input, or an error for
    /// a malformed or truncated packet.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'a>>, DecodeError> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        match decode(rest)? {
            Some((pkt, used)) => {
                self.pos += used;
                Ok(Some(pkt))
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// Bytes not consumed yet (for example the pack that follows push commands).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// How many bytes were consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Returned by [`write_data`] when the payload does not fit in one packet.
#[derive(Debug, thiserror::Error)]
#[error("payload of {0} bytes does not fit in one pkt-line")]
pub struct TooLong(pub usize);

/// Appends one data packet.
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) -> Result<(), TooLong> {
    if data.len() > MAX_DATA_LEN {
        return Err(TooLong(data.len()));
    }
    write_header(out, data.len() + 4);
    out.extend_from_slice(data);
    Ok(())
}

/// Appends one data packet holding `text` and a line feed. Text lines may
/// quote what a client sent (an unknown command, a ref name), so one that
/// would not fit in a packet is cut, ending in `...`, instead of failing.
pub fn write_line(out: &mut Vec<u8>, text: impl AsRef<[u8]>) {
    const ELLIPSIS: &[u8] = b"...";
    let text = text.as_ref();
    // One byte of the payload is the line feed.
    let room = MAX_DATA_LEN - 1;
    if text.len() <= room {
        write_header(out, text.len() + 5);
        out.extend_from_slice(text);
    } else {
        write_header(out, MAX_PACKET_LEN);
        out.extend_from_slice(&text[..room - ELLIPSIS.len()]);
        out.extend_from_slice(ELLIPSIS);
    }
    out.push(b'\n');
}

pub fn write_flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

pub fn write_delim(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0001");
}

pub fn write_response_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0002");
}

fn write_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[HEX[(len >> 12) & 15], HEX[(len >> 8) & 15], HEX[(len >> 4) & 15], HEX[len & 15]]);
}

/// The side-band channels of `side-band-64k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    Data = 1,
    Progress = 2,
    Error = 3,
}

/// Appends `data` on `channel`, split into as many packets as needed.
pub fn sideband(out: &mut Vec<u8>, channel: Channel, data: &[u8]) {
    for piece in data.chunks(MAX_SIDEBAND_DATA_LEN) {
        write_header(out, piece.len() + 5);
        out.push(channel as u8);
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<Option<(Packet<'_>, usize)>, DecodeError>) {
        assert_eq!(decode(input), expected, "input {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn decodes_control_and_data_packets() {
        check(b"0000", Ok(Some((Packet::Flush, 4))));
        check(b"0001", Ok(Some((Packet::Delim, 4))));
        check(b"0002", Ok(Some((Packet::ResponseEnd, 4))));
        check(b"0006a\nrest", Ok(Some((Packet::Data(b"a\n"), 6))));
        check(b"0005", Ok(None));
        check(b"00", Ok(None));
        check(b"0003", Err(DecodeError::BadLength(3)));
        check(b"0004", Err(DecodeError::BadLength(4)));
        check(b"zz00", Err(DecodeError::BadHeader(*b"zz00")));
        check(b"fff1", Err(DecodeError::TooLong(0xfff1)));
        check(b"FFF0", Ok(None));
    }

    #[test]
    fn parser_reports_truncation() {
        let mut p = Parser::new(b"0006a\n000");
        assert_eq!(p.next_packet(), Ok(Some(Packet::Data(b"a\n"))));
        assert_eq!(p.next_packet(), Err(DecodeError::Truncated));
    }

    #[test]
    fn sideband_splits_large_payloads() {
        let data = vec![7u8; MAX_SIDEBAND_DATA_LEN + 10];
        let mut out = Vec::new();
        sideband(&mut out, Channel::Data, &data);
        let mut p = Parser::new(&out);
        let first = p.next_packet().unwrap().unwrap();
        let second = p.next_packet().unwrap().unwrap();
        assert_eq!(first, Packet::Data(&out[4..MAX_PACKET_LEN]));
        assert!(matches!(second, Packet::Data(d) if d.len() == 11 && d[0] == 1));
        assert_eq!(p.next_packet(), Ok(None));
    }

    #[test]
    fn write_line_round_trips() {
        let mut out = Vec::new();
        write_line(&mut out, "want abc");
        assert_eq!(out, b"000dwant abc\n");
        let (pkt, _) = decode(&out).unwrap().unwrap();
        assert_eq!(pkt.line(), Some(&b"want abc"[..]));
    }

    #[test]
    fn write_line_cuts_what_does_not_fit() {
        for len in [MAX_DATA_LEN - 2, MAX_DATA_LEN - 1, MAX_DATA_LEN, 65_516, 200_000] {
            let mut out = Vec::new();
            write_line(&mut out, vec![b'x'; len]);
            let (pkt, used) = decode(&out).unwrap().unwrap();
            assert_eq!(used, out.len(), "one packet for {len} bytes");
            let line = pkt.line().unwrap();
            assert!(line.len() < MAX_DATA_LEN);
            assert_eq!(line.len() == len, len < MAX_DATA_LEN, "cut only when needed ({len})");
        }
    }
}
