//! Which partitions of each group have offsets that a transaction committed but has not yet
//! ended: OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them, so a
//! consumer never starts from an offset that is about to move.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::state::TxnMetadata;

/// How many transactions hold offsets for each (topic, partition) of a group.
type PartitionCounts = HashMap<(String, i32), usize>;

#[derive(Debug, Default)]
pub struct PendingOffsets {
    groups: Mutex<HashMap<String, PartitionCounts>>,
}

impl PendingOffsets {
    /// Partitions of `group` with offsets of a transaction not yet ended.
    pub fn of_group(&self, group: &str) -> HashSet<(String, i32)> {
        self.lock()
            .get(group)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts (`add`) or releases every offset the transaction holds.
    pub fn track(&self, meta: &TxnMetadata, add: bool) {
        for (group, offsets) in &meta.groups {
            let partitions: Vec<(String, i32)> = offsets
                .iter()
                .map(|o| (o.topic.clone(), o.partition))
                .collect();
            self.adjust(group, &partitions, add);
        }
    }

    /// Counts (`add`) or releases one transaction's offsets for these partitions.
    pub fn adjust(&self, group: &str, partitions: &[(String, i32)], add: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut groups = self.lock();
        let counts = groups.entry(group.to_string()).or_default();
        for p in partitions {
            if add {
                *counts.entry(p.clone()).or_default() += 1;
            } else if let Some(count) = counts.get_mut(p) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(p);
                }
            }
        }
        if counts.is_empty() {
            groups.remove(group);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PartitionCounts>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}
