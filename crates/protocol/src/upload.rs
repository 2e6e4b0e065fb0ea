//! upload-pack: parsing fetch requests (protocol v0/v1 and v2), negotiation,
//! shallow boundaries, object enumeration with filters, and the pack stream.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io::Write;

use tessera_pack::entry::Header;
use tessera_pack::{Kind, ObjectId};
use tessera_pktline::{self as pkt, Channel, Packet};
use tessera_store::Ref;

use crate::fsck::{tree_entries, TreeEntryKind};
use crate::odb::{self, Odb};

/// Why a fetch request was refused; the server sends it as an `ERR` line.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("malformed pkt-line: {0}")]
    Packet(#[from] pkt::DecodeError),
    #[error("unexpected line {0:?}")]
    Unexpected(String),
    #[error("invalid object id in {0:?}")]
    BadId(String),
    #[error("unsupported filter {0:?}")]
    BadFilter(String),
    #[error("not our ref {0}")]
    NotOurs(ObjectId),
    #[error("fetch request has no wants")]
    NoWants,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

/// A partial-clone filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    BlobNone,
    BlobLimit(u64),
    /// Omit trees and blobs at this depth or deeper (root tree is depth 0).
    TreeDepth(u64),
}

impl Filter {
    pub fn parse(spec: &str) -> Result<Filter, RequestError> {
        let bad = || RequestError::BadFilter(spec.to_string());
        if spec == "blob:none" {
            return Ok(Filter::BlobNone);
        }
        if let Some(limit) = spec.strip_prefix("blob:limit=") {
            return parse_size(limit).map(Filter::BlobLimit).ok_or_else(bad);
        }
        if let Some(depth) = spec.strip_prefix("tree:") {
            return depth.parse().map(Filter::TreeDepth).map_err(|_| bad());
        }
        Err(bad())
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1024),
        'm' | 'M' => (&s[..s.len() - 1], 1024 * 1024),
        'g' | 'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// How the client asked to limit history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deepen {
    pub depth: Option<u32>,
    pub since: Option<i64>,
    pub not: Vec<String>,
    pub relative: bool,
}

impl Deepen {
    fn requested(&self) -> bool {
        self.depth.is_some() || self.since.is_some() || !self.not.is_empty()
    }
}

/// A parsed fetch request, either protocol version.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    pub wants: Vec<ObjectId>,
    pub want_refs: Vec<String>,
    pub haves: Vec<ObjectId>,
    pub done: bool,
    pub shallows: Vec<ObjectId>,
    pub deepen: Deepen,
    pub filter: Option<Filter>,
    pub caps: HashSet<String>,
    pub v2: bool,
    /// v0 only: the body goes past the want section (haves, a flush or
    /// `done`). A stateless client sends the want section alone first to
    /// learn the shallow boundary, and expects nothing else back.
    pub negotiates: bool,
}

impl FetchRequest {
    fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }
    fn sideband(&self) -> bool {
        self.v2 || self.has("side-band-64k") || self.has("side-band")
    }
    fn max_sideband(&self) -> usize {
        if self.v2 || self.has("side-band-64k") {
            pkt::MAX_SIDEBAND_DATA_LEN
        } else {
            999
        }
    }
    fn ofs(&self) -> bool {
        self.v2 || self.has("ofs-delta")
    }
    fn progress(&self) -> bool {
        !self.has("no-progress")
    }
}

fn oid(s: &str, line: &str) -> Result<ObjectId, RequestError> {
    ObjectId::from_hex(s.as_bytes()).map_err(|_| RequestError::BadId(line.to_string()))
}

fn text(line: &[u8]) -> Result<&str, RequestError> {
    std::str::from_utf8(line).map_err(|_| RequestError::Unexpected(String::from_utf8_lossy(line).into_owned()))
}

