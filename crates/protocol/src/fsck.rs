//! Checks on pushed objects, as git's `receive.fsckObjects` makes them: each
//! finding has C git's message id (`badFilemode`, `hasDotgit`, ...) and a
//! severity that an operator may change per id, so that old histories'
//! harmless oddities are accepted and counted while anything that could
//! harm a checkout is refused.

use std::collections::BTreeMap;
use std::fmt;

use gix_object::Kind;
use tessera_pack::ObjectId;

/// What happens to an object with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Refused.
    Error,
    /// Accepted and counted in the push's remote message.
    Warn,
    /// Accepted and counted, like a warning, but not worth a user's attention.
    Info,
    /// Accepted silently.
    Ignore,
}

impl Severity {
    fn parse(text: &str) -> Option<Severity> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Severity::Error),
            "warn" | "warning" => Some(Severity::Warn),
            "info" => Some(Severity::Info),
            "ignore" => Some(Severity::Ignore),
            _ => None,
        }
    }
}

macro_rules! msg_ids {
    ($( $variant:ident = $name:literal, git: $git:ident, tessera: $ours:ident, fatal: $fatal:literal; )*) => {
        /// A finding's identity: C git's fsck message id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum MsgId { $( $variant, )* }

        impl MsgId {
            pub const ALL: &'static [MsgId] = &[ $( MsgId::$variant, )* ];

            /// The id as C git spells it (`receive.fsck.<id>`).
            pub fn name(self) -> &'static str {
                match self { $( MsgId::$variant => $name, )* }
            }

            /// C git's default severity.
            pub fn git_severity(self) -> Severity {
                match self { $( MsgId::$variant => Severity::$git, )* }
            }

            /// tessera's default severity (see ARCHITECTURE.md for where it
            /// differs from C git's, and why).
            pub fn default_severity(self) -> Severity {
                match self { $( MsgId::$variant => Severity::$ours, )* }
            }

            /// Findings after which the object's structure (its tree, parents
            /// or target) is unknown: always refused, whatever the policy says.
            pub fn is_fatal(self) -> bool {
                match self { $( MsgId::$variant => $fatal, )* }
            }

            /// Looks an id up by C git's name, ignoring case.
            pub fn from_name(name: &str) -> Option<MsgId> {
                MsgId::ALL.iter().copied().find(|id| id.name().eq_ignore_ascii_case(name))
            }
        }
    };
}

msg_ids! {
    // Headers.
    NulInHeader = "nulInHeader", git: Error, tessera: Error, fatal: true;
    UnterminatedHeader = "unterminatedHeader", git: Error, tessera: Error, fatal: true;
    // Commits.
    MissingTree = "missingTree", git: Error, tessera: Error, fatal: true;
    BadTreeSha1 = "badTreeSha1", git: Error, tessera: Error, fatal: true;
    BadParentSha1 = "badParentSha1", git: Error, tessera: Error, fatal: true;
    MissingAuthor = "missingAuthor", git: Error, tessera: Error, fatal: false;
    MultipleAuthors = "multipleAuthors", git: Error, tessera: Error, fatal: false;
    MissingCommitter = "missingCommitter", git: Error, tessera: Error, fatal: false;
    NulInCommit = "nulInCommit", git: Warn, tessera: Warn, fatal: false;
    // Identities (author, committer, tagger).
    MissingNameBeforeEmail = "missingNameBeforeEmail", git: Error, tessera: Error, fatal: false;
    BadName = "badName", git: Error, tessera: Error, fatal: false;
    MissingEmail = "missingEmail", git: Error, tessera: Error, fatal: false;
    MissingSpaceBeforeEmail = "missingSpaceBeforeEmail", git: Error, tessera: Error, fatal: false;
    BadEmail = "badEmail", git: Error, tessera: Error, fatal: false;
    // Old tools wrote odd dates; git reads them, so they stay servable.
    MissingSpaceBeforeDate = "missingSpaceBeforeDate", git: Error, tessera: Warn, fatal: false;
    ZeroPaddedDate = "zeroPaddedDate", git: Error, tessera: Warn, fatal: false;
    BadDate = "badDate", git: Error, tessera: Warn, fatal: false;
    BadDateOverflow = "badDateOverflow", git: Error, tessera: Warn, fatal: false;
    BadTimezone = "badTimezone", git: Error, tessera: Warn, fatal: false;
    // Tags.
    MissingObject = "missingObject", git: Error, tessera: Error, fatal: true;
    BadObjectSha1 = "badObjectSha1", git: Error, tessera: Error, fatal: true;
    MissingTypeEntry = "missingTypeEntry", git: Error, tessera: Error, fatal: true;
    BadType = "badType", git: Error, tessera: Error, fatal: true;
    MissingTagEntry = "missingTagEntry", git: Error, tessera: Error, fatal: false;
    BadTagName = "badTagName", git: Info, tessera: Info, fatal: false;
    MissingTaggerEntry = "missingTaggerEntry", git: Info, tessera: Info, fatal: false;
    ExtraHeaderEntry = "extraHeaderEntry", git: Ignore, tessera: Ignore, fatal: false;
    // Trees.
    BadTree = "badTree", git: Error, tessera: Error, fatal: true;
    DuplicateEntries = "duplicateEntries", git: Error, tessera: Error, fatal: false;
    TreeNotSorted = "treeNotSorted", git: Error, tessera: Error, fatal: false;
    BadFilemode = "badFilemode", git: Info, tessera: Info, fatal: false;
    ZeroPaddedFilemode = "zeroPaddedFilemode", git: Warn, tessera: Warn, fatal: false;
    NullSha1 = "nullSha1", git: Warn, tessera: Error, fatal: false;
    // Names a checkout would write somewhere it must not: refused by
    // default, as the large hosts do, though C git only warns.
    EmptyName = "emptyName", git: Warn, tessera: Error, fatal: false;
    FullPathname = "fullPathname", git: Warn, tessera: Error, fatal: false;
    HasDot = "hasDot", git: Warn, tessera: Error, fatal: false;
    HasDotdot = "hasDotdot", git: Warn, tessera: Error, fatal: false;
    HasDotgit = "hasDotgit", git: Warn, tessera: Error, fatal: false;
    // Submodule configuration that has run commands on clients (CVE-2018-11235, CVE-2018-17456).
    GitmodulesSymlink = "gitmodulesSymlink", git: Error, tessera: Error, fatal: false;
    GitmodulesName = "gitmodulesName", git: Error, tessera: Error, fatal: false;
    GitmodulesUrl = "gitmodulesUrl", git: Error, tessera: Error, fatal: false;
    GitmodulesPath = "gitmodulesPath", git: Error, tessera: Error, fatal: false;
    GitmodulesUpdate = "gitmodulesUpdate", git: Error, tessera: Error, fatal: false;
    GitmodulesLarge = "gitmodulesLarge", git: Error, tessera: Error, fatal: false;
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Severity per message id: tessera's defaults, changed per id by the
/// operator (`[fsck]` in `tessera.toml`, like `receive.fsck.<id>`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    overrides: BTreeMap<MsgId, Severity>,
}

