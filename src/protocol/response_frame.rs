//! An encoded response as the byte runs written to the socket in order. A Fetch response's
//! record sets are runs of their own: they come from the tail cache or a segment read as
//! `Bytes`, and copying them into one contiguous frame only to write it out was a memory copy
//! of everything consumers read.
//!
//! kafka-protocol encodes into one contiguous buffer, so each large record set is swapped for
//! a 16-byte marker before encoding. The encoded frame is then cut at the markers, each
//! marker's length prefix rewritten for the real records, and the records put in its place.
//! The markers are random per response and must sit right after the length prefix a 16-byte
//! field gets; if any is not where expected, the caller encodes the response whole instead.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;

/// Record sets smaller than this are copied into the frame: a run of their own would cost
/// more than the copy.
const SPLICE_MIN: usize = 4096;
const MARKER_LEN: usize = 16;

/// A response frame (with its 4-byte size prefix) as consecutive byte runs.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    parts: Vec<Bytes>,
    len: usize,
}

impl ResponseFrame {
    pub fn whole(bytes: Bytes) -> ResponseFrame {
        ResponseFrame {
            len: bytes.len(),
            parts: vec![bytes],
        }
    }

    /// Bytes in the frame, size prefix included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The frame in one buffer (a copy when it has several runs).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len);
                for part in parts {
                    out.extend_from_slice(part);
                }
                out.freeze()
            }
        }
    }
}

/// The record sets taken out of a Fetch response, in encoding order.
pub struct Spliced {
    nonce: [u8; 12],
    records: Vec<Bytes>,
}

impl Spliced {
    /// Swaps every record set of at least `SPLICE_MIN` bytes for a marker; `None` when there
    /// is none (encode the response as it is).
    pub fn take(fetch: &mut FetchResponse) -> Option<Spliced> {
        let mut spliced: Option<Spliced> = None;
        for topic in &mut fetch.responses {
            for partition in &mut topic.partitions {
                let Some(records) = partition.records.as_mut() else {
                    continue;
                };
                if records.len() < SPLICE_MIN {
                    continue;
                }
                // The nonce is drawn only for a response that has something to splice.
                let spliced = spliced.get_or_insert_with(Spliced::new);
                let marker = Bytes::copy_from_slice(&spliced.marker(spliced.records.len()));
                spliced.records.push(std::mem::replace(records, marker));
            }
        }
        spliced
    }

    fn new() -> Spliced {
        let mut nonce = [0; 12];
        nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
        Spliced {
            nonce,
            records: Vec::new(),
        }
    }

    fn marker(&self, index: usize) -> [u8; MARKER_LEN] {
        let mut marker = [0u8; MARKER_LEN];
        marker[..12].copy_from_slice(&self.nonce);
        marker[12..].copy_from_slice(&(index as u32).to_be_bytes());
        marker
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
            parts.push(head.split().freeze());
            parts.push(records);
            at = cut.marker_at + MARKER_LEN;
        }
        parts.push(frame.slice(at..));
        // The first run starts with the frame's size prefix; `find` checked the size fits.
        if let Some(first) = parts.first_mut() {
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

    /// Puts the records back into `fetch` in their markers' places.
    pub fn restore(self, fetch: &mut FetchResponse) {
        let markers: Vec<[u8; MARKER_LEN]> =
            (0..self.records.len()).map(|i| self.marker(i)).collect();
        let mut records = self.records.into_iter().zip(markers);
        let mut next = records.next();
        for topic in &mut fetch.responses {
            for partition in &mut topic.partitions {
                let Some((_, marker)) = &next else {
                    return;
                };
                if partition.records.as_deref() == Some(&marker[..]) {
                    partition.records = next.take().map(|(r, _)| r);
                    next = records.next();
                }
            }
        }
    }
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
