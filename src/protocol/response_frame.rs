//! An encoded response as the runs written to the socket in order. A Fetch response's record
//! sets are runs of their own: they come from the tail cache or a segment read as `Bytes`, or
//! as a range of a segment file that the connection sends with `sendfile`. Copying them into
//! one contiguous frame only to write it out was a memory copy of everything consumers read.
//!
//! kafka-protocol encodes into one contiguous buffer, so the fetch handler puts a 16-byte
//! marker in place of each large record set (`Spliced::place`, in encoding order). The
//! encoded frame is then cut at the markers, each marker's length prefix rewritten for the
//! real records, and the records put in its place. The markers are random per response and
//! must sit right after the length prefix a 16-byte field gets; if any is not where
//! expected, the caller puts the records back and encodes the response whole instead.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;

use crate::log::record_set::{FileSlice, RecordSet};

/// Record sets smaller than this are copied into the frame: a run of their own would cost
/// more than the copy.
const SPLICE_MIN: usize = 4096;
const MARKER_LEN: usize = 16;

/// One run of a response frame.
#[derive(Debug, Clone)]
pub enum Run {
    Bytes(Bytes),
    /// Sent from the file (`sendfile`).
    File(FileSlice),
}

impl Run {
    pub fn len(&self) -> usize {
        match self {
            Run::Bytes(bytes) => bytes.len(),
            Run::File(slice) => slice.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<RecordSet> for Run {
    fn from(records: RecordSet) -> Run {
        match records {
            RecordSet::Memory(bytes) => Run::Bytes(bytes),
            RecordSet::File(slice) => Run::File(slice),
        }
    }
}

/// A response frame (with its 4-byte size prefix) as consecutive runs.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    parts: Vec<Run>,
    len: usize,
}

impl ResponseFrame {
    pub fn whole(bytes: Bytes) -> ResponseFrame {
        ResponseFrame {
            len: bytes.len(),
            parts: vec![Run::Bytes(bytes)],
        }
    }

    /// Bytes in the frame, size prefix included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Run] {
        &self.parts
    }

    /// The frame in one buffer (a copy when it has several runs; file runs are read:
    /// blocking I/O, for tests).
    #[cfg(test)]
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        if let [Run::Bytes(one)] = self.parts.as_slice() {
            return Ok(one.clone());
        }
        let mut out = BytesMut::with_capacity(self.len);
        for part in &self.parts {
            match part {
                Run::Bytes(bytes) => out.extend_from_slice(bytes),
                Run::File(slice) => out.extend_from_slice(&slice.read()?),
            }
        }
        Ok(out.freeze())
    }
}

/// The record sets a Fetch response carries as runs of their own, in encoding order.
#[derive(Debug, Default)]
pub struct Spliced {
    /// Drawn only for a response that has something to splice.
    nonce: Option<[u8; 12]>,
    records: Vec<RecordSet>,
}

impl Spliced {
    /// The value to encode as a partition's records: a small in-memory set itself, anything
    /// else a marker that `splice` replaces with the set. Call in encoding order.
    pub fn place(&mut self, records: RecordSet) -> Bytes {
        if let RecordSet::Memory(bytes) = &records
            && bytes.len() < SPLICE_MIN
        {
            return bytes.clone();
        }
        let nonce = *self.nonce.get_or_insert_with(|| {
            let mut nonce = [0; 12];
            nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
            nonce
        });
        let marker = marker(nonce, self.records.len());
        self.records.push(records);
        Bytes::copy_from_slice(&marker)
    }

