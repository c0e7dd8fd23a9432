//! Broker-side partition assignors of the consumer group protocol (KIP-848): `uniform`
//! (balanced and sticky: members keep what they had when balance allows) and `range`
//! (per topic, consecutive ranges over the members sorted by id, as the classic assignor).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Partitions in either assignment.
pub fn union(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = a.clone();
    for (topic, parts) in b {
        out.entry(*topic).or_default().extend(parts);
    }
    out
}

/// Partitions in both assignments.
pub fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, parts)| {
            let common: BTreeSet<i32> = b
                .get(topic)
                .map(|other| parts.intersection(other).copied().collect())
                .unwrap_or_default();
            (!common.is_empty()).then_some((*topic, common))
        })
        .collect()
}

/// Partitions of `a` that are not in `b`.
pub fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, parts)| {
            let rest: BTreeSet<i32> = match b.get(topic) {
                Some(other) => parts.difference(other).copied().collect(),
                None => parts.clone(),
            };
            (!rest.is_empty()).then_some((*topic, rest))
        })
        .collect()
}

/// Whether every partition of `a` is in `b`.
pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    minus(a, b).is_empty()
}

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
pub const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct AssignorMember<'a> {
    pub member_id: &'a str,
    /// Topic ids the member subscribes to (only topics that exist).
    pub topics: BTreeSet<Uuid>,
    /// The member's previous target assignment, kept where possible.
    pub previous: Option<&'a Assignment>,
}

/// Computes every member's target assignment. `partitions` gives each topic's partition count.
pub fn assign(
    assignor: &str,
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        RANGE => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn range(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (topic, count) in partitions {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort_unstable();
        let count = (*count).max(0) as usize;
        let per_member = count / subscribers.len();
        let extra = count % subscribers.len();
        let mut next = 0usize;
        for (i, member) in subscribers.iter().enumerate() {
            let take = per_member + usize::from(i < extra);
            let owned: BTreeSet<i32> = (next..next + take).map(|p| p as i32).collect();
            next += take;
            if !owned.is_empty()
                && let Some(assignment) = result.get_mut(*member)
            {
                assignment.insert(*topic, owned);
            }
        }
    }
    result
}

fn uniform(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut owned: BTreeMap<&str, BTreeSet<(Uuid, i32)>> = members
        .iter()
        .map(|m| (m.member_id, BTreeSet::new()))
        .collect();
    let subscribed = |member: &str, topic: &Uuid| {
        members
            .iter()
            .any(|m| m.member_id == member && m.topics.contains(topic))
    };
    let exists = |topic: &Uuid, partition: i32| {
        partitions
            .get(topic)
            .is_some_and(|count| partition >= 0 && partition < *count)
    };
    // Stickiness: every still-valid partition stays with its previous owner, once.
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for member in members {
        for (topic, parts) in member.previous.into_iter().flatten() {
            for &partition in parts {
                if member.topics.contains(topic)
                    && exists(topic, partition)
                    && taken.insert((*topic, partition))
                    && let Some(set) = owned.get_mut(member.member_id)
                {
                    set.insert((*topic, partition));
                }
            }
        }
    }
    // Every other partition goes to the least loaded member subscribed to its topic.
    for (topic, count) in partitions {
        for partition in 0..*count {
            if taken.contains(&(*topic, partition)) {
                continue;
            }
            let target = owned
                .iter()
                .filter(|(member, _)| subscribed(member, topic))
                .min_by_key(|(member, set)| (set.len(), **member))
                .map(|(member, _)| *member);
            if let Some(member) = target
                && let Some(set) = owned.get_mut(member)
            {
                set.insert((*topic, partition));
                taken.insert((*topic, partition));
            }
        }
    }
    // Balance: move partitions from the most to the least loaded eligible member until no
    // move can narrow the gap below two.
    loop {
        let mut moved = false;
        let ids: Vec<&str> = owned.keys().copied().collect();
        'outer: for &from in &ids {
            for &to in &ids {
                let (from_len, to_len) = (owned[from].len(), owned[to].len());
                if from_len <= to_len + 1 {
                    continue;
                }
                let candidate = owned[from]
                    .iter()
                    .rev()
                    .find(|(topic, _)| subscribed(to, topic))
                    .copied();
                if let Some(tp) = candidate {
                    if let Some(set) = owned.get_mut(from) {
                        set.remove(&tp);
                    }
                    if let Some(set) = owned.get_mut(to) {
                        set.insert(tp);
                    }
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    owned
        .into_iter()
        .map(|(member, set)| {
            let mut assignment = Assignment::new();
            for (topic, partition) in set {
                assignment.entry(topic).or_default().insert(partition);
            }
            (member.to_string(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_balances_and_keeps_previous_owners() {
        let t = Uuid::new_v4();
        let partitions = BTreeMap::from([(t, 6)]);
        let topics = BTreeSet::from([t]);
        let two = [
            AssignorMember {
                member_id: "a",
                topics: topics.clone(),
                previous: None,
            },
            AssignorMember {
                member_id: "b",
                topics: topics.clone(),
                previous: None,
            },
        ];
        let first = assign(UNIFORM, &two, &partitions);
        assert_eq!(count(&first["a"]), 3);
        assert_eq!(count(&first["b"]), 3);
        // A third member joins: each old member gives up one partition and keeps the rest.
        let three = [
            AssignorMember {
                member_id: "a",
                topics: topics.clone(),
                previous: first.get("a"),
            },
            AssignorMember {
                member_id: "b",
                topics: topics.clone(),
                previous: first.get("b"),
            },
            AssignorMember {
                member_id: "c",
                topics: topics.clone(),
                previous: None,
            },
        ];
        let second = assign(UNIFORM, &three, &partitions);
        for member in ["a", "b", "c"] {
            assert_eq!(count(&second[member]), 2, "{second:?}");
        }
        for member in ["a", "b"] {
            assert!(second[member][&t].is_subset(&first[member][&t]));
        }
    }

    #[test]
    fn uniform_respects_subscriptions_and_range_gives_consecutive_ranges() {
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let partitions = BTreeMap::from([(t1, 3), (t2, 2)]);
        let members = [
            AssignorMember {
                member_id: "a",
                topics: BTreeSet::from([t1]),
                previous: None,
            },
            AssignorMember {
                member_id: "b",
                topics: BTreeSet::from([t1, t2]),
                previous: None,
            },
        ];
        let uniform = assign(UNIFORM, &members, &partitions);
        assert!(!uniform["a"].contains_key(&t2));
        assert_eq!(count(&uniform["a"]) + count(&uniform["b"]), 5);
        let range = assign(RANGE, &members, &partitions);
        assert_eq!(range["a"][&t1], BTreeSet::from([0, 1]));
        assert_eq!(range["b"][&t1], BTreeSet::from([2]));
        assert_eq!(range["b"][&t2], BTreeSet::from([0, 1]));
    }
}