/// Why a policy setting was not taken; returned by [`Policy::set`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("unknown fsck message id {0:?}")]
    UnknownId(String),
    #[error("unknown fsck severity {0:?} (error, warn, info or ignore)")]
    UnknownSeverity(String),
}

impl Policy {
    /// Sets the severity of one id, both named as C git names them.
    pub fn set(&mut self, id: &str, severity: &str) -> Result<(), PolicyError> {
        let id = MsgId::from_name(id).ok_or_else(|| PolicyError::UnknownId(id.to_string()))?;
        let severity = Severity::parse(severity).ok_or_else(|| PolicyError::UnknownSeverity(severity.to_string()))?;
        self.overrides.insert(id, severity);
        Ok(())
    }

    pub fn severity(&self, id: MsgId) -> Severity {
        if id.is_fatal() {
            return Severity::Error;
        }
        self.overrides.get(&id).copied().unwrap_or_else(|| id.default_severity())
    }
}

/// Findings that were accepted, counted per id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub counts: BTreeMap<MsgId, u64>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// One line for a push's remote message: `badFilemode: 3, zeroPaddedFilemode: 1`.
    pub fn summary(&self) -> String {
        self.counts.iter().map(|(id, n)| format!("{id}: {n}")).collect::<Vec<_>>().join(", ")
    }
}

/// Why a pushed object was refused; returned by [`check`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{id}: {detail}")]
pub struct Error {
    pub id: MsgId,
    pub detail: String,
}

/// What the rest of a push needs to know about a checked object.
#[derive(Debug, Clone)]
pub enum Parsed {
    Commit { tree: ObjectId, parents: Vec<ObjectId>, time: i64 },
    Tag { target: ObjectId, target_kind: Kind },
    Tree { entries: Vec<(ObjectId, TreeEntryKind)>, gitmodules: Option<ObjectId> },
    Blob,
}

/// The kind of object a tree entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeEntryKind {
    Tree,
    Blob,
    /// A submodule commit: not expected in this repository.
    Gitlink,
}

/// One entry of a raw tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeEntry<'a> {
    pub mode: &'a [u8],
    pub name: &'a [u8],
    pub id: ObjectId,
}

impl TreeEntry<'_> {
    pub fn kind(&self) -> TreeEntryKind {
        mode_kind(self.mode)
    }
}

