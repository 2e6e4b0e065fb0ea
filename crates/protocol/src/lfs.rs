//! Git LFS pointer files: the small blobs that stand in for large files
//! (git-lfs's `docs/spec.md`), recognised in pushed packs so the server
//! can check that the objects they name were uploaded.

/// The largest pointer file git-lfs writes or reads.
pub const MAX_POINTER_BYTES: usize = 1024;

/// What a pointer names: a SHA-256 (lowercase hex) and a size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pointer {
    pub oid: String,
    pub size: u64,
}

/// Whether `oid` is a SHA-256 as LFS writes it: 64 lowercase hex digits.
pub fn valid_oid(oid: &str) -> bool {
    oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a pointer file; `None` for anything else (most blobs). Follows
/// the spec: a `version` line first, then keys in order, `oid sha256:...`
/// and `size N` required, `ext-*` lines allowed before them.
pub fn parse_pointer(data: &[u8]) -> Option<Pointer> {
    if data.len() > MAX_POINTER_BYTES || !data.starts_with(b"version ") {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let version = lines.next()?.strip_prefix("version ")?;
    if version != "https://git-lfs.github.com/spec/v1" && version != "https://hawser.github.com/spec/v1" {
        return None;
    }
    let (mut oid, mut size) = (None, None);
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        match key {
            "oid" => oid = Some(value.strip_prefix("sha256:")?.to_string()),
            "size" => {
                if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                size = Some(value.parse().ok()?);
            }
            k if k.starts_with("ext-") => {}
            _ => return None,
        }
    }
    let oid = oid.filter(|o| valid_oid(o))?;
    Some(Pointer { oid, size: size? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    #[test]
    fn pointers_as_git_lfs_writes_them() {
        let text = format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n");
        assert_eq!(parse_pointer(text.as_bytes()), Some(Pointer { oid: OID.into(), size: 12345 }));
        let ext =
            format!("version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{OID}\noid sha256:{OID}\nsize 0\n");
        assert_eq!(parse_pointer(ext.as_bytes()).map(|p| p.size), Some(0));
    }

    #[test]
    fn anything_else_is_not_a_pointer() {
        for bad in [
            "".to_string(),
            "hello\n".to_string(),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 1\n", &OID[1..]),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 1\n", OID.to_uppercase()),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize -1\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 1"),
            format!("version https://example.com/v9\noid sha256:{OID}\nsize 1\n"),
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 99999999999999999999999\n"),
        ] {
            assert_eq!(parse_pointer(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
