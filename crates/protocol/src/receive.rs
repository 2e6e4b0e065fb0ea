//! receive-pack: the command list of a push, ref-name rules, and the status
//! report sent back.

use std::collections::HashSet;

use tessera_pack::ObjectId;
use tessera_pktline::{self as pkt, Channel, Packet};

/// One `<old> <new> <ref>` line. A null id means create (old) or delete (new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub name: String,
}

/// The command section of a push.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub commands: Vec<Command>,
    pub caps: HashSet<String>,
    pub options: Vec<String>,
    pub shallows: Vec<ObjectId>,
    /// Bytes of the body taken by the commands; the pack (if any) follows.
    pub pack_offset: usize,
}

impl PushRequest {
    pub fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }
    pub fn atomic(&self) -> bool {
        self.has("atomic")
    }
    /// Whether a pack must follow: any command other than a delete.
    pub fn expects_pack(&self) -> bool {
        self.commands.iter().any(|c| c.new.is_some())
    }
}

/// Why the command section was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("malformed pkt-line: {0}")]
    Packet(#[from] pkt::DecodeError),
    #[error("malformed command {0:?}")]
    BadCommand(String),
    #[error("push has no commands")]
    Empty,
    #[error("the command list is incomplete")]
    Incomplete,
}

fn parse_id(hex: &str) -> Option<Option<ObjectId>> {
    let id = ObjectId::from_hex(hex.as_bytes()).ok()?;
    Some((!id.is_null()).then_some(id))
}

/// Tracks pkt-line framing over a growing buffer, so a caller can tell
/// cheaply when a flush packet (which may end the command list) arrived.
#[derive(Debug, Default)]
pub struct Framing {
    /// Where the first packet not yet walked starts.
    pos: usize,
}

impl Framing {
    /// Walks the complete packets added to `body` since the last call;
    /// returns whether one of them was a flush.
    pub fn advance(&mut self, body: &[u8]) -> Result<bool, Error> {
        let mut flushed = false;
        while let Some((packet, used)) = pkt::decode(&body[self.pos..])? {
            self.pos += used;
            if packet == Packet::Flush {
                flushed = true;
                break;
            }
        }
        Ok(flushed)
    }
}

/// Parses the command section at the front of `body`; returns `Ok(None)`
/// when `body` does not yet hold all of it (read more and try again).
pub fn parse(body: &[u8]) -> Result<Option<PushRequest>, Error> {
    let mut req = PushRequest::default();
    let mut pos = 0;
    let mut in_options = false;
    loop {
        let Some((packet, used)) = pkt::decode(&body[pos..])? else {
            return Ok(None);
        };
        pos += used;
        match packet {
            Packet::Flush => {
                if !in_options && req.has("push-options") && !req.commands.is_empty() {
                    in_options = true;
                    continue;
                }
                break;
            }
            Packet::Data(_) => {
                let raw = packet.line().unwrap_or_default();
                let shown = || String::from_utf8_lossy(raw).into_owned();
                if in_options {
                    req.options.push(shown());
                    continue;
                }
                let (line, caps) = match raw.iter().position(|b| *b == 0) {
                    Some(nul) => (&raw[..nul], Some(&raw[nul + 1..])),
                    None => (raw, None),
                };
                let line = std::str::from_utf8(line).map_err(|_| Error::BadCommand(shown()))?;
                if let Some(caps) = caps {
                    let caps = String::from_utf8_lossy(caps);
                    req.caps.extend(caps.split(' ').filter(|c| !c.is_empty()).map(str::to_string));
                }
                if let Some(rest) = line.strip_prefix("shallow ") {
                    let id = parse_id(rest).flatten().ok_or_else(|| Error::BadCommand(shown()))?;
                    req.shallows.push(id);
                    continue;
                }
                let mut parts = line.splitn(3, ' ');
                let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(Error::BadCommand(shown()));
                };
                let old = parse_id(old).ok_or_else(|| Error::BadCommand(shown()))?;
                let new = parse_id(new).ok_or_else(|| Error::BadCommand(shown()))?;
                req.commands.push(Command { old, new, name: name.to_string() });
            }
            _ => return Err(Error::BadCommand(format!("{packet:?}"))),
        }
    }
    if req.commands.is_empty() {
        return Err(Error::Empty);
    }
    req.pack_offset = pos;
    Ok(Some(req))
}