/// What a tree entry's mode makes it, as git reads it: the octal value's
/// file type bits, so `040000` is a directory and `100664` a file.
pub fn mode_kind(mode: &[u8]) -> TreeEntryKind {
    let value = mode.iter().try_fold(0u32, |acc, b| match b {
        b'0'..=b'7' => acc.checked_mul(8).map(|v| v + u32::from(b - b'0')),
        _ => None,
    });
    match value.map(|v| v & 0o170000) {
        Some(0o040000) => TreeEntryKind::Tree,
        Some(0o160000) => TreeEntryKind::Gitlink,
        _ => TreeEntryKind::Blob,
    }
}

/// A malformed tree (truncated entry, missing NUL); returned by [`tree_entries`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed tree")]
pub struct MalformedTree;

/// Iterates a raw tree, failing on the first malformed entry.
pub fn tree_entries(data: &[u8]) -> impl Iterator<Item = Result<TreeEntry<'_>, MalformedTree>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let space = rest.iter().position(|b| *b == b' ')?;
            let mode = &rest[..space];
            let after_mode = &rest[space + 1..];
            let nul = after_mode.iter().position(|b| *b == 0)?;
            let name = &after_mode[..nul];
            // Exactly 20 bytes, a SHA-1's length, so the conversion cannot fail.
            let id = ObjectId::from_bytes_or_panic(after_mode.get(nul + 1..nul + 21)?);
            Some((TreeEntry { mode, name, id }, &after_mode[nul + 21..]))
        })();
        match parsed {
            Some((entry, next)) if !entry.mode.is_empty() => {
                rest = next;
                Some(Ok(entry))
            }
            _ => {
                rest = &[];
                Some(Err(MalformedTree))
            }
        }
    })
}

/// Checks objects against a policy, counting what it accepts.
pub struct Checker<'p> {
    pub policy: &'p Policy,
    pub report: Report,
}