/// Applies one argument line shared by both protocol versions.
fn common_arg(req: &mut FetchRequest, line: &str) -> Result<bool, RequestError> {
    if let Some(rest) = line.strip_prefix("have ") {
        req.haves.push(oid(rest.trim(), line)?);
    } else if let Some(rest) = line.strip_prefix("shallow ") {
        req.shallows.push(oid(rest.trim(), line)?);
    } else if let Some(rest) = line.strip_prefix("deepen-since ") {
        req.deepen.since = Some(rest.trim().parse().map_err(|_| RequestError::Unexpected(line.into()))?);
    } else if let Some(rest) = line.strip_prefix("deepen-not ") {
        req.deepen.not.push(rest.trim().to_string());
    } else if line == "deepen-relative" {
        req.deepen.relative = true;
    } else if let Some(rest) = line.strip_prefix("deepen ") {
        let depth: u32 = rest.trim().parse().map_err(|_| RequestError::Unexpected(line.into()))?;
        req.deepen.depth = Some(depth);
    } else if let Some(rest) = line.strip_prefix("filter ") {
        req.filter = Some(Filter::parse(rest.trim())?);
    } else if line == "done" {
        req.done = true;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Parses a protocol v0/v1 upload-pack request body (stateless RPC).
pub fn parse_v0(body: &[u8]) -> Result<FetchRequest, RequestError> {
    let mut req = FetchRequest::default();
    let mut parser = pkt::Parser::new(body);
    let mut first_want = true;
    let mut n_flush = 0;
    while let Some(packet) = parser.next_packet()? {
        if n_flush > 0 {
            req.negotiates = true;
        }
        let Packet::Data(_) = packet else {
            n_flush += 1;
            continue;
        };
        let line = text(packet.line().unwrap_or_default())?;
        if let Some(rest) = line.strip_prefix("want ") {
            let mut parts = rest.split(' ');
            let id = oid(parts.next().unwrap_or_default(), line)?;
            if first_want {
                req.caps.extend(parts.filter(|c| !c.is_empty()).map(|c| c.to_string()));
                // In v0 relative deepening is a capability of the want line.
                req.deepen.relative |= req.caps.contains("deepen-relative");
                first_want = false;
            }
            req.wants.push(id);
        } else if !common_arg(&mut req, line)? {
            return Err(RequestError::Unexpected(line.to_string()));
        }
    }
    Ok(req)
}

/// Parses a protocol v2 `command=fetch` request's arguments.
pub fn parse_v2_fetch(args: &[&str]) -> Result<FetchRequest, RequestError> {
    let mut req = FetchRequest { v2: true, ..Default::default() };
    for line in args {
        let line = line.trim_end_matches('\n');
        if let Some(rest) = line.strip_prefix("want ") {
            req.wants.push(oid(rest.trim(), line)?);
        } else if let Some(rest) = line.strip_prefix("want-ref ") {
            req.want_refs.push(rest.trim().to_string());
        } else if common_arg(&mut req, line)? {
        } else if matches!(
            line,
            "thin-pack" | "no-progress" | "include-tag" | "ofs-delta" | "sideband-all" | "wait-for-done"
        ) {
            req.caps.insert(line.to_string());
        } else if line.starts_with("packfile-uris ") {
            // We offer no packfile URIs; the client falls back to the pack.
        } else {
            return Err(RequestError::Unexpected(line.to_string()));
        }
    }
    Ok(req)
}

/// The result of negotiation for one request.
struct Negotiation {
    common: Vec<ObjectId>,
    ready: bool,
}

/// Commits the client has, and walks over our commit graph.
struct Graph<'a> {
    odb: &'a Odb,
}

#[derive(PartialEq, Eq)]
struct ByGeneration(i64, ObjectId);
impl Ord for ByGeneration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0).then_with(|| self.1.cmp(&other.1))
    }
}
impl PartialOrd for ByGeneration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Graph<'_> {
    fn generation(&self, id: &ObjectId) -> i64 {
        self.odb.index.commits.get(id).map(|c| c.generation).unwrap_or(0)
    }

    fn parents(&self, id: &ObjectId) -> &[ObjectId] {
        self.odb.index.commits.get(id).map(|c| c.parents).unwrap_or(&[])
    }

    /// True when every want reaches some common commit, so the client can
    /// stop sending haves. Walks only commits newer than the oldest common one.
    fn all_wants_reach(&self, wants: &[ObjectId], common: &HashSet<ObjectId>) -> bool {
        if common.is_empty() {
            return false;
        }
        let min_gen = common.iter().map(|c| self.generation(c)).min().unwrap_or(0);
        wants.iter().filter(|w| self.odb.index.commits.contains_key(w)).all(|want| {
            let mut seen = HashSet::new();
            let mut queue = vec![*want];
            while let Some(c) = queue.pop() {
                if common.contains(&c) {
                    return true;
                }
                if !seen.insert(c) || self.generation(&c) < min_gen {
                    continue;
                }
                queue.extend_from_slice(self.parents(&c));
            }
            false
        })
    }

    /// Commits reachable from `tips` that are not reachable from `has`,
    /// not entering the parents of `stop_at` (shallow boundaries). Walks in
    /// generation order and stops once only uninteresting commits remain.
    fn commits_to_send(
        &self,
        tips: &[ObjectId],
        has: &[ObjectId],
        stop_at: &HashSet<ObjectId>,
        client_shallow: &HashSet<ObjectId>,
    ) -> (Vec<ObjectId>, Vec<ObjectId>) {
        let mut state: HashMap<ObjectId, bool> = HashMap::new(); // true = uninteresting
        let mut heap = BinaryHeap::new();
        let mut n_interesting = 0usize;
        for h in has.iter().filter(|h| self.odb.index.commits.contains_key(h)) {
            if state.insert(*h, true).is_none() {
                heap.push(ByGeneration(self.generation(h), *h));
            }
        }
        for t in tips.iter().filter(|t| self.odb.index.commits.contains_key(t)) {
            if !state.contains_key(t) {
                state.insert(*t, false);
                n_interesting += 1;
                heap.push(ByGeneration(self.generation(t), *t));
            }
        }
        let mut send = Vec::new();
        let mut edges = HashSet::new();
        while let Some(ByGeneration(_, c)) = heap.pop() {
            if n_interesting == 0 {
                break;
            }
            let uninteresting = state[&c];
            if !uninteresting {
                n_interesting -= 1;
                send.push(c);
            }
            // A client-shallow commit's parents are not on the client; a
            // shallow boundary's parents are not sent.
            if (uninteresting && client_shallow.contains(&c)) || (!uninteresting && stop_at.contains(&c)) {
                continue;
            }
            for p in self.parents(&c) {
                if !self.odb.index.commits.contains_key(p) {
                    continue;
                }
                match state.get(p).copied() {
                    None => {
                        state.insert(*p, uninteresting);
                        if !uninteresting {
                            n_interesting += 1;
                        }
                        heap.push(ByGeneration(self.generation(p), *p));
                    }
                    Some(false) if uninteresting => {
                        // Became uninteresting after being queued as interesting.
                        state.insert(*p, true);
                        n_interesting -= 1;
                    }
                    _ => {}
                }
                if state[p] && !uninteresting {
                    edges.insert(*p);
                }
            }
        }
        // A commit first sent and later found uninteresting cannot happen:
        // generation order visits every descendant before its ancestors.
        (send, edges.into_iter().collect())
    }
}