/// Checks a ref name the way `git check-ref-format` does, and that it is a
/// name under `refs/`.
pub fn valid_ref_name(name: &str) -> bool {
    name.starts_with("refs/") && gix_validate::reference::name(name.as_bytes().into()).is_ok()
}

/// Builds the `report-status` answer: `unpack` line, one line per command.
pub fn report(req: &PushRequest, unpack: Result<(), String>, results: &[(String, Result<(), String>)]) -> Vec<u8> {
    let mut body = Vec::new();
    match unpack {
        Ok(()) => pkt::write_line(&mut body, "unpack ok"),
        Err(e) => pkt::write_line(&mut body, format!("unpack {}", one_line(&e))),
    }
    for (name, result) in results {
        match result {
            Ok(()) => pkt::write_line(&mut body, format!("ok {name}")),
            Err(reason) => pkt::write_line(&mut body, format!("ng {name} {}", one_line(reason))),
        }
    }
    pkt::write_flush(&mut body);
    if req.has("side-band-64k") || req.has("side-band") {
        let mut out = Vec::new();
        pkt::sideband(&mut out, Channel::Data, &body);
        pkt::write_flush(&mut out);
        out
    } else {
        body
    }
}

/// A remote message (`remote: ...`) on side-band channel 2, when the
/// client asked for side-band. Sent even to `quiet` clients, as git does for
/// hook output: quiet silences progress, not what the server has to say.
pub fn message(req: &PushRequest, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if req.has("side-band-64k") || req.has("side-band") {
        pkt::sideband(&mut out, Channel::Progress, text.as_bytes());
    }
    out
}

/// Like [`message`], but silenced when the client asked for `quiet`.
pub fn progress(req: &PushRequest, text: &str) -> Vec<u8> {
    if req.has("quiet") {
        return Vec::new();
    }
    message(req, text)
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_caps() {
        let mut body = Vec::new();
        let zero = "0".repeat(40);
        let one = "1".repeat(40);
        pkt::write_line(&mut body, format!("{zero} {one} refs/heads/main\0report-status atomic push-options"));
        pkt::write_line(&mut body, format!("{one} {zero} refs/heads/old"));
        pkt::write_flush(&mut body);
        pkt::write_line(&mut body, "ci.skip");
        pkt::write_flush(&mut body);
        body.extend_from_slice(b"PACK");
        let req = parse(&body).unwrap().unwrap();
        assert_eq!(req.commands.len(), 2);
        assert_eq!(req.commands[0].old, None);
        assert_eq!(req.commands[1].new, None);
        assert!(req.atomic());
        assert_eq!(req.options, vec!["ci.skip".to_string()]);
        assert_eq!(&body[req.pack_offset..], b"PACK");
        assert!(matches!(parse(&body[..20]), Ok(None)));
    }

    #[test]
    fn rejects_bad_commands() {
        let mut body = Vec::new();
        pkt::write_line(&mut body, "nonsense");
        pkt::write_flush(&mut body);
        assert!(matches!(parse(&body), Err(Error::BadCommand(_))));
        assert!(matches!(parse(b"0000"), Err(Error::Empty)));
        assert!(parse(b"zzzz").is_err());
    }

    #[test]
    fn ref_names() {
        for good in ["refs/heads/main", "refs/tags/v1.0", "refs/heads/a/b-c"] {
            assert!(valid_ref_name(good), "{good}");
        }
        for bad in
            ["main", "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/a b", "refs/heads/", "HEAD", "refs/heads/a~1"]
        {
            assert!(!valid_ref_name(bad), "{bad}");
        }
    }
}
