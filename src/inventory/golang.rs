//! Go: toolchains (`VERSION` files: `go1.21.5`) and the build information the Go linker embeds in every
//! program — the Go version and the modules it was built from — read as Go's own `debug/buildinfo` reads
//! it: a 16-byte-aligned `\xff Go buildinf:` header in the `.go.buildinfo` section (or, in binaries whose
//! section headers were stripped, the first writable segment). Go 1.18+ writes both strings inline after
//! the header; older linkers store pointers to Go string headers, resolved here through the ELF segments.
//! The `object` crate reads the ELF; nothing is executed.

use object::{Object, ObjectSection, ObjectSegment};
use serde::{Deserialize, Serialize};

/// The header's magic.
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Go aligns the header to 16 bytes.
const ALIGN: usize = 16;
/// How far into the section the header is looked for (Go's own limit).
const SEARCH: usize = 64 * 1024;
/// Header flag: the strings follow the header inline (Go 1.18+).
const FLAG_INLINE: u8 = 0x2;
/// Header flag: a big-endian target (pointer format only).
const FLAG_BIG_ENDIAN: u8 = 0x1;

/// A module a program was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Module path.
    pub path: String,
    /// Version (`v1.2.3`, `(devel)`).
    pub version: String,
    /// `go.sum` hash, when recorded.
    pub sum: Option<String>,
    /// What a `replace` directive put in its place: (path, version).
    pub replaced_by: Option<(String, String)>,
}

/// What a Go program says about its own build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The Go version that built it (`go1.21.5`).
    pub go_version: String,
    /// The main package's import path.
    pub path: Option<String>,
    /// The main module.
    pub main: Option<Module>,
    /// Dependencies.
    pub deps: Vec<Module>,
}

impl BuildInfo {
    /// The Go version without its `go` prefix (`1.21.5`); experiments and `devel` markers are cut off.
    pub fn version_number(&self) -> &str {
        let v = self.go_version.trim_start_matches("devel ").trim_start_matches("go");
        v.split([' ', '+', '-']).next().unwrap_or(v)
    }
}

/// The version of a Go toolchain's `VERSION` file (`go1.21.5` → `1.21.5`), when it is one.
pub fn parse_version_file(text: &str) -> Option<String> {
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let ok = parts.next().is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|m| m.bytes().next().is_some_and(|b| b.is_ascii_digit()));
    ok.then(|| rest.to_string())
}

/// The build information of an ELF Go program; `None` for anything else.
pub fn parse_buildinfo(bytes: &[u8]) -> Option<BuildInfo> {
    let file = object::File::parse(bytes).ok()?;
    let data = match file.section_by_name(".go.buildinfo") {
        Some(section) => section.data().ok()?,
        None => {
            let segment = file.segments().find(|s| match s.flags() {
                object::SegmentFlags::Elf { p_flags, .. } => p_flags.0 & object::elf::PF_W.0 != 0,
                _ => false,
            })?;
            segment.data().ok()?
        }
    };
    let window = &data[..data.len().min(SEARCH)];
    let offset = (0..window.len()).step_by(ALIGN).find(|&i| window[i..].starts_with(MAGIC))?;
    let header = &data[offset..];
    if header.len() < 32 {
        return None;
    }
    let ptr_size = header[14] as usize;
    let flags = header[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let (version, used) = varint_string(&header[32..])?;
        let (modinfo, _) = varint_string(&header[32 + used..])?;
        (version, modinfo)
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return None;
        }
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let version_ptr = read_ptr(&header[16..], ptr_size, big)?;
        let modinfo_ptr = read_ptr(&header[16 + ptr_size..], ptr_size, big)?;
        (go_string(&file, version_ptr, ptr_size, big)?, go_string(&file, modinfo_ptr, ptr_size, big)?)
    };
    let version = String::from_utf8_lossy(&version).into_owned();
    if version.is_empty() {
        return None;
    }
    Some(parse_modinfo(version, &strip_sentinels(&modinfo)))
}

/// A uvarint length followed by that many bytes; returns the bytes and how much was consumed.
fn varint_string(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut len, mut shift, mut used) = (0u64, 0u32, 0usize);
    loop {
        let b = *bytes.get(used)?;
        used += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    Some((bytes.get(used..end)?.to_vec(), end))
}

fn read_ptr(bytes: &[u8], size: usize, big: bool) -> Option<u64> {
    let b = bytes.get(..size)?;
    Some(match (size, big) {
        (4, false) => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
        (4, true) => u64::from(u32::from_be_bytes(b.try_into().ok()?)),
        (_, false) => u64::from_le_bytes(b.try_into().ok()?),
        (_, true) => u64::from_be_bytes(b.try_into().ok()?),
    })
}

/// Reads a Go string header (data pointer, length) at `addr`, then the string it points to.
fn go_string(file: &object::File<'_>, addr: u64, ptr_size: usize, big: bool) -> Option<Vec<u8>> {
    let header = read_at(file, addr, 2 * ptr_size as u64)?;
    let data = read_ptr(header, ptr_size, big)?;
    let len = read_ptr(&header[ptr_size..], ptr_size, big)?;
    if len > 1 << 24 {
        return None;
    }
    read_at(file, data, len).map(<[u8]>::to_vec)
}

fn read_at<'a>(file: &object::File<'a>, addr: u64, len: u64) -> Option<&'a [u8]> {
    file.segments().find_map(|s| s.data_range(addr, len).ok().flatten())
}