/// The commits that become shallow, and client-shallow ones that stop being.
#[derive(Debug, Default)]
struct ShallowPlan {
    boundary: HashSet<ObjectId>,
    shallow: Vec<ObjectId>,
    unshallow: Vec<ObjectId>,
}

fn plan_shallow(graph: &Graph<'_>, req: &FetchRequest, tips: &[ObjectId], refs: &[Ref]) -> ShallowPlan {
    let client_shallow: HashSet<ObjectId> = req.shallows.iter().copied().collect();
    if !req.deepen.requested() {
        // Keep the client's boundary where it is.
        return ShallowPlan { boundary: client_shallow.clone(), ..Default::default() };
    }
    let commits = &graph.odb.index.commits;
    let mut included: HashSet<ObjectId> = HashSet::new();
    let mut boundary: HashSet<ObjectId> = HashSet::new();
    if let Some(depth) = req.deepen.depth {
        // Breadth-first by distance; relative depth counts from the client's
        // current boundary.
        let infinite = depth >= 0x7fff_ffff;
        let mut dist: HashMap<ObjectId, u32> = HashMap::new();
        let mut queue: VecDeque<ObjectId> = VecDeque::new();
        let starts: Vec<ObjectId> = if req.deepen.relative {
            req.shallows.iter().copied().filter(|s| commits.contains_key(s)).collect()
        } else {
            tips.iter().copied().filter(|t| commits.contains_key(t)).collect()
        };
        for s in &starts {
            dist.insert(*s, 1);
            queue.push_back(*s);
        }
        let limit = if req.deepen.relative { depth + 1 } else { depth };
        while let Some(c) = queue.pop_front() {
            let d = dist[&c];
            included.insert(c);
            if !infinite && d >= limit {
                if !graph.parents(&c).is_empty() {
                    boundary.insert(c);
                }
                continue;
            }
            for p in graph.parents(&c) {
                if commits.contains_key(p) && !dist.contains_key(p) {
                    dist.insert(*p, d + 1);
                    queue.push_back(*p);
                }
            }
        }
        if req.deepen.relative {
            // Everything between the tips and the old boundary is included too.
            let mut stack: Vec<ObjectId> = tips.to_vec();
            while let Some(c) = stack.pop() {
                if !commits.contains_key(&c) || !included.insert(c) || client_shallow.contains(&c) {
                    continue;
                }
                stack.extend_from_slice(graph.parents(&c));
            }
        }
    } else {
        let excluded: HashSet<ObjectId> = {
            let mut ex = HashSet::new();
            let not_tips: Vec<ObjectId> = req
                .deepen
                .not
                .iter()
                .filter_map(|name| {
                    refs.iter()
                        .find(|r| {
                            &r.name == name
                                || r.name == format!("refs/heads/{name}")
                                || r.name == format!("refs/tags/{name}")
                        })
                        .map(|r| r.peeled.unwrap_or(r.target))
                })
                .collect();
            let mut stack = not_tips;
            while let Some(c) = stack.pop() {
                if commits.contains_key(&c) && ex.insert(c) {
                    stack.extend_from_slice(graph.parents(&c));
                }
            }
            ex
        };
        let since = req.deepen.since.unwrap_or(i64::MIN);
        let mut stack: Vec<ObjectId> = tips.to_vec();
        while let Some(c) = stack.pop() {
            let Some(info) = commits.get(&c) else {
                continue;
            };
            if excluded.contains(&c) || info.time < since || !included.insert(c) {
                continue;
            }
            let mut cut = false;
            for p in info.parents {
                let keep = commits.get(p).map(|pi| pi.time >= since && !excluded.contains(p)).unwrap_or(false);
                if keep {
                    stack.push(*p);
                } else {
                    cut = true;
                }
            }
            if cut {
                boundary.insert(c);
            }
        }
    }
    let shallow = boundary.iter().filter(|b| !client_shallow.contains(*b)).copied().collect();
    let unshallow =
        client_shallow.iter().filter(|s| included.contains(*s) && !boundary.contains(*s)).copied().collect();
    ShallowPlan { boundary, shallow, unshallow }
}