impl<'p> Checker<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        Checker { policy, report: Report::default() }
    }

    /// Records a finding: an error under the policy refuses the object.
    fn finding(&mut self, id: MsgId, detail: impl FnOnce() -> String) -> Result<(), Error> {
        match self.policy.severity(id) {
            Severity::Error => Err(Error { id, detail: detail() }),
            Severity::Warn | Severity::Info => {
                *self.report.counts.entry(id).or_default() += 1;
                Ok(())
            }
            Severity::Ignore => Ok(()),
        }
    }

    /// Checks one object of `kind` and extracts what later steps need.
    pub fn check(&mut self, kind: Kind, data: &[u8]) -> Result<Parsed, Error> {
        match kind {
            Kind::Blob => Ok(Parsed::Blob),
            Kind::Tree => self.tree(data),
            Kind::Commit => self.commit(data),
            Kind::Tag => self.tag(data),
        }
    }

    fn tree(&mut self, data: &[u8]) -> Result<Parsed, Error> {
        let mut entries = Vec::new();
        let mut gitmodules = None;
        let mut previous: Option<(&[u8], bool)> = None;
        for entry in tree_entries(data) {
            let entry = entry.map_err(|_| Error { id: MsgId::BadTree, detail: "cannot be parsed".into() })?;
            let shown = || String::from_utf8_lossy(entry.name).into_owned();
            let name = entry.name;
            if name.is_empty() {
                self.finding(MsgId::EmptyName, || "an entry has an empty name".into())?;
            }
            if name.contains(&b'/') {
                self.finding(MsgId::FullPathname, || format!("entry {:?} holds a '/'", shown()))?;
            }
            if name == b"." {
                self.finding(MsgId::HasDot, || "an entry is named '.'".into())?;
            }
            if name == b".." {
                self.finding(MsgId::HasDotdot, || "an entry is named '..'".into())?;
            }
            if is_dot_git(name) {
                self.finding(MsgId::HasDotgit, || format!("entry {:?} names a .git directory", shown()))?;
            }
            if entry.id.is_null() {
                self.finding(MsgId::NullSha1, || format!("entry {:?} points at the null id", shown()))?;
            }
            match entry.mode {
                b"100644" | b"100755" | b"120000" | b"40000" | b"160000" => {}
                mode if mode.first() == Some(&b'0') => {
                    self.finding(MsgId::ZeroPaddedFilemode, || {
                        format!("entry {:?} has zero-padded mode {:?}", shown(), String::from_utf8_lossy(mode))
                    })?;
                }
                mode => {
                    self.finding(MsgId::BadFilemode, || {
                        format!("entry {:?} has mode {:?}", shown(), String::from_utf8_lossy(mode))
                    })?;
                }
            }
            if is_gitmodules(name) {
                if entry.mode == b"120000" {
                    self.finding(MsgId::GitmodulesSymlink, || ".gitmodules is a symbolic link".into())?;
                } else if entry.kind() == TreeEntryKind::Blob {
                    gitmodules = Some(entry.id);
                }
            }
            let is_tree = entry.kind() == TreeEntryKind::Tree;
            if let Some((prev, prev_is_tree)) = previous {
                if prev == name {
                    self.finding(MsgId::DuplicateEntries, || format!("entry {:?} appears twice", shown()))?;
                } else if gix_object::tree::name_order(prev, prev_is_tree, name, is_tree) != std::cmp::Ordering::Less {
                    // A file and a directory of one name sort apart but
                    // still collide in a checkout.
                    let id = if gix_object::tree::name_order(prev, prev_is_tree, name, is_tree)
                        == std::cmp::Ordering::Equal
                    {
                        MsgId::DuplicateEntries
                    } else {
                        MsgId::TreeNotSorted
                    };
                    self.finding(id, || format!("entries are not in git's order at {:?}", shown()))?;
                }
            }
            previous = Some((name, is_tree));
            entries.push((entry.id, entry.kind()));
        }
        Ok(Parsed::Tree { entries, gitmodules })
    }

    fn commit(&mut self, data: &[u8]) -> Result<Parsed, Error> {
        let header = self.headers(data)?;
        let mut lines = header_lines(header).peekable();
        let tree = match lines.next() {
            Some((b"tree", value)) => {
                hex_id(value).ok_or_else(|| Error { id: MsgId::BadTreeSha1, detail: "invalid tree id".into() })?
            }
            _ => return Err(Error { id: MsgId::MissingTree, detail: "no tree line".into() }),
        };
        let mut parents = Vec::new();
        while let Some((b"parent", value)) = lines.peek() {
            parents.push(
                hex_id(value).ok_or_else(|| Error { id: MsgId::BadParentSha1, detail: "invalid parent id".into() })?,
            );
            lines.next();
        }
        let mut n_authors = 0;
        while let Some((b"author", value)) = lines.peek() {
            n_authors += 1;
            self.ident(value)?;
            lines.next();
        }
        match n_authors {
            0 => self.finding(MsgId::MissingAuthor, || "no author line".into())?,
            1 => {}
            _ => self.finding(MsgId::MultipleAuthors, || "more than one author line".into())?,
        }
        let mut time = 0;
        match lines.next() {
            Some((b"committer", value)) => time = self.ident(value)?.unwrap_or(0),
            _ => self.finding(MsgId::MissingCommitter, || "no committer line".into())?,
        }
        if data.len() > header.len() && data[header.len()..].contains(&0) {
            self.finding(MsgId::NulInCommit, || "the message holds a NUL byte".into())?;
        }
        Ok(Parsed::Commit { tree, parents, time })
    }

    fn tag(&mut self, data: &[u8]) -> Result<Parsed, Error> {
        let header = self.headers(data)?;
        let mut lines = header_lines(header);
        let target = match lines.next() {
            Some((b"object", value)) => {
                hex_id(value).ok_or_else(|| Error { id: MsgId::BadObjectSha1, detail: "invalid object id".into() })?
            }
            _ => return Err(Error { id: MsgId::MissingObject, detail: "no object line".into() }),
        };
        let target_kind = match lines.next() {
            Some((b"type", value)) => Kind::from_bytes(value)
                .map_err(|_| Error { id: MsgId::BadType, detail: format!("invalid type {:?}", lossy(value)) })?,
            _ => return Err(Error { id: MsgId::MissingTypeEntry, detail: "no type line".into() }),
        };
        match lines.next() {
            Some((b"tag", name)) => {
                let full = [b"refs/tags/".as_slice(), name].concat();
                if gix_validate::reference::name(full.as_slice().into()).is_err() {
                    self.finding(MsgId::BadTagName, || format!("invalid tag name {:?}", lossy(name)))?;
                }
            }
            _ => self.finding(MsgId::MissingTagEntry, || "no tag line".into())?,
        }
        let mut rest = lines.peekable();
        match rest.peek() {
            Some((b"tagger", value)) => {
                self.ident(value)?;
                rest.next();
            }
            _ => self.finding(MsgId::MissingTaggerEntry, || "no tagger line".into())?,
        }
        if rest.next().is_some() {
            self.finding(MsgId::ExtraHeaderEntry, || "unexpected header after the tagger".into())?;
        }
        Ok(Parsed::Tag { target, target_kind })
    }

    /// The header of a commit or tag (up to, not including, the blank line).
    fn headers<'d>(&mut self, data: &'d [u8]) -> Result<&'d [u8], Error> {
        let end = match memmem(data, b"\n\n") {
            Some(i) => i + 1,
            None if data.ends_with(b"\n") => data.len(),
            None => {
                return Err(Error { id: MsgId::UnterminatedHeader, detail: "the header does not end".into() });
            }
        };
        if data[..end].contains(&0) {
            return Err(Error { id: MsgId::NulInHeader, detail: "the header holds a NUL byte".into() });
        }
        Ok(&data[..end])
    }

    /// Checks `Name <email> seconds +zone` as C git's fsck does; returns the
    /// time when it could be read.
    fn ident(&mut self, line: &[u8]) -> Result<Option<i64>, Error> {
        let shown = || lossy(line);
        if line.first() == Some(&b'<') {
            self.finding(MsgId::MissingNameBeforeEmail, || format!("no name before the email in {:?}", shown()))?;
            return Ok(None);
        }
        let Some(open) = line.iter().position(|b| *b == b'<' || *b == b'>') else {
            self.finding(MsgId::MissingEmail, || format!("no email in {:?}", shown()))?;
            return Ok(None);
        };
        if line[open] == b'>' {
            self.finding(MsgId::BadName, || format!("bad name in {:?}", shown()))?;
            return Ok(None);
        }
        if open == 0 || line[open - 1] != b' ' {
            self.finding(MsgId::MissingSpaceBeforeEmail, || format!("no space before the email in {:?}", shown()))?;
            return Ok(None);
        }
        let after_open = &line[open + 1..];
        let Some(close) = after_open.iter().position(|b| *b == b'<' || *b == b'>') else {
            self.finding(MsgId::BadEmail, || format!("bad email in {:?}", shown()))?;
            return Ok(None);
        };
        if after_open[close] != b'>' {
            self.finding(MsgId::BadEmail, || format!("bad email in {:?}", shown()))?;
            return Ok(None);
        }
        let rest = &after_open[close + 1..];
        let Some(date_and_zone) = rest.strip_prefix(b" ") else {
            self.finding(MsgId::MissingSpaceBeforeDate, || format!("no space before the date in {:?}", shown()))?;
            return Ok(None);
        };
        let digits = date_and_zone.iter().take_while(|b| b.is_ascii_digit()).count();
        let (date, after_date) = date_and_zone.split_at(digits);
        if date.len() > 1 && date[0] == b'0' {
            self.finding(MsgId::ZeroPaddedDate, || format!("zero-padded date in {:?}", shown()))?;
            return Ok(None);
        }
        let seconds = std::str::from_utf8(date).ok().and_then(|d| d.parse::<u64>().ok());
        let Some(seconds) = seconds else {
            if date.is_empty() {
                self.finding(MsgId::BadDate, || format!("bad date in {:?}", shown()))?;
            } else {
                self.finding(MsgId::BadDateOverflow, || format!("date overflows in {:?}", shown()))?;
            }
            return Ok(None);
        };
        if seconds > (i64::MAX as u64) {
            self.finding(MsgId::BadDateOverflow, || format!("date overflows in {:?}", shown()))?;
            return Ok(None);
        }
        let Some(zone) = after_date.strip_prefix(b" ") else {
            self.finding(MsgId::BadDate, || format!("bad date in {:?}", shown()))?;
            return Ok(Some(seconds as i64));
        };
        let zone_ok = zone.len() == 5 && matches!(zone[0], b'+' | b'-') && zone[1..].iter().all(u8::is_ascii_digit);
        if !zone_ok {
            self.finding(MsgId::BadTimezone, || format!("bad time zone in {:?}", shown()))?;
        }
        Ok(Some(seconds as i64))
    }
}

