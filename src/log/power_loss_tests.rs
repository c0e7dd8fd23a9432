//! Simulated power loss. A seeded workload (appends to several partitions, group commits of
//! seeded sizes, segment rolls every few batches, checkpoints, a topic created midway) runs on a
//! [`SimDisk`] that dies at a seeded operation, tearing the write it was doing; the disk a
//! machine could come back to (durable state plus any part of the rest) is then recovered
//! and checked: every acknowledged append and every created topic is there, each partition
//! holds exactly a prefix of what was appended (no garbage, no holes, nothing changed), and
//! the recovered log takes new writes. Every file operation happens on the test's thread
//! (a manual writer), so a seed replays exactly: `WEIR_POWER_LOSS_SEED=n` runs one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, TimestampType};
use tokio::sync::Semaphore;

use super::batch::{BatchHeader, ValidatedBatch, encode_records, verify_batch};
use super::commit::PendingAppend;
use super::manager::LogManager;
use super::partition::{Appended, Isolation, PartitionOptions};
use super::segment::ReadInto;
use super::writer::{ManualWriter, manual};
use crate::config::{Config, Durability, WritePath};
use crate::disk::Disk;
use crate::disk::sim::{Faults, SimDisk, SplitMix64};

const TOPICS: [(&str, i32); 2] = [("first", 3), ("second", 2)];
const STEPS: usize = 60;

fn config() -> Arc<Config> {
    let mut config = Config::embedded().unwrap();
    config.data_dir = "/data".into();
    config.log_segment_bytes = 1024;
    config.durability = Durability::Fsync;
    Arc::new(config)
}

fn open(disk: &SimDisk) -> Result<(Arc<LogManager>, ManualWriter), String> {
    let (writer, manual) = manual(Durability::Fsync);
    let options = PartitionOptions {
        disk: Arc::new(disk.clone()) as Arc<dyn Disk>,
        writer,
        durability: Durability::Fsync,
        write_path: WritePath::Background,
        page_cache_via_writer: false,
        write_budget: Arc::new(Semaphore::new(64 << 20)),
        write_budget_bytes: 64 << 20,
        tail_cache: Some(crate::log::tail_cache::TailBudget::new(64 << 20)),
    };
    let config = config();
    crate::disk::create_dir_durable(disk, &config.data_dir).map_err(|e| e.to_string())?;
    let (logs, _) = LogManager::open(config, options).map_err(|e| e.to_string())?;
    Ok((Arc::new(logs), manual))
}

