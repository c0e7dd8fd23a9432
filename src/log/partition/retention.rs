//! Retention: whole segments leave the log from its start, by age or size, or after a
//! rewrite of an internal log.

use std::sync::atomic::Ordering;

use tracing::info;

use super::Partition;
use crate::log::now_ms;
use crate::log::segment::Segment;

impl Partition {
    /// Deletes whole segments past `retention.ms` / beyond `retention.bytes`; never the active
    /// segment, never data above the high watermark. Returns the bytes deleted.
    pub fn enforce_retention(&self) -> u64 {
        let config = self.config();
        if !config.cleanup_policy.deletes() {
            return 0;
        }
        let high_watermark = self.log.commit.high_watermark();
        let now = now_ms();
        self.drop_oldest_segments(|oldest, next_base, total| {
            let too_old = config.retention_ms >= 0
                && oldest.max_timestamp() >= 0
                && now - oldest.max_timestamp() > config.retention_ms;
            let too_big = config.retention_bytes >= 0
                && total.saturating_sub(oldest.size()) >= config.retention_bytes as u64;
            let empty_and_old = oldest.is_empty()
                && config.retention_ms >= 0
                && now - oldest.created_ms() > config.retention_ms;
            next_base <= high_watermark && (too_old || too_big || empty_and_old)
        })
    }

    /// Deletes whole segments that end at or before `offset` (never the active segment, never
    /// data above the high watermark): how a log rewritten from a snapshot drops its prefix.
    /// Returns the bytes deleted.
    pub fn delete_segments_before(&self, offset: i64) -> u64 {
        let limit = offset.min(self.log.commit.high_watermark());
        self.drop_oldest_segments(|_, next_base, _| next_base <= limit)
    }

    /// Deletes the oldest segment while `should_drop(oldest, next segment's base, bytes of all
    /// segments left)` says so; the active segment always stays. Returns the bytes deleted.
    fn drop_oldest_segments(&self, mut should_drop: impl FnMut(&Segment, i64, u64) -> bool) -> u64 {
        // Files are unlinked while the segment map is locked, and `close` takes the same lock
        // to mark the partition closed: a deleted and re-created topic's new files (same
        // directory name) can never be unlinked by a pass over the old one.
        let mut segments = self.log.segments_mut();
        if self.log.closed.load(Ordering::Acquire) {
            return 0;
        }
        let mut total: u64 = segments.values().map(|s| s.size()).sum();
        let mut removed = Vec::new();
        loop {
            let mut iter = segments.values();
            let (Some(oldest), Some(next)) = (iter.next(), iter.next()) else {
                break;
            };
            let next_base = next.base_offset();
            if !should_drop(oldest, next_base, total) {
                break;
            }
            total -= oldest.size();
            let base = oldest.base_offset();
            if let Some(segment) = segments.remove(&base) {
                removed.push(segment);
            }
            self.log
                .log_start_offset
                .store(next_base, Ordering::Release);
        }
        let mut deleted = 0;
        for segment in removed {
            deleted += segment.size();
            info!(partition = %self.log.name, base_offset = segment.base_offset(),
                bytes = segment.size(), "deleted segment");
            segment.delete_files();
        }
        drop(segments);
        if deleted > 0 {
            let log_start_offset = self.log.log_start_offset.load(Ordering::Acquire);
            self.sequencer().txns.trim(log_start_offset);
        }
        deleted
    }
}
