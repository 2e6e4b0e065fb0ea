//! Ref and capability advertisements for both protocol versions.

use tessera_pack::ObjectId;
use tessera_pktline as pkt;
use tessera_store::Ref;

pub const AGENT: &str = concat!("tessera/", env!("CARGO_PKG_VERSION"));

const UPLOAD_CAPS: &str = "multi_ack_detailed multi_ack no-done side-band-64k side-band thin-pack ofs-delta shallow deepen-since deepen-not deepen-relative no-progress include-tag allow-tip-sha1-in-want allow-reachable-sha1-in-want filter object-format=sha1";
const RECEIVE_CAPS: &str =
    "report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta push-options object-format=sha1";

/// Which service an advertisement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
}

/// The v0/v1 advertisement as smart HTTP sends it: the `# service=` banner,
/// then refs with capabilities on the first line, peeled tags after theirs.
pub fn v0(service: Service, refs: &[Ref], head: Option<(&str, ObjectId)>, version_1: bool) -> Vec<u8> {
    let mut out = Vec::new();
    pkt::write_line(&mut out, format!("# service={}", service.name()));
    pkt::write_flush(&mut out);
    out.extend(v0_refs(service, refs, head, version_1));
    out
}

/// The v0/v1 advertisement without the banner, as SSH (and any transport
/// that runs the service directly) sends it.
pub fn v0_refs(service: Service, refs: &[Ref], head: Option<(&str, ObjectId)>, version_1: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if version_1 {
        pkt::write_line(&mut out, "version 1");
    }
    let mut caps = match service {
        Service::UploadPack => UPLOAD_CAPS.to_string(),
        Service::ReceivePack => RECEIVE_CAPS.to_string(),
    };
    if let (Service::UploadPack, Some((target, _))) = (service, head) {
        caps.push_str(&format!(" symref=HEAD:{target}"));
    }
    caps.push_str(&format!(" agent={AGENT}"));
    let mut lines: Vec<(ObjectId, String)> = Vec::new();
    if let (Service::UploadPack, Some((_, id))) = (service, head) {
        lines.push((id, "HEAD".into()));
    }
    for r in refs {
        lines.push((r.target, r.name.clone()));
        if let (Service::UploadPack, Some(peeled)) = (service, r.peeled) {
            lines.push((peeled, format!("{}^{{}}", r.name)));
        }
    }
    if lines.is_empty() {
        let zero = ObjectId::null(gix_hash::Kind::Sha1);
        pkt::write_data(&mut out, format!("{zero} capabilities^{{}}\0{caps}\n").as_bytes()).expect("short line");
    }
    for (i, (id, name)) in lines.iter().enumerate() {
        if i == 0 {
            pkt::write_data(&mut out, format!("{id} {name}\0{caps}\n").as_bytes()).expect("short line");
        } else {
            pkt::write_line(&mut out, format!("{id} {name}"));
        }
    }
    pkt::write_flush(&mut out);
    out
}

/// The v2 capability advertisement.
pub fn v2_capabilities() -> Vec<u8> {
    let mut out = Vec::new();
    pkt::write_line(&mut out, "version 2");
    pkt::write_line(&mut out, format!("agent={AGENT}"));
    pkt::write_line(&mut out, "ls-refs=unborn");
    pkt::write_line(&mut out, "fetch=shallow filter wait-for-done");
    pkt::write_line(&mut out, "server-option");
    pkt::write_line(&mut out, "object-format=sha1");
    pkt::write_flush(&mut out);
    out
}

/// Arguments of an `ls-refs` command.
#[derive(Debug, Default)]
pub struct LsRefs {
    pub symrefs: bool,
    pub peel: bool,
    pub unborn: bool,
    pub prefixes: Vec<String>,
}

impl LsRefs {
    pub fn parse(args: &[&str]) -> LsRefs {
        let mut ls = LsRefs::default();
        for arg in args {
            match arg.trim_end() {
                "symrefs" => ls.symrefs = true,
                "peel" => ls.peel = true,
                "unborn" => ls.unborn = true,
                other => {
                    if let Some(p) = other.strip_prefix("ref-prefix ") {
                        ls.prefixes.push(p.to_string());
                    }
                }
            }
        }
        ls
    }

    fn wanted(&self, name: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The `ls-refs` response. `head` is HEAD's target ref and, when that
    /// ref exists, its id.
    pub fn respond(&self, refs: &[Ref], head: (&str, Option<ObjectId>)) -> Vec<u8> {
        let mut out = Vec::new();
        if self.wanted("HEAD") {
            match head.1 {
                Some(id) => {
                    let mut line = format!("{id} HEAD");
                    if self.symrefs {
                        line.push_str(&format!(" symref-target:{}", head.0));
                    }
                    pkt::write_line(&mut out, line);
                }
                None if self.unborn && self.symrefs => {
                    pkt::write_line(&mut out, format!("unborn HEAD symref-target:{}", head.0));
                }
                None => {}
            }
        }
        for r in refs.iter().filter(|r| self.wanted(&r.name)) {
            let mut line = format!("{} {}", r.target, r.name);
            if let (true, Some(p)) = (self.peel, r.peeled) {
                line.push_str(&format!(" peeled:{p}"));
            }
            pkt::write_line(&mut out, line);
        }
        pkt::write_flush(&mut out);
        out
    }
}