/// A batch whose every record names it, so any batch read back can be told apart.
fn batch(tag: u64, count: i64) -> ValidatedBatch {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // offset - sequence constant, or the encoder splits the batch.
            sequence: i as i32,
            timestamp: 1_000 + i,
            key: None,
            value: Some(Bytes::from(format!("batch-{tag}-record-{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let bytes = encode_records(&records, Compression::None).unwrap();
    ValidatedBatch {
        header: verify_batch(&bytes).unwrap(),
        bytes,
    }
}

type Key = (String, i32);

/// What the workload did before the power went.
#[derive(Default)]
struct Run {
    /// Per partition, every append in offset order: (base offset, client bytes, pending).
    appends: HashMap<Key, Vec<(i64, Bytes, Arc<PendingAppend>)>>,
    topics_created: Vec<&'static str>,
    /// Per partition, the high watermark consumers could read up to.
    high_watermarks: HashMap<Key, i64>,
}

/// Runs the seeded workload until it ends or the disk dies.
fn workload(rt: &tokio::runtime::Runtime, disk: &SimDisk, seed: u64) -> Run {
    let mut rng = SplitMix64(seed);
    let mut run = Run::default();
    let Ok((logs, writer)) = open(disk) else {
        return run;
    };
    let create_second_at = rng.below(STEPS as u64) as usize;
    let mut tag = 0;
    let mut created = 0;
    for step in 0..STEPS {
        if disk.is_dead() {
            break;
        }
        if step == 0 || step == create_second_at {
            let (name, partitions) = TOPICS[created.min(1)];
            if created < 2 {
                created += 1;
                let made =
                    rt.block_on(logs.create_topic(name, partitions, 1, BTreeMap::new(), false));
                if made.is_ok() {
                    run.topics_created.push(name);
                }
            }
        }
        if run.topics_created.is_empty() {
            break;
        }
        for _ in 0..=rng.below(3) {
            let topic = run.topics_created[rng.below(run.topics_created.len() as u64) as usize];
            let Some(partition) = logs
                .topic(topic)
                .and_then(|t| t.partition(rng.below(3) as i32))
            else {
                continue;
            };
            tag += 1;
            let batch = batch(tag, 1 + rng.below(4) as i64);
            let bytes = batch.bytes.clone();
            if let Ok(Appended::New { append, .. }) =
                rt.block_on(partition.append(vec![batch], None))
            {
                run.appends
                    .entry((topic.to_string(), partition.index()))
                    .or_default()
                    .push((append.base_offset, bytes, append));
            }
        }
        writer.run_group(1 + rng.below(6) as usize);
        if rng.below(2) == 0 {
            // Otherwise the next groups are written before this one is fsynced.
            writer.run_syncs();
        }
        if rng.below(4) == 0 {
            // What the checkpoint thread does: the next start resumes from these summaries.
            let topic = run.topics_created[rng.below(run.topics_created.len() as u64) as usize];
            if let Some(partition) = logs.topic(topic).and_then(|t| t.partition(0)) {
                partition.checkpoint();
            }
        }
    }
    while !disk.is_dead() && (writer.run_group(64) > 0 || writer.run_syncs() > 0) {}
    for topic in logs.topics() {
        for partition in topic.partitions() {
            run.high_watermarks.insert(
                (topic.name.clone(), partition.index()),
                partition.watermarks().high_watermark,
            );
        }
    }
    run
}

/// Every batch of a recovered partition, in order, as (base offset, bytes).
fn read_back(logs: &LogManager, key: &Key) -> Vec<(i64, Bytes)> {
    let partition = logs.topic(&key.0).unwrap().partition(key.1).unwrap();
    let end = partition.watermarks().high_watermark;
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < end {
        let read = partition
            .read(
                offset,
                1 << 20,
                true,
                Isolation::ReadUncommitted,
                ReadInto::Memory,
            )
            .unwrap();
        let mut records = read
            .records
            .expect("data below the high watermark")
            .into_bytes()
            .unwrap();
        while !records.is_empty() {
            let header = BatchHeader::parse(&records).unwrap();
            let whole = records.split_to(header.size);
            offset = header.last_offset() + 1;
            out.push((header.base_offset, whole));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Figures {
    seeds: u64,
    crash_points: BTreeMap<&'static str, u64>,
    acked_appends_checked: u64,
    unacked_appends_survived: u64,
    topics_checked: u64,
    fsync_failures: u64,
    /// Appends left unacknowledged in fsync-failure runs (the failed one and those after).
    refused_after_fsync_failure: u64,
}

/// One seed: dry run to count operations, crash run at a seeded operation, power loss,
/// recovery and the checks. Panics with the seed on any violation.
fn one_seed(rt: &tokio::runtime::Runtime, seed: u64, figures: &mut Figures) {
    let dry = SimDisk::new(seed, Faults::default());
    workload(rt, &dry, seed);
    let total_ops = dry.ops();
    let crash_at = 1 + SplitMix64(seed ^ 0xC4A5).below(total_ops);

    let disk = SimDisk::new(
        seed,
        Faults {
            crash_at_op: Some(crash_at),
            ..Faults::default()
        },
    );
    let run = workload(rt, &disk, seed);
    assert!(
        disk.is_dead(),
        "seed {seed}: op {crash_at} of {total_ops} never came"
    );
    *figures
        .crash_points
        .entry(disk.crashed_in().unwrap_or("?"))
        .or_default() += 1;
    let label = format!(
        "seed {seed} (crash at op {crash_at} of {total_ops}, in {:?})",
        disk.crashed_in()
    );
    recover_and_check(
        rt,
        &run,
        &disk.power_loss(seed.wrapping_mul(31)),
        &label,
        figures,
    );
    figures.seeds += 1;
}

/// Recovers `after` and checks it against what the run did (see the module docs).
fn recover_and_check(
    rt: &tokio::runtime::Runtime,
    run: &Run,
    after: &SimDisk,
    label: &str,
    figures: &mut Figures,
) {
    let (logs, writer) = open(after).unwrap_or_else(|e| panic!("{label}: recovery failed: {e}"));
    for name in &run.topics_created {
        let topic = logs
            .topic(name)
            .unwrap_or_else(|| panic!("{label}: created topic {name} is gone"));
        let expected = TOPICS.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(topic.partition_count(), expected, "{label}: {name}");
        figures.topics_checked += 1;
    }
    for topic in logs.topics() {
        for partition in topic.partitions() {
            let key = (topic.name.clone(), partition.index());
            let recovered = read_back(&logs, &key);
            let appended = run.appends.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            let what = |i: usize| format!("{label}: {key:?} batch {i}");
            assert!(
                recovered.len() <= appended.len(),
                "{}: more batches than were appended",
                what(recovered.len())
            );
            for (i, (offset, bytes)) in recovered.iter().enumerate() {
                let (base, original, _) = &appended[i];
                assert_eq!(offset, base, "{}: wrong offset", what(i));
                assert_eq!(bytes[16..], original[16..], "{}: content changed", what(i));
            }
            for (i, (_, _, append)) in appended.iter().enumerate() {
                if append.is_committed() {
                    assert!(i < recovered.len(), "{}: acknowledged append lost", what(i));
                    figures.acked_appends_checked += 1;
                } else if i < recovered.len() {
                    figures.unacked_appends_survived += 1;
                }
            }
            let hw = run.high_watermarks.get(&key).copied().unwrap_or(0);
            let end = recovered.last().map_or(0, |(o, b)| {
                o + i64::from(BatchHeader::parse(b).unwrap().last_offset_delta) + 1
            });
            assert!(
                end >= hw,
                "{}: high watermark {hw} went back to {end}",
                what(0)
            );

            // The recovered log takes new writes after its recovered end.
            let fresh = batch(u64::MAX, 2);
            let Ok(Appended::New { append, .. }) = rt.block_on(partition.append(vec![fresh], None))
            else {
                panic!("{}: append after recovery refused", what(0));
            };
            assert_eq!(append.base_offset, end, "{}", what(0));
            writer.settle();
            assert!(append.is_committed(), "{}: write after recovery", what(0));
        }
    }
}

/// One seed with the k-th fsync failing (k seeded): the workload goes on, then the power
/// goes. Whatever was acknowledged must be in the recovered log: an append covered by the
/// failed fsync was never acknowledged, and no later fsync of that file (which "succeeds"
/// without writing anything) made anything look durable.
fn one_fsync_failure(rt: &tokio::runtime::Runtime, seed: u64, figures: &mut Figures) {
    let dry = SimDisk::new(seed, Faults::default());
    workload(rt, &dry, seed);
    let fail_at = 1 + SplitMix64(seed ^ 0xF5).below(dry.syncs());
    let disk = SimDisk::new(
        seed,
        Faults {
            fail_sync_at: Some(fail_at),
            ..Faults::default()
        },
    );
    let run = workload(rt, &disk, seed);
    assert!(
        disk.syncs() >= fail_at,
        "seed {seed}: fsync {fail_at} never came"
    );
    let failed: Vec<_> = run
        .appends
        .values()
        .flatten()
        .filter(|(_, _, append)| !append.is_committed())
        .collect();
    figures.refused_after_fsync_failure += failed.len() as u64;
    let label = format!("seed {seed} (fsync {fail_at} of {} failed)", dry.syncs());
    recover_and_check(
        rt,
        &run,
        &disk.power_loss(seed.wrapping_mul(31)),
        &label,
        figures,
    );
    figures.fsync_failures += 1;
}

#[test]
fn acknowledged_writes_survive_power_loss_and_fsync_failures() {
    let seeds: Vec<u64> = match std::env::var("WEIR_POWER_LOSS_SEED") {
        Ok(one) => vec![one.parse().unwrap()],
        Err(_) => {
            let count = std::env::var("WEIR_POWER_LOSS_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000);
            (0..count).collect()
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut figures = Figures::default();
    for seed in seeds {
        one_seed(&rt, seed, &mut figures);
        one_fsync_failure(&rt, seed, &mut figures);
    }
    assert!(figures.refused_after_fsync_failure > 0);
    assert!(figures.acked_appends_checked > 0);
    let json = format!(
        "{{\"seeds\": {}, \"acked_appends_checked\": {}, \"acked_appends_lost\": 0, \
         \"unacked_appends_survived\": {}, \"topics_checked\": {}, \"crash_points\": {:?}, \
         \"fsync_failure_runs\": {}, \"unacked_after_fsync_failure\": {}}}",
        figures.seeds,
        figures.acked_appends_checked,
        figures.unacked_appends_survived,
        figures.topics_checked,
        figures.crash_points,
        figures.fsync_failures,
        figures.refused_after_fsync_failure
    );
    crate::test_figures::save("power-loss", &json);
}
