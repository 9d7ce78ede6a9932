//! The journal file's byte layout (pure: no I/O): the header, record frames with their
//! CRC-32, and the scan that finds the last complete record. The layout is documented in
//! `jobs::journal`.

use std::ops::Range;

/// First bytes of every journal file.
pub const MAGIC: [u8; 8] = *b"IOTJWAL\0";
/// Magic, format version (u32 LE), reserved (u32, 0).
pub const HEADER_LEN: usize = 16;
/// Length (u32 LE) and CRC-32 (u32 LE) before each payload.
pub const FRAME_LEN: usize = 8;

/// The file header for `format`.
pub fn header(format: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&format.to_le_bytes());
    h
}

/// Why a file's header is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadHeader {
    /// Too short or not our magic: not a journal at all.
    NotAJournal,
    /// A journal of another format version.
    Format(u32),
}

/// Checks the header against the `format` this build writes.
pub fn check_header(bytes: &[u8], format: u32) -> Result<(), BadHeader> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err(BadHeader::NotAJournal);
    }
    let found = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if found != format {
        return Err(BadHeader::Format(found));
    }
    Ok(())
}

/// Appends one framed record to `out`. `None` when the payload is empty or too long
/// for its length field (a zero length marks the end of the log).
pub fn push_record(out: &mut Vec<u8>, payload: &[u8]) -> Option<()> {
    let len = u32::try_from(payload.len()).ok().filter(|&l| l > 0)?;
    let len_bytes = len.to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc32(&[&len_bytes, payload]).to_le_bytes());
    out.extend_from_slice(payload);
    Some(())
}

/// What a scan of a journal file (after its header) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Byte range of the last complete record's payload.
    pub last: Option<Range<usize>>,
    /// Complete records found.
    pub records: usize,
    /// Offset just past the last complete record: where the next record goes.
    pub end: usize,
    /// Bytes after `end` that are not zero (a torn record, or damage): appending there
    /// could leave them behind a new record, so the next write starts a fresh file.
    pub garbage: usize,
}

/// Scans the records of `file` (header included) from the start. The log ends at a zero
/// length or at the first frame that does not fit or whose checksum does not match.
pub fn scan(file: &[u8]) -> Scan {
    let mut at = HEADER_LEN.min(file.len());
    let (mut last, mut records) = (None, 0);
    while let Some(frame) = file.get(at..at + FRAME_LEN) {
        let len_bytes = [frame[0], frame[1], frame[2], frame[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let start = at + FRAME_LEN;
        let Some(payload) = (len > 0).then(|| file.get(start..start + len)).flatten() else {
            break;
        };
        if crc32(&[&len_bytes, payload]) != crc {
            break;
        }
        last = Some(start..start + len);
        records += 1;
        at = start + len;
    }
    let garbage = file
        .get(at..)
        .map_or(0, |rest| rest.iter().filter(|&&b| b != 0).count());
    Scan {
        last,
        records,
        end: at,
        garbage,
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's) of the concatenated `parts`.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for part in parts {
        for &b in *part {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `payloads` as records and `zeros` preallocated bytes after them.
    fn file(payloads: &[&[u8]], zeros: usize) -> Vec<u8> {
        let mut f = header(2).to_vec();
        for p in payloads {
            push_record(&mut f, p).unwrap();
        }
        f.resize(f.len() + zeros, 0);
        f
    }

    fn last<'a>(f: &'a [u8], s: &Scan) -> Option<&'a [u8]> {
        s.last.clone().map(|r| &f[r])
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn the_last_of_several_records_wins_and_the_end_is_after_it() {
        let f = file(&[b"one", b"two", b"three"], 64);
        let s = scan(&f);
        assert_eq!(last(&f, &s), Some(&b"three"[..]));
        assert_eq!(s.records, 3);
        assert_eq!(s.end, f.len() - 64);
        assert_eq!(s.garbage, 0);
    }

    #[test]
    fn a_record_torn_at_any_byte_leaves_the_previous_one() {
        let complete = file(&[b"first", b"second record"], 0);
        let second_at = HEADER_LEN + FRAME_LEN + 5;
        // Every prefix of the second frame, followed by the zeros it was written into.
        for cut in second_at..complete.len() {
            let mut f = complete[..cut].to_vec();
            f.resize(complete.len() + 32, 0);
            let s = scan(&f);
            assert_eq!(last(&f, &s), Some(&b"first"[..]), "cut at {cut}");
            assert_eq!(s.end, second_at, "cut at {cut}");
            assert_eq!(s.garbage > 0, cut > second_at, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_log_at_that_record() {
        let clean = file(&[b"first", b"second"], 16);
        for byte in HEADER_LEN + FRAME_LEN + 5..clean.len() - 16 {
            let mut f = clean.clone();
            f[byte] ^= 0x10;
            let s = scan(&f);
            assert_eq!(last(&f, &s), Some(&b"first"[..]), "flipped byte {byte}");
            assert!(s.garbage > 0);
        }
    }

    #[test]
    fn a_length_past_the_end_is_not_a_record() {
        let mut f = file(&[b"only"], 0);
        let mut frame = Vec::new();
        push_record(&mut frame, &[7u8; 100]).unwrap();
        f.extend_from_slice(&frame[..50]);
        let s = scan(&f);
        assert_eq!(last(&f, &s), Some(&b"only"[..]));
        assert_eq!(s.records, 1);
    }

    #[test]
    fn headers_are_checked_for_magic_and_format() {
        assert_eq!(check_header(&header(2), 2), Ok(()));
        assert_eq!(check_header(&header(3), 2), Err(BadHeader::Format(3)));
        assert_eq!(
            check_header(b"{\"format\":1}", 2),
            Err(BadHeader::NotAJournal)
        );
        assert_eq!(check_header(b"", 2), Err(BadHeader::NotAJournal));
        let s = scan(&header(2));
        assert_eq!((s.last, s.records, s.end), (None, 0, HEADER_LEN));
    }

    #[test]
    fn an_empty_payload_cannot_be_framed() {
        let mut out = Vec::new();
        assert_eq!(push_record(&mut out, b""), None);
        assert!(out.is_empty());
    }
}