/// The module text is wrapped in 16-byte sentinels; the text inside ends with a newline.
fn strip_sentinels(modinfo: &[u8]) -> String {
    let n = modinfo.len();
    let inner = if n >= 33 && modinfo[n - 17] == b'\n' { &modinfo[16..n - 16] } else { modinfo };
    String::from_utf8_lossy(inner).into_owned()
}

fn parse_modinfo(go_version: String, text: &str) -> BuildInfo {
    let mut info = BuildInfo { go_version, path: None, main: None, deps: Vec::new() };
    let module = |fields: &[&str]| Module {
        path: fields.first().map(|s| s.to_string()).unwrap_or_default(),
        version: fields.get(1).map(|s| s.to_string()).unwrap_or_default(),
        sum: fields.get(2).filter(|s| !s.is_empty()).map(|s| s.to_string()),
        replaced_by: None,
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.first().copied() {
            Some("path") => info.path = fields.get(1).map(|s| s.to_string()),
            Some("mod") => info.main = Some(module(&fields[1..])),
            Some("dep") => info.deps.push(module(&fields[1..])),
            Some("=>") => {
                let replacement = module(&fields[1..]);
                if let Some(last) = info.deps.last_mut() {
                    last.replaced_by = Some((replacement.path, replacement.version));
                }
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchain_version_files() {
        assert_eq!(parse_version_file("go1.21.5\ntime 2023-11-29T21:21:34Z\n").as_deref(), Some("1.21.5"));
        assert_eq!(parse_version_file("go1.16\n").as_deref(), Some("1.16"));
        assert_eq!(parse_version_file("1.2.3\n"), None);
        assert_eq!(parse_version_file("gopher\n"), None);
    }

    #[test]
    fn module_text_with_replacements() {
        let text = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
dep\texample.com/dep\tv1.2.3\t\n=>\t./dep\t(devel)\t\nbuild\tCGO_ENABLED=0\n";
        let info = parse_modinfo("go1.19.8".into(), text);
        assert_eq!(info.version_number(), "1.19.8");
        assert_eq!(info.path.as_deref(), Some("example.com/app"));
        assert_eq!(info.deps[0].version, "v1.2.3");
        assert_eq!(info.deps[0].replaced_by, Some(("./dep".into(), "(devel)".into())));
    }

    #[test]
    fn not_elf_is_not_go() {
        assert_eq!(parse_buildinfo(b"\x7fELF garbage"), None);
        assert_eq!(parse_buildinfo(b""), None);
        let mut v = vec![0x85, 0x80];
        v.extend_from_slice(b"x");
        assert_eq!(varint_string(&v), None);
    }
}

#[cfg(test)]
mod pointer_format_tests {
    use super::*;

    /// A minimal ELF64 executable without section headers whose one writable segment holds a pre-1.18
    /// build-info header: pointers to Go string headers, resolved through the segment's addresses.
    fn old_go_elf(version: &str, modinfo: &str) -> Vec<u8> {
        const BASE: u64 = 0x40_0000;
        const OFF: usize = 256;
        let mut data = Vec::new();
        data.extend_from_slice(MAGIC);
        data.push(8); // pointer size
        data.push(0); // flags: little-endian, pointer format
        let (vhdr, mhdr, vstr) = (BASE + 32, BASE + 48, BASE + 64);
        let mstr = vstr + version.len() as u64;
        data.extend_from_slice(&vhdr.to_le_bytes());
        data.extend_from_slice(&mhdr.to_le_bytes());
        for (ptr, len) in [(vstr, version.len()), (mstr, modinfo.len())] {
            data.extend_from_slice(&ptr.to_le_bytes());
            data.extend_from_slice(&(len as u64).to_le_bytes());
        }
        data.extend_from_slice(version.as_bytes());
        data.extend_from_slice(modinfo.as_bytes());
        let mut elf = vec![0u8; OFF];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[6] = 1; // version
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // program headers at 64
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // header size
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // program header size
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // one program header
        let ph = &mut elf[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&6u32.to_le_bytes()); // PF_R | PF_W
        ph[8..16].copy_from_slice(&(OFF as u64).to_le_bytes());
        ph[16..24].copy_from_slice(&BASE.to_le_bytes());
        ph[24..32].copy_from_slice(&BASE.to_le_bytes());
        ph[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&(data.len() as u64).to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        elf.extend_from_slice(&data);
        elf
    }

    #[test]
    fn pre_1_18_pointer_format_through_segments() {
        let text = "path\texample.com/old\nmod\texample.com/old\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.7\th1:abc=\n";
        // The module text is wrapped in 16-byte sentinels, as the linker writes it.
        let modinfo = format!("{}{text}{}", "S".repeat(16), "E".repeat(16));
        let info = parse_buildinfo(&old_go_elf("go1.16.15", &modinfo)).expect("build info");
        assert_eq!(info.go_version, "go1.16.15");
        assert_eq!(info.version_number(), "1.16.15");
        assert_eq!(info.deps[0].path, "golang.org/x/text");
        assert_eq!(info.deps[0].sum.as_deref(), Some("h1:abc="));
        // A pointer outside every segment is not followed.
        let mut broken = old_go_elf("go1.16.15", &modinfo);
        broken[256 + 16..256 + 24].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        assert_eq!(parse_buildinfo(&broken), None);
    }
}