    /// Whether any record set was put in a marker's place.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn marker(&self, index: usize) -> [u8; MARKER_LEN] {
        marker(self.nonce.unwrap_or_default(), index)
    }

    /// Puts the records back into the markers' places in the encoded `frame` (size prefix
    /// first). `flexible`: the records' length is a compact (varint) one. Gives itself back
    /// when a marker is not where it should be.
    pub fn splice(self, frame: Bytes, flexible: bool) -> Result<ResponseFrame, Spliced> {
        let Some((cuts, len)) = self.find(&frame, flexible) else {
            return Err(self);
        };
        let mut parts = Vec::with_capacity(2 * cuts.len() + 1);
        let mut head = BytesMut::new();
        let mut at = 0;
        for (records, cut) in self.records.into_iter().zip(cuts) {
            // The fields between two record sets are a few dozen bytes: copied.
            head.extend_from_slice(&frame[at..cut.prefix_at]);
            head.extend_from_slice(&cut.prefix);
            parts.push(Run::Bytes(head.split().freeze()));
            parts.push(Run::from(records));
            at = cut.marker_at + MARKER_LEN;
        }
        parts.push(Run::Bytes(frame.slice(at..)));
        // The first run starts with the frame's size prefix; `find` checked the size fits.
        if let Some(Run::Bytes(first)) = parts.first_mut() {
            let mut patched = BytesMut::from(first.as_ref());
            let size = (len - 4) as i32;
            if let Some(prefix) = patched.get_mut(..4) {
                prefix.copy_from_slice(&size.to_be_bytes());
            }
            *first = patched.freeze();
        }
        Ok(ResponseFrame { parts, len })
    }

    /// Where each marker and its length prefix are, and the spliced frame's length.
    fn find(&self, frame: &[u8], flexible: bool) -> Option<(Vec<Cut>, usize)> {
        let marker_prefix = length_prefix(MARKER_LEN, flexible)?;
        let mut cuts = Vec::with_capacity(self.records.len());
        let mut at = 0;
        let mut len = frame.len();
        for (index, records) in self.records.iter().enumerate() {
            let marker = self.marker(index);
            let marker_at = at
                + frame
                    .get(at..)?
                    .windows(MARKER_LEN)
                    .position(|w| w == marker)?;
            let prefix_at = marker_at.checked_sub(marker_prefix.len())?;
            if prefix_at < at || frame.get(prefix_at..marker_at)? != marker_prefix.as_slice() {
                return None;
            }
            let prefix = length_prefix(records.len(), flexible)?;
            len = len.checked_sub(marker_prefix.len() + MARKER_LEN)? + prefix.len() + records.len();
            cuts.push(Cut {
                prefix_at,
                marker_at,
                prefix,
            });
            at = marker_at + MARKER_LEN;
        }
        (len >= 4 && i32::try_from(len - 4).is_ok()).then_some((cuts, len))
    }

    /// Puts the records back into `fetch` in their markers' places, reading file slices
    /// into memory. That read blocks the task encoding the response; only a bug in this
    /// module leads here, and a response is better late than wrong.
    pub fn restore(self, fetch: &mut FetchResponse) -> std::io::Result<()> {
        let markers: Vec<[u8; MARKER_LEN]> =
            (0..self.records.len()).map(|i| self.marker(i)).collect();
        let mut records = self.records.into_iter().zip(markers);
        let mut next = records.next();
        for topic in &mut fetch.responses {
            for partition in &mut topic.partitions {
                let Some((_, marker)) = &next else {
                    return Ok(());
                };
                if partition.records.as_deref() == Some(&marker[..]) {
                    if let Some((set, _)) = next.take() {
                        partition.records = Some(set.into_bytes()?);
                    }
                    next = records.next();
                }
            }
        }
        Ok(())
    }
}

fn marker(nonce: [u8; 12], index: usize) -> [u8; MARKER_LEN] {
    let mut marker = [0u8; MARKER_LEN];
    marker[..12].copy_from_slice(&nonce);
    marker[12..].copy_from_slice(&(index as u32).to_be_bytes());
    marker
}

/// Where one record set goes in the encoded frame.
struct Cut {
    /// Start of the marker's length prefix.
    prefix_at: usize,
    marker_at: usize,
    /// The records' own length prefix.
    prefix: Vec<u8>,
}

/// The length prefix of a byte field of `len` bytes: INT32, or (flexible) unsigned varint of
/// `len + 1`.
fn length_prefix(len: usize, flexible: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(5);
    if flexible {
        let mut value = u32::try_from(len.checked_add(1)?).ok()?;
        while value >= 0x80 {
            out.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        out.put_u8(value as u8);
    } else {
        out.put_i32(i32::try_from(len).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
