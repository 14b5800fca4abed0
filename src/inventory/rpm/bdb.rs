//! The Berkeley DB hash file of RHEL/UBI 8's RPM database (`/var/lib/rpm/Packages`), read-only.
//!
//! Hand-written: no maintained Rust crate reads Berkeley DB files (the C library is AGPL since 6.0 and
//! Debian ships it only as a tool), and rpm needs only a small part of the format — walk every hash page,
//! take each key/data pair's data item, follow overflow chains for the large ones (every header is one).
//!
//! ```text
//!  page 0: hash meta page   magic 0x061561 at 12 (its byte order is the file's), page size at 20,
//!                           last page number at 32, encryption algorithm at 24 (0 = none)
//!  page header (26 bytes):  lsn[8] pgno@8 prev@12 next@16 entries:u16@20 hf_offset:u16@22 level@24 type@25
//!  hash page (type 2, 13):  entries × u16 item offsets from byte 26; items come in key/data pairs
//!  item:                    type byte; 1 = key/data inline (length from the neighbouring offsets),
//!                           3 = off-page: pgno@4, total length@8
//!  overflow page (type 7):  hf_offset bytes of data from byte 26, chained through `next`
//! ```

use super::super::scan::OsPackage;

const HASH_MAGIC: u32 = 0x0006_1561;
const PAGE_HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Reads a little- or big-endian number, as the file's magic decided.
#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) })
    }
}

/// The packages of a `Packages` file held in memory.
pub fn packages(file: &[u8]) -> Result<Vec<OsPackage>, String> {
    let values = values(file)?;
    // Key 0's value is rpm's instance counter, not a header: only blobs that decode count.
    let headers: Vec<&[u8]> =
        values.iter().map(Vec::as_slice).filter(|v| super::header::Header::parse(v).is_ok()).collect();
    super::packages_from_blobs(headers.into_iter())
}

/// Every data item of a hash database, in page order.
pub fn values(file: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let order = match file.get(12..16).map(|m| u32::from_le_bytes(m.try_into().unwrap_or_default())) {
        Some(HASH_MAGIC) => Order { big: false },
        Some(m) if m.swap_bytes() == HASH_MAGIC => Order { big: true },
        _ => return Err("not a Berkeley DB hash file".into()),
    };
    let page_size = order.u32(file, 20).ok_or("truncated meta page")? as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size} is not valid"));
    }
    if file.get(24).copied().unwrap_or(0) != 0 {
        return Err("the database is encrypted".into());
    }
    let pages = file.len() / page_size;
    let page = |n: usize| file.get(n * page_size..(n + 1) * page_size);
    let mut out = Vec::new();
    for n in 1..pages {
        let Some(p) = page(n) else { break };
        if p[25] != P_HASH && p[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = order.u16(p, 20).ok_or("truncated page")? as usize;
        let offset = |i: usize| order.u16(p, PAGE_HEADER + 2 * i).map(usize::from);
        for data_index in (1..entries).step_by(2) {
            let Some(at) = offset(data_index) else { break };
            let end = offset(data_index - 1).unwrap_or(page_size);
            match p.get(at).copied() {
                Some(H_KEYDATA) if at < end && end <= page_size => out.push(p[at + 1..end].to_vec()),
                Some(H_OFFPAGE) => {
                    let first = order.u32(p, at + 4).ok_or("truncated off-page item")? as usize;
                    let total = order.u32(p, at + 8).ok_or("truncated off-page item")? as usize;
                    out.push(overflow(order, &page, pages, first, total)?);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Follows an overflow chain from `first`, collecting `total` bytes.
fn overflow<'a>(
    order: Order,
    page: &impl Fn(usize) -> Option<&'a [u8]>,
    pages: usize,
    first: usize,
    total: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(total.min(64 << 20));
    let mut next = first;
    // A chain longer than the file has pages is a loop.
    for _ in 0..pages {
        let p = page(next).ok_or_else(|| format!("overflow page {next} is past the end of the file"))?;
        if p[25] != P_OVERFLOW {
            return Err(format!("page {next} is not an overflow page"));
        }
        let len = order.u16(p, 22).ok_or("truncated overflow page")? as usize;
        let data = p.get(PAGE_HEADER..PAGE_HEADER + len).ok_or("overflow length past the page")?;
        out.extend_from_slice(data);
        next = order.u32(p, 16).ok_or("truncated overflow page")? as usize;
        if next == 0 || out.len() >= total {
            out.truncate(total);
            return Ok(out);
        }
    }
    Err("overflow chain loops".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 512;

    fn page_header(p: &mut [u8], pgno: u32, next: u32, entries: u16, hf: u16, ty: u8) {
        p[8..12].copy_from_slice(&pgno.to_le_bytes());
        p[16..20].copy_from_slice(&next.to_le_bytes());
        p[20..22].copy_from_slice(&entries.to_le_bytes());
        p[22..24].copy_from_slice(&hf.to_le_bytes());
        p[25] = ty;
    }

    /// A little-endian hash file: page 1 holds an inline pair and an off-page pair whose value spans
    /// pages 2 and 3.
    fn file(big_value: &[u8], chain_back_to: Option<u32>, declared: usize) -> Vec<u8> {
        let mut f = vec![0u8; PS * 4];
        f[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        f[20..24].copy_from_slice(&(PS as u32).to_le_bytes());
        f[25] = 8;
        let p = &mut f[PS..2 * PS];
        // Items from the end of the page down: key1, data1 (inline), key2, data2 (off-page).
        let items: [Vec<u8>; 4] = [
            [&[H_KEYDATA][..], &1u32.to_le_bytes()].concat(),
            [&[H_KEYDATA][..], b"small"].concat(),
            [&[H_KEYDATA][..], &2u32.to_le_bytes()].concat(),
            {
                let mut off = vec![H_OFFPAGE, 0, 0, 0];
                off.extend_from_slice(&2u32.to_le_bytes());
                off.extend_from_slice(&(declared as u32).to_le_bytes());
                off
            },
        ];
        let mut at = PS;
        for (i, item) in items.iter().enumerate() {
            at -= item.len();
            p[at..at + item.len()].copy_from_slice(item);
            p[PAGE_HEADER + 2 * i..PAGE_HEADER + 2 * i + 2].copy_from_slice(&(at as u16).to_le_bytes());
        }
        page_header(p, 1, 0, 4, 0, P_HASH);
        let split = PS - PAGE_HEADER;
        let (a, b) = big_value.split_at(split.min(big_value.len()));
        let p2 = &mut f[2 * PS..3 * PS];
        page_header(p2, 2, 3, 1, a.len() as u16, P_OVERFLOW);
        p2[PAGE_HEADER..PAGE_HEADER + a.len()].copy_from_slice(a);
        let p3 = &mut f[3 * PS..4 * PS];
        page_header(p3, 3, chain_back_to.unwrap_or(0), 1, b.len() as u16, P_OVERFLOW);
        p3[PAGE_HEADER..PAGE_HEADER + b.len()].copy_from_slice(b);
        f
    }

    #[test]
    fn inline_and_overflow_values() {
        let big: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
        let values = values(&file(&big, None, big.len())).unwrap();
        assert_eq!(values, [b"small".to_vec(), big]);
    }

    #[test]
    fn hostile_files_are_refused_not_followed() {
        let big: Vec<u8> = vec![7; 900];
        assert!(values(&file(&big, Some(2), 5000)).unwrap_err().contains("loops"));
        assert!(values(b"short").is_err());
        let mut bad = file(&big, None, big.len());
        bad[20..24].copy_from_slice(&3u32.to_le_bytes());
        assert!(values(&bad).is_err());
    }
}