/// Checks one object under tessera's default policy; what it accepts with
/// findings is not reported. For callers that check objects tessera wrote.
pub fn check(kind: Kind, data: &[u8]) -> Result<Parsed, Error> {
    Checker::new(&Policy::default()).check(kind, data)
}

/// `key value` header lines; continuation lines (a leading space, as in
/// `gpgsig` or `mergetag`) belong to the line before and are skipped.
fn header_lines(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l[0] != b' ').map(|line| {
        match line.iter().position(|b| *b == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &[][..]),
        }
    })
}

fn hex_id(value: &[u8]) -> Option<ObjectId> {
    if value.len() != 40 || !value.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    ObjectId::from_hex(value).ok()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn memmem(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a checkout on some file system would take `name` for `base`
/// (lowercase ASCII): the same in any case, with HFS+'s ignorable code
/// points removed, and NTFS's trailing dots and spaces stripped. Runs for
/// every tree entry of every push, so it allocates nothing.
fn folds_to(name: &[u8], base: &[u8]) -> bool {
    const HFS_IGNORABLE: &[char] = &[
        '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
        '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}', '\u{206f}', '\u{feff}',
    ];
    if name.is_ascii() {
        // The common case: no ignorable code point can be present.
        let trimmed = name.len() - name.iter().rev().take_while(|b| matches!(b, b'.' | b' ')).count();
        return name[..trimmed].eq_ignore_ascii_case(base);
    }
    // Invalid UTF-8 can never spell `base` (git would see other bytes too).
    let Ok(text) = std::str::from_utf8(name) else { return false };
    let mut chars = text.chars().filter(|c| !HFS_IGNORABLE.contains(c));
    for expected in base {
        match chars.next() {
            Some(c) if c.is_ascii() && (c as u8).eq_ignore_ascii_case(expected) => {}
            _ => return false,
        }
    }
    chars.all(|c| c == '.' || c == ' ')
}

/// `.git` in any form a checkout could turn into the repository directory,
/// including NTFS's short name.
pub fn is_dot_git(name: &[u8]) -> bool {
    may_fold_to_git_name(name) && (folds_to(name, b".git") || folds_to(name, b"git~1"))
}

/// Whether `name` could fold to `.git`, `.gitmodules` or their short
/// names at all: it starts with `.`, `g`, `G` or a non-ASCII byte (an
/// ignorable code point). Most names do not, and skip the folding.
fn may_fold_to_git_name(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'.' | b'g' | b'G' | 0x80..=0xff))
}

