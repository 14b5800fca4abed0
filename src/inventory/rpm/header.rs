//! RPM header blobs, as rpm stores them in its database (`headerExport`: no lead, no magic):
//!
//! ```text
//!  il: u32 BE   entries in the index
//!  dl: u32 BE   bytes in the data store
//!  il × { tag: i32 BE, type: u32 BE, offset: i32 BE, count: u32 BE }
//!  dl bytes of data
//! ```
//!
//! Hand-written because no maintained crate decodes a bare database header (the `rpm` crate reads whole
//! package files, with their lead and signature); the format has been stable since rpm 4.0.

/// `RPMTAG_NAME`.
pub const NAME: u32 = 1000;
/// `RPMTAG_VERSION`.
pub const VERSION: u32 = 1001;
/// `RPMTAG_RELEASE`.
pub const RELEASE: u32 = 1002;
/// `RPMTAG_EPOCH`.
pub const EPOCH: u32 = 1003;
/// `RPMTAG_LICENSE`.
pub const LICENSE: u32 = 1014;
/// `RPMTAG_ARCH`.
pub const ARCH: u32 = 1022;
/// `RPMTAG_SOURCERPM`.
pub const SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own limits (`hdrchkTags`, `hdrchkData`): anything larger is not a header.
const MAX_TAGS: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

/// A decoded header: its index entries and data store, borrowed from the blob.
#[derive(Debug)]
pub struct Header<'a> {
    entries: Vec<(u32, u32, usize, u32)>,
    data: &'a [u8],
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Header<'a> {
    /// Checks and indexes a header blob.
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, String> {
        let too_short = || format!("header blob of {} bytes is truncated", blob.len());
        let il = be32(blob, 0).ok_or_else(too_short)? as usize;
        let dl = be32(blob, 4).ok_or_else(too_short)? as usize;
        if il == 0 || il > MAX_TAGS || dl > MAX_DATA {
            return Err(format!("header with {il} tags and {dl} data bytes is not valid"));
        }
        let data_start = 8 + il * 16;
        let data = blob.get(data_start..data_start + dl).ok_or_else(too_short)?;
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = 8 + i * 16;
            let (tag, ty, offset, count) =
                (be32(blob, at), be32(blob, at + 4), be32(blob, at + 8), be32(blob, at + 12));
            let (Some(tag), Some(ty), Some(offset), Some(count)) = (tag, ty, offset, count) else {
                return Err(too_short());
            };
            if offset as usize > dl {
                return Err(format!("tag {tag} points past the data store"));
            }
            entries.push((tag, ty, offset as usize, count));
        }
        Ok(Header { entries, data })
    }

    fn entry(&self, tag: u32) -> Option<&(u32, u32, usize, u32)> {
        self.entries.iter().find(|e| e.0 == tag)
    }

    /// A string tag (the first string of an array or i18n table).
    pub fn string(&self, tag: u32) -> Option<String> {
        let &(_, ty, offset, _) = self.entry(tag)?;
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        let rest = self.data.get(offset..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    /// The first value of an INT32 tag.
    pub fn int32(&self, tag: u32) -> Option<u32> {
        let &(_, ty, offset, count) = self.entry(tag)?;
        (ty == TYPE_INT32 && count > 0).then(|| be32(self.data, offset)).flatten()
    }
}

/// Encodes a header from string and INT32 tags — the inverse of [`Header::parse`] for those types, used to
/// make benchmark fixtures with thousands of packages (real rpm makes the test fixtures).
pub fn encode(strings: &[(u32, &str)], ints: &[(u32, u32)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut tags: Vec<(u32, Option<&str>, Option<u32>)> = strings
        .iter()
        .map(|(t, s)| (*t, Some(*s), None))
        .chain(ints.iter().map(|(t, i)| (*t, None, Some(*i))))
        .collect();
    tags.sort_by_key(|t| t.0);
    for (tag, s, i) in tags {
        let (ty, bytes) = match (s, i) {
            (Some(s), _) => (TYPE_STRING, [s.as_bytes(), b"\0"].concat()),
            (_, Some(i)) => {
                while !data.len().is_multiple_of(4) {
                    data.push(0);
                }
                (TYPE_INT32, i.to_be_bytes().to_vec())
            }
            _ => continue,
        };
        index.extend_from_slice(&tag.to_be_bytes());
        index.extend_from_slice(&ty.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&1u32.to_be_bytes());
        data.extend_from_slice(&bytes);
    }
    let mut out = Vec::with_capacity(8 + index.len() + data.len());
    out.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_blobs() {
        let blob = encode(&[(NAME, "bash"), (VERSION, "5.1.8"), (RELEASE, "6.el9")], &[(EPOCH, 2)]);
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(NAME).as_deref(), Some("bash"));
        assert_eq!(h.int32(EPOCH), Some(2));
        assert_eq!(h.string(LICENSE), None);
        assert!(Header::parse(&blob[..blob.len() - 3]).is_err());
        assert!(Header::parse(&[0xff; 8]).is_err());
        assert!(Header::parse(&[]).is_err());
    }
}