/// Everything upload-pack needs to answer one request.
pub struct Upload<'a> {
    pub odb: &'a Odb,
    pub refs: &'a [Ref],
    /// Objects larger than this in total refuse the fetch (clone threshold).
    pub max_pack_objects: Option<u64>,
}

/// Output of [`Upload::respond`] goes to a sink in chunks.
pub type Sink<'s> = dyn FnMut(Vec<u8>) -> std::io::Result<()> + 's;

/// Frames pack data into side-band packets and forwards them in chunks.
struct SidebandWriter<'s, 'o> {
    sink: &'s mut Sink<'o>,
    buf: Vec<u8>,
    sideband: bool,
    max: usize,
}

impl SidebandWriter<'_, '_> {
    fn progress(&mut self, message: &str) -> std::io::Result<()> {
        if self.sideband {
            self.flush_data()?;
            let mut out = Vec::new();
            pkt::sideband(&mut out, Channel::Progress, message.as_bytes());
            (self.sink)(out)?;
        }
        Ok(())
    }

    fn flush_data(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        if self.sideband {
            let mut out = Vec::with_capacity(data.len() + data.len() / self.max * 5 + 5);
            for piece in data.chunks(self.max) {
                let len = piece.len() + 5;
                out.extend_from_slice(format!("{len:04x}").as_bytes());
                out.push(Channel::Data as u8);
                out.extend_from_slice(piece);
            }
            (self.sink)(out)
        } else {
            (self.sink)(data)
        }
    }
}

impl Write for SidebandWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush_data()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_data()
    }
}

/// Why a fetch failed after the request was accepted.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Object(#[from] odb::Error),
    #[error("writing the response failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pack(#[from] tessera_pack::write::Error),
    #[error("{0}")]
    TooLarge(String),
}