/// `.gitmodules` in any form, including NTFS's short names.
fn is_gitmodules(name: &[u8]) -> bool {
    may_fold_to_git_name(name)
        && (folds_to(name, b".gitmodules") || folds_to(name, b"gitmod~1") || folds_to(name, b"gi7eba~1"))
}

/// Largest `.gitmodules` blob that is checked; a larger one is refused.
pub const MAX_GITMODULES_BYTES: usize = 1 << 20;

/// Checks a `.gitmodules` blob's size, before reading it: one over
/// [`MAX_GITMODULES_BYTES`] is a `gitmodulesLarge` finding.
pub fn check_gitmodules_size(checker: &mut Checker<'_>, size: u64) -> Result<(), Error> {
    if size > MAX_GITMODULES_BYTES as u64 {
        return checker.finding(MsgId::GitmodulesLarge, || format!(".gitmodules is {size} bytes"));
    }
    Ok(())
}

/// Checks the content of a `.gitmodules` blob the way C git does for the
/// settings that have run commands on clients: submodule names that climb
/// out of `.git/modules` (`..`), URLs and paths that a client would take as
/// an option (leading `-`), and `update = !command`.
pub fn check_gitmodules(checker: &mut Checker<'_>, data: &[u8]) -> Result<(), Error> {
    if data.len() > MAX_GITMODULES_BYTES {
        return check_gitmodules_size(checker, data.len() as u64);
    }
    let text = String::from_utf8_lossy(data);
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let section = section.split(']').next().unwrap_or_default();
            if let Some((kind, name)) = section.split_once(|c: char| c.is_whitespace()) {
                if kind.trim().eq_ignore_ascii_case("submodule") {
                    let name = name.trim().trim_matches('"');
                    if name.split(['/', '\\']).any(|part| part == "..") || name.starts_with('/') {
                        checker.finding(MsgId::GitmodulesName, || format!("submodule name {name:?} is not safe"))?;
                    }
                }
            } else if let Some((kind, name)) = section.split_once('.') {
                // The old `[submodule.name]` spelling.
                if kind.eq_ignore_ascii_case("submodule") && name.split(['/', '\\']).any(|part| part == "..") {
                    checker.finding(MsgId::GitmodulesName, || format!("submodule name {name:?} is not safe"))?;
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"');
        match key.as_str() {
            "url" if value.starts_with('-') || value.contains("\n-") => {
                checker.finding(MsgId::GitmodulesUrl, || format!("submodule url {value:?} looks like an option"))?
            }
            "path" if value.starts_with('-') => {
                checker.finding(MsgId::GitmodulesPath, || format!("submodule path {value:?} looks like an option"))?
            }
            "update" if value.starts_with('!') => {
                checker.finding(MsgId::GitmodulesUpdate, || format!("submodule update {value:?} runs a command"))?
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (mode, name) in entries {
            out.extend_from_slice(mode.as_bytes());
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(&[0x11; 20]);
        }
        out
    }

    /// `expected`: `Ok(accepted findings)` or `Err(the refusing id)`.
    /// `expected`: `Ok(the accepted findings)` or `Err(the refusing id)`.
    fn check_case(kind: Kind, data: &[u8], expected: Result<&[MsgId], MsgId>) {
        let policy = Policy::default();
        let mut checker = Checker::new(&policy);
        let got = checker.check(kind, data).map(|_| ()).map_err(|e| e.id);
        let shown = String::from_utf8_lossy(data);
        match expected {
            Ok(findings) => {
                assert_eq!(got, Ok(()), "{shown:?}");
                let counted: Vec<MsgId> = checker.report.counts.keys().copied().collect();
                assert_eq!(counted, findings, "{shown:?}");
            }
            Err(id) => assert_eq!(got, Err(id), "{shown:?}"),
        }
    }

    fn check_tree_case(entries: &[(&str, &[u8])], expected: Result<&[MsgId], MsgId>) {
        check_case(Kind::Tree, &tree(entries), expected);
    }

    #[test]
    fn tree_rules() {
        check_tree_case(&[("100644", b"a"), ("40000", b"b")], Ok(&[]));
        // A directory sorts as "name/": "a-" < "a/" but the file "a" sorts before "a-".
        check_tree_case(&[("100644", b"a-"), ("40000", b"a")], Ok(&[]));
        check_tree_case(&[("40000", b"a"), ("100644", b"a-")], Err(MsgId::TreeNotSorted));
        check_tree_case(&[("100644", b"")], Err(MsgId::EmptyName));
        check_tree_case(&[("100644", b"..")], Err(MsgId::HasDotdot));
        check_tree_case(&[("100644", b".")], Err(MsgId::HasDot));
        check_tree_case(&[("40000", b".GIT")], Err(MsgId::HasDotgit));
        check_tree_case(&[("40000", b".git. .")], Err(MsgId::HasDotgit));
        check_tree_case(&[("40000", "\u{200c}.gi\u{200d}t".as_bytes())], Err(MsgId::HasDotgit));
        check_tree_case(&[("40000", b"GIT~1")], Err(MsgId::HasDotgit));
        check_tree_case(&[("40000", b".github")], Ok(&[]));
        check_tree_case(&[("100644", b"a/b")], Err(MsgId::FullPathname));
        check_tree_case(&[("100664", b"a")], Ok(&[MsgId::BadFilemode]));
        check_tree_case(&[("100600", b"a"), ("040000", b"b")], Ok(&[MsgId::BadFilemode, MsgId::ZeroPaddedFilemode]));
        check_tree_case(&[("100644", b"b"), ("100644", b"a")], Err(MsgId::TreeNotSorted));
        check_tree_case(&[("100644", b"a"), ("100644", b"a")], Err(MsgId::DuplicateEntries));
        check_tree_case(&[("100644", b"a"), ("40000", b"a")], Err(MsgId::DuplicateEntries));
        check_tree_case(&[("120000", b".gitmodules")], Err(MsgId::GitmodulesSymlink));
        let policy = Policy::default();
        assert_eq!(
            Checker::new(&policy).check(Kind::Tree, b"100644 a\0short").map_err(|e| e.id).err(),
            Some(MsgId::BadTree)
        );
        assert_eq!(mode_kind(b"040000"), TreeEntryKind::Tree);
        assert_eq!(mode_kind(b"100664"), TreeEntryKind::Blob);
        assert_eq!(mode_kind(b"0160000"), TreeEntryKind::Gitlink);
    }

    #[test]
    fn operators_change_severities() {
        let mut policy = Policy::default();
        policy.set("hasDotgit", "warn").unwrap();
        policy.set("badfilemode", "error").unwrap();
        policy.set("missingTree", "ignore").unwrap();
        assert_eq!(policy.set("noSuchId", "warn"), Err(PolicyError::UnknownId("noSuchId".into())));
        assert_eq!(policy.set("badDate", "loud"), Err(PolicyError::UnknownSeverity("loud".into())));
        assert_eq!(policy.severity(MsgId::HasDotgit), Severity::Warn);
        assert_eq!(policy.severity(MsgId::BadFilemode), Severity::Error);
        // What makes an object's structure unknown stays an error.
        assert_eq!(policy.severity(MsgId::MissingTree), Severity::Error);
        let mut checker = Checker::new(&policy);
        assert!(checker.check(Kind::Tree, &tree(&[("40000", b".git")])).is_ok());
        assert_eq!(checker.report.summary(), "hasDotgit: 1");
        let err = checker.check(Kind::Tree, &tree(&[("100664", b"a")])).unwrap_err();
        assert_eq!(err.id, MsgId::BadFilemode);
    }

    fn check_commit_case(text: &str, expected: Result<&[MsgId], MsgId>) {
        check_case(Kind::Commit, text.as_bytes(), expected);
    }

    #[test]
    fn commit_rules() {
        const T: &str = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n";
        let good = format!("{T}author A <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\nmsg\n");
        match check(Kind::Commit, good.as_bytes()).unwrap() {
            Parsed::Commit { time, parents, .. } => assert_eq!((time, parents.len()), (2, 0)),
            other => panic!("{other:?}"),
        }
        check_commit_case(&good, Ok(&[]));
        check_commit_case("tree zz", Err(MsgId::UnterminatedHeader));
        check_commit_case("tree zz\n\nmsg\n", Err(MsgId::BadTreeSha1));
        check_commit_case("not a commit\n\n", Err(MsgId::MissingTree));
        check_commit_case(
            &format!("{T}parent 12\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Err(MsgId::BadParentSha1),
        );
        check_commit_case(&format!("{T}committer A <a@x> 2 +0000\n\n"), Err(MsgId::MissingAuthor));
        check_commit_case(
            &format!("{T}author A <a@x> 1 +0000\nauthor B <b@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Err(MsgId::MultipleAuthors),
        );
        check_commit_case(&format!("{T}author A <a@x> 1 +0000\n\n"), Err(MsgId::MissingCommitter));
        check_commit_case(
            &format!("{T}author <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Err(MsgId::MissingNameBeforeEmail),
        );
        check_commit_case(&format!("{T}author A a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\n"), Err(MsgId::BadName));
        check_commit_case(&format!("{T}author A 1 +0000\ncommitter A <a@x> 2 +0000\n\n"), Err(MsgId::MissingEmail));
        check_commit_case(
            &format!("{T}author A<a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Err(MsgId::MissingSpaceBeforeEmail),
        );
        check_commit_case(&format!("{T}author A <a@x 1 +0000\ncommitter A <a@x> 2 +0000\n\n"), Err(MsgId::BadEmail));
        // Old histories' dates are accepted and counted.
        check_commit_case(
            &format!("{T}author A <a@x>1 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Ok(&[MsgId::MissingSpaceBeforeDate]),
        );
        check_commit_case(
            &format!("{T}author A <a@x> 01 +0000\ncommitter A <a@x> 2 +0000\n\n"),
            Ok(&[MsgId::ZeroPaddedDate]),
        );
        check_commit_case(
            &format!("{T}author A <a@x> 1 +0000\ncommitter A <a@x> 2 +051800\n\n"),
            Ok(&[MsgId::BadTimezone]),
        );
        check_commit_case(
            &format!("{T}author A <a@x> x +0000\ncommitter A <a@x> 99999999999999999999999 +0000\n\n"),
            Ok(&[MsgId::BadDate, MsgId::BadDateOverflow]),
        );
        check_commit_case(
            &format!("{T}author A <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\n\nm\0sg\n"),
            Ok(&[MsgId::NulInCommit]),
        );
        check_commit_case(
            &format!("{T}author A <a@x> 1 +0000\0\ncommitter A <a@x> 2 +0000\n\n"),
            Err(MsgId::NulInHeader),
        );
        // Signatures and merge tags continue on lines that start with a space.
        check_commit_case(
            &format!(
                "{T}author A <a@x> 1 +0000\ncommitter A <a@x> 2 +0000\ngpgsig -----BEGIN\n abc\n -----END\n\nmsg\n"
            ),
            Ok(&[]),
        );
    }

    #[test]
    fn tag_rules() {
        const O: &str = "object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n";
        let policy = Policy::default();
        let run = |text: &str| {
            let mut checker = Checker::new(&policy);
            let got = checker.check(Kind::Tag, text.as_bytes()).map(|_| ()).map_err(|e| e.id);
            (got, checker.report.counts.keys().copied().collect::<Vec<_>>())
        };
        assert_eq!(run(&format!("{O}type tree\ntag v1\ntagger A <a@x> 1 +0000\n\nmsg\n")), (Ok(()), vec![]));
        assert_eq!(run(&format!("{O}type tree\ntag v1\n\nmsg\n")), (Ok(()), vec![MsgId::MissingTaggerEntry]));
        assert_eq!(
            run(&format!("{O}type tree\ntag v..1\ntagger A <a@x> 1 +0000\n\n")),
            (Ok(()), vec![MsgId::BadTagName])
        );
        assert_eq!(run(&format!("{O}type nothing\ntag v1\n\n")).0, Err(MsgId::BadType));
        assert_eq!(run(&format!("{O}tag v1\n\n")).0, Err(MsgId::MissingTypeEntry));
        assert_eq!(run("type tree\ntag v1\n\n").0, Err(MsgId::MissingObject));
        assert_eq!(run(&format!("{O}type tree\n\n")).0, Err(MsgId::MissingTagEntry));
    }

    #[test]
    fn gitmodules_rules() {
        let policy = Policy::default();
        let run = |text: &str| check_gitmodules(&mut Checker::new(&policy), text.as_bytes()).map_err(|e| e.id);
        assert_eq!(run("[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.com/lib.git\n"), Ok(()));
        assert_eq!(run("[submodule \"../../hooks\"]\n\tpath = a\n"), Err(MsgId::GitmodulesName));
        assert_eq!(run("[submodule \"a\"]\n\turl = --upload-pack=touch /tmp/x\n"), Err(MsgId::GitmodulesUrl));
        assert_eq!(run("[submodule \"a\"]\n\tpath = -x\n"), Err(MsgId::GitmodulesPath));
        assert_eq!(run("[submodule \"a\"]\n\tupdate = !rm -rf /\n"), Err(MsgId::GitmodulesUpdate));
        assert_eq!(
            check_gitmodules(&mut Checker::new(&policy), &vec![b'#'; MAX_GITMODULES_BYTES + 1]).map_err(|e| e.id),
            Err(MsgId::GitmodulesLarge)
        );
    }
}