impl Upload<'_> {
    fn negotiate(&self, graph: &Graph<'_>, req: &FetchRequest) -> Negotiation {
        let mut seen = HashSet::new();
        let common: Vec<ObjectId> =
            req.haves.iter().filter(|h| self.odb.contains(h) && seen.insert(**h)).copied().collect();
        let common_commits: HashSet<ObjectId> =
            common.iter().filter(|c| self.odb.index.commits.contains_key(c)).copied().collect();
        let ready = graph.all_wants_reach(&req.wants, &common_commits);
        Negotiation { common, ready }
    }

    /// Checks that every want is an object of this repository.
    pub fn validate(&self, req: &FetchRequest) -> Result<(), RequestError> {
        if req.wants.is_empty() && req.want_refs.is_empty() {
            return Err(RequestError::NoWants);
        }
        for w in &req.wants {
            if !self.odb.contains(w) {
                return Err(RequestError::NotOurs(*w));
            }
        }
        Ok(())
    }

    /// Answers a protocol v0/v1 request (one stateless-RPC round).
    pub fn respond_v0(&self, req: &FetchRequest, sink: &mut Sink<'_>) -> Result<(), ServeError> {
        self.validate(req)?;
        let graph = Graph { odb: self.odb };
        let mut out = Vec::new();
        let plan = plan_shallow(&graph, req, &req.wants, self.refs);
        if req.deepen.requested() {
            write_shallow_lines(&mut out, &plan);
            pkt::write_flush(&mut out);
        }
        if !req.negotiates && !req.done {
            return sink(out).map_err(Into::into);
        }
        let neg = self.negotiate(&graph, req);
        let detailed = req.has("multi_ack_detailed");
        let multi = detailed || req.has("multi_ack");
        if !req.done {
            for c in &neg.common {
                if detailed {
                    pkt::write_line(&mut out, format!("ACK {c} common"));
                } else if multi {
                    pkt::write_line(&mut out, format!("ACK {c} continue"));
                }
            }
            let last = neg.common.last().copied();
            if let (true, true, Some(last)) = (detailed, neg.ready, last) {
                pkt::write_line(&mut out, format!("ACK {last} ready"));
            }
            if neg.common.is_empty() || multi {
                pkt::write_line(&mut out, "NAK");
            }
            match (req.has("no-done") && neg.ready, last) {
                (true, Some(last)) => pkt::write_line(&mut out, format!("ACK {last}")),
                _ => return sink(out).map_err(Into::into),
            }
        } else if let Some(last) = neg.common.last() {
            pkt::write_line(&mut out, format!("ACK {last}"));
        } else {
            pkt::write_line(&mut out, "NAK");
        }
        sink(out)?;
        self.send_pack(&graph, req, &neg.common, &plan, sink)
    }

    /// Answers a protocol v2 `fetch` command.
    pub fn respond_v2(&self, mut req: FetchRequest, sink: &mut Sink<'_>) -> Result<(), ServeError> {
        let mut wanted_refs = Vec::new();
        for name in &req.want_refs {
            let r = self
                .refs
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| RequestError::Unexpected(format!("unknown ref {name}")))?;
            wanted_refs.push((r.target, name.clone()));
        }
        req.wants.extend(wanted_refs.iter().map(|(id, _)| *id));
        self.validate(&req)?;
        let graph = Graph { odb: self.odb };
        let neg = self.negotiate(&graph, &req);
        let mut out = Vec::new();
        if !req.done {
            pkt::write_line(&mut out, "acknowledgments");
            if neg.common.is_empty() {
                pkt::write_line(&mut out, "NAK");
            }
            for c in &neg.common {
                pkt::write_line(&mut out, format!("ACK {c}"));
            }
            if !neg.ready || req.has("wait-for-done") {
                pkt::write_flush(&mut out);
                return sink(out).map_err(Into::into);
            }
            pkt::write_line(&mut out, "ready");
            pkt::write_delim(&mut out);
        }
        let plan = plan_shallow(&graph, &req, &req.wants, self.refs);
        if req.deepen.requested() || !req.shallows.is_empty() {
            pkt::write_line(&mut out, "shallow-info");
            write_shallow_lines(&mut out, &plan);
            pkt::write_delim(&mut out);
        }
        if !wanted_refs.is_empty() {
            pkt::write_line(&mut out, "wanted-refs");
            for (id, name) in &wanted_refs {
                pkt::write_line(&mut out, format!("{id} {name}"));
            }
            pkt::write_delim(&mut out);
        }
        pkt::write_line(&mut out, "packfile");
        sink(out)?;
        self.send_pack(&graph, &req, &neg.common, &plan, sink)
    }

    fn send_pack(
        &self,
        graph: &Graph<'_>,
        req: &FetchRequest,
        common: &[ObjectId],
        plan: &ShallowPlan,
        sink: &mut Sink<'_>,
    ) -> Result<(), ServeError> {
        let mut w = SidebandWriter { sink, buf: Vec::new(), sideband: req.sideband(), max: req.max_sideband() };
        let objects = self.enumerate(graph, req, common, plan)?;
        if let Some(limit) = self.max_pack_objects {
            if objects.len() as u64 > limit {
                return Err(ServeError::TooLarge(format!(
                    "this fetch needs {} objects, over the server's limit of {limit}; clone a sub-directory or use --filter=blob:none",
                    objects.len()
                )));
            }
        }
        if req.progress() {
            w.progress(&format!("Enumerating objects: {}, done.\n", objects.len()))?;
        }
        self.write_pack(req, &objects, &mut w)?;
        w.flush_data()?;
        let mut end = Vec::new();
        pkt::write_flush(&mut end);
        if req.sideband() {
            (w.sink)(end)?;
        }
        Ok(())
    }

    /// The objects to send, in the order their stored entries appear.
    fn enumerate(
        &self,
        graph: &Graph<'_>,
        req: &FetchRequest,
        common: &[ObjectId],
        plan: &ShallowPlan,
    ) -> Result<Vec<ObjectId>, ServeError> {
        let odb = self.odb;
        let client_shallow: HashSet<ObjectId> = req.shallows.iter().copied().collect();
        // Peel wanted tags; wanted trees and blobs are sent as asked.
        let mut tips = Vec::new();
        let mut out: Vec<ObjectId> = Vec::new();
        let mut sent: HashSet<ObjectId> = HashSet::new();
        let mut explicit_trees = Vec::new();
        for want in &req.wants {
            let mut id = *want;
            while let Some(loc) = odb.location(&id) {
                match loc.kind {
                    Kind::Tag => {
                        if sent.insert(id) {
                            out.push(id);
                        }
                        let (_, data) = odb.read(&id)?;
                        match tag_target(&data) {
                            Some(t) => id = t,
                            None => break,
                        }
                    }
                    Kind::Commit => {
                        tips.push(id);
                        break;
                    }
                    Kind::Tree => {
                        explicit_trees.push(id);
                        break;
                    }
                    Kind::Blob => {
                        if sent.insert(id) {
                            out.push(id);
                        }
                        break;
                    }
                }
            }
        }
        // Unshallowed commits' parents must come too, though the client has
        // the commits themselves.
        let mut has: Vec<ObjectId> = common.to_vec();
        let mut walk_tips = tips.clone();
        for u in &plan.unshallow {
            walk_tips.extend_from_slice(graph.parents(u));
        }
        if !plan.unshallow.is_empty() {
            has.retain(|h| !plan.unshallow.contains(h));
        }
        let (commits, edges) = graph.commits_to_send(&walk_tips, &has, &plan.boundary, &client_shallow);
        // Trees and blobs the client already has: everything under the edges.
        let mut known: HashSet<ObjectId> = HashSet::new();
        let mut edge_trees = Vec::new();
        for e in &edges {
            if let Some(info) = odb.index.commits.get(e) {
                edge_trees.push(info.tree);
            }
        }
        for t in edge_trees {
            self.walk_tree(t, 0, None, &mut known, &mut |_| {})?;
        }
        for c in &commits {
            if sent.insert(*c) {
                out.push(*c);
            }
        }
        let filter = req.filter;
        for c in &commits {
            let Some(tree) = odb.index.commits.get(c).map(|i| i.tree) else { continue };
            self.walk_tree(tree, 0, filter, &mut known, &mut |id| {
                if sent.insert(id) {
                    out.push(id);
                }
            })?;
        }
        for t in explicit_trees {
            known.remove(&t);
            self.walk_tree(t, 0, filter, &mut known, &mut |id| {
                if sent.insert(id) {
                    out.push(id);
                }
            })?;
        }
        if req.has("include-tag") {
            for r in self.refs.iter().filter(|r| r.name.starts_with("refs/tags/")) {
                if r.peeled.is_some() && !sent.contains(&r.target) {
                    let points_at_sent = r.peeled.map(|p| sent.contains(&p)).unwrap_or(false);
                    if points_at_sent && odb.contains(&r.target) {
                        // Nested tags: send the whole chain down to the peeled object.
                        let mut id = r.target;
                        while sent.insert(id) {
                            out.push(id);
                            let (kind, data) = odb.read(&id)?;
                            match (kind, tag_target(&data)) {
                                (Kind::Tag, Some(t))
                                    if odb.location(&t).map(|l| l.kind == Kind::Tag).unwrap_or(false) =>
                                {
                                    id = t
                                }
                                _ => break,
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Visits `tree` and what it contains, skipping what is in `known` and
    /// marking what it visits as known. The filter decides what is reported.
    fn walk_tree(
        &self,
        root: ObjectId,
        root_depth: u64,
        filter: Option<Filter>,
        known: &mut HashSet<ObjectId>,
        emit: &mut dyn FnMut(ObjectId),
    ) -> Result<(), ServeError> {
        let mut stack = vec![(root, root_depth)];
        while let Some((tree, depth)) = stack.pop() {
            if let Some(Filter::TreeDepth(max)) = filter {
                if depth >= max {
                    continue;
                }
            }
            if !known.insert(tree) {
                continue;
            }
            emit(tree);
            let (_, data) = self.odb.read(&tree)?;
            for entry in tree_entries(&data) {
                let Ok(entry) = entry else { break };
                match entry.kind() {
                    TreeEntryKind::Tree => stack.push((entry.id, depth + 1)),
                    TreeEntryKind::Gitlink => {}
                    TreeEntryKind::Blob => {
                        let keep = match filter {
                            Some(Filter::BlobNone) => false,
                            Some(Filter::BlobLimit(limit)) => {
                                self.odb.location(&entry.id).map(|l| l.size <= limit).unwrap_or(false)
                            }
                            Some(Filter::TreeDepth(max)) => depth + 1 < max,
                            None => true,
                        };
                        if keep && known.insert(entry.id) {
                            emit(entry.id);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Streams the pack, copying stored entries verbatim and keeping stored
    /// deltas whenever their base is in the pack too.
    fn write_pack(
        &self,
        req: &FetchRequest,
        objects: &[ObjectId],
        w: &mut SidebandWriter<'_, '_>,
    ) -> Result<(), ServeError> {
        let odb = self.odb;
        let mut ordered: Vec<(i64, u64, ObjectId)> = objects
            .iter()
            .map(|id| {
                let loc = odb.location(id).expect("enumerated objects come from the index");
                (loc.pack_id, loc.offset, *id)
            })
            .collect();
        ordered.sort_unstable();
        let in_pack: HashSet<ObjectId> = objects.iter().copied().collect();
        let mut written: HashMap<ObjectId, u64> = HashMap::with_capacity(objects.len());
        let mut writer = tessera_pack::write::Writer::new(&mut *w, objects.len() as u32)?;
        for (_, _, id) in ordered {
            let loc = odb.location(&id).expect("enumerated objects come from the index");
            let raw = odb.raw_entry(&id)?;
            let at = match (raw.header, loc.delta_base) {
                (Header::Whole(_), _) => writer.raw(&raw.header, raw.size, &raw.compressed)?,
                (_, Some(base)) if written.contains_key(&base) && req.ofs() => {
                    writer.raw(&Header::OfsDelta { distance: written[&base] }, raw.size, &raw.compressed)?
                }
                (_, Some(base)) if in_pack.contains(&base) || written.contains_key(&base) => {
                    writer.raw(&Header::RefDelta { base }, raw.size, &raw.compressed)?
                }
                _ => {
                    let (kind, data) = odb.read(&id)?;
                    writer.whole(kind, &data)?
                }
            };
            written.insert(id, at);
        }
        writer.finish()?;
        Ok(())
    }
}

fn write_shallow_lines(out: &mut Vec<u8>, plan: &ShallowPlan) {
    let mut shallow = plan.shallow.clone();
    shallow.sort();
    for s in shallow {
        pkt::write_line(out, format!("shallow {s}"));
    }
    let mut unshallow = plan.unshallow.clone();
    unshallow.sort();
    for u in unshallow {
        pkt::write_line(out, format!("unshallow {u}"));
    }
}

/// The `object` line of a tag.
pub fn tag_target(data: &[u8]) -> Option<ObjectId> {
    let line = data.split(|b| *b == b'\n').next()?;
    let hex = line.strip_prefix(b"object ")?;
    ObjectId::from_hex(hex).ok()
}
