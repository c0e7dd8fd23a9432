//! The fuzz targets (`weir::fuzzing`) under stable `cargo test`: every input of the committed
//! corpus (`fuzz/corpus/<target>/`, grown by `scripts/fuzz`) and seeded mutations of it, with
//! the process's heap capped so that an input making a parser allocate without bound fails
//! here instead of passing. `WEIR_FUZZ_MUTATIONS` sets the mutations per target (default
//! 20,000); a failing input is written to `target/fuzz-failures/` to replay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use cap::Cap;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use weir::disk::sim::SplitMix64;
use weir::fuzzing::TARGETS;
use weir::protocol::api_table::APIS;

#[global_allocator]
static HEAP: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Heap ceiling for the whole test process: far above what any valid input needs (the
/// broker's own decompression bound is 128 MiB per batch), far below "unbounded".
const HEAP_LIMIT: usize = 768 << 20;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    inputs
}

/// One mutation of the kinds that find parser bugs: bit flips, boundary integers over
/// length and count fields, truncation, duplication, insertion, splicing.
fn mutate(rng: &mut SplitMix64, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len as u64) as usize;
                out[at] ^= 1 << rng.below(8);
            }
            1 if len >= 4 => {
                const EDGES: [i32; 8] = [-1, 0, 1, 0x7f, 0x80, 0xffff, i32::MAX, i32::MIN];
                let at = rng.below(len as u64 - 3) as usize;
                let v = EDGES[rng.below(EDGES.len() as u64) as usize];
                out[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            2 if len > 0 => out.truncate(rng.below(len as u64) as usize),
            3 if len > 0 => {
                let from = rng.below(len as u64) as usize;
                let to = (from + 1 + rng.below(64) as usize).min(len);
                let chunk = out[from..to].to_vec();
                let at = rng.below(len as u64 + 1) as usize;
                out.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(len as u64 + 1) as usize;
                let bytes: Vec<u8> = (0..1 + rng.below(8))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                out.splice(at..at, bytes);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len as u64 + 1) as usize;
                let from = rng.below(other.len() as u64) as usize;
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                let at = rng.below(len as u64) as usize;
                out[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4) as usize];
            }
            _ => out.push(rng.next_u64() as u8),
        }
    }
    out
}

fn run_target(name: &str, target: fn(&[u8]), input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| target(input));
    if outcome.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{:016x}", fnv(input)));
        std::fs::write(&path, input).unwrap();
        panic!(
            "fuzz target {name} failed on {} bytes, saved to {}",
            input.len(),
            path.display()
        );
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    HEAP.set_limit(HEAP_LIMIT).unwrap();
    let mutations: u64 = std::env::var("WEIR_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut figures = Vec::new();
    for (name, target) in TARGETS {
        let inputs = corpus(name);
        assert!(
            inputs.len() >= 5,
            "fuzz/corpus/{name} holds {} inputs: run `scripts/fuzz --seeds`",
            inputs.len()
        );
        for (_, input) in &inputs {
            run_target(name, *target, input);
        }
        let mut rng = SplitMix64(fnv(name.as_bytes()));
        for _ in 0..mutations {
            let a = &inputs[rng.below(inputs.len() as u64) as usize].1;
            let b = &inputs[rng.below(inputs.len() as u64) as usize].1;
            run_target(name, *target, &mutate(&mut rng, a, b));
        }
        figures.push(format!(
            "\"{name}\": {{\"corpus_inputs\": {}, \"mutations\": {mutations}}}",
            inputs.len()
        ));
    }
    assert!(HEAP.max_allocated() <= HEAP_LIMIT);
    common::save_figures(
        "fuzz-replay",
        &format!(
            "{{\"targets\": {{{}}}, \"heap_limit_bytes\": {HEAP_LIMIT}, \"peak_heap_bytes\": {}}}",
            figures.join(", "),
            HEAP.max_allocated()
        ),
    );
}

#[test]
fn the_heap_cap_turns_an_unbounded_allocation_into_a_failure() {
    HEAP.set_limit(HEAP_LIMIT).unwrap();
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve_exact(HEAP_LIMIT + 1).is_err());
}

/// Writes the seed corpus: every served request at every version (default bodies with a real
/// header), real produce and fetch requests, record batches with every codec, compressed
/// sections, and segments of whole and torn batches. Run by `scripts/fuzz --seeds`.
#[test]
#[ignore = "writes fuzz/corpus; run by scripts/fuzz --seeds"]
fn write_seed_corpus() {
    let mut frames = Vec::new();
    let mut bodies = Vec::new();
    for (pick, api) in APIS.iter().enumerate() {
        for version in api.min_served..=api.max {
            let Some(body) = default_request(api.key) else {
                continue;
            };
            let mut header = RequestHeader::default();
            header.request_api_key = api.key as i16;
            header.request_api_version = version;
            header.correlation_id = 7;
            header.client_id = Some(StrBytes::from_static_str("seed"));
            let mut buf = BytesMut::new();
            header
                .encode(&mut buf, api.key.request_header_version(version))
                .unwrap();
            if body.encode(&mut buf, version).is_err() {
                continue;
            }
            let name = format!("{:?}-v{version}", api.key);
            let mut framed = BytesMut::new();
            framed.put_i32(buf.len() as i32);
            framed.extend_from_slice(&buf);
            frames.push((name.clone(), framed.to_vec()));
            let span = (api.max - api.min_served + 1) as u8;
            let mut picked = vec![pick as u8, ((version - api.min_served) as u8) % span];
            picked.extend_from_slice(&buf);
            bodies.push((name, picked));
        }
    }
    for (name, request, version) in [
        (
            "produce-real",
            RequestKind::Produce(common::produce_request("t", 0, common::batch(0, 3, 1), -1)),
            9,
        ),
        (
            "fetch-real",
            RequestKind::Fetch(common::fetch_request("t", 0, 0, 100)),
            12,
        ),
    ] {
        let mut header = RequestHeader::default();
        header.request_api_key = match request {
            RequestKind::Produce(_) => ApiKey::Produce as i16,
            _ => ApiKey::Fetch as i16,
        };
        header.request_api_version = version;
        let key = ApiKey::try_from(header.request_api_key).unwrap();
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        let mut framed = BytesMut::new();
        framed.put_i32(buf.len() as i32);
        framed.extend_from_slice(&buf);
        frames.push((name.to_string(), framed.to_vec()));
    }
    write_corpus("request_frame", &frames);
    write_corpus("request_body", &bodies);

    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    let mut batches = Vec::new();
    let mut sections = Vec::new();
    for (codec_name, codec) in codecs {
        let records: Vec<_> = (0..5)
            .map(|i| {
                common::record(
                    i,
                    1_700_000_000_000 + i,
                    (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                    Bytes::from(format!("value-{i}").repeat(8)),
                )
            })
            .collect();
        let batch = common::encode(&records, codec).to_vec();
        for keys in [0u8, 1] {
            let mut input = vec![keys];
            input.extend_from_slice(&batch);
            batches.push((format!("{codec_name}-keys{keys}"), input));
        }
        if codec != Compression::None {
            let mut input = vec![codec as u8];
            input.extend_from_slice(&batch[61..]);
            sections.push((codec_name.to_string(), input));
        }
    }
    let idempotent = common::producer_batch(5, 0, 0, 3, "idem", false).to_vec();
    let transactional = common::producer_batch(6, 1, 10, 2, "txn", true).to_vec();
    batches.push(("idempotent".into(), [&[0u8][..], &idempotent].concat()));
    batches.push((
        "transactional".into(),
        [&[0u8][..], &transactional].concat(),
    ));
    sections.push(("garbage".into(), b"\x03not a frame at all".to_vec()));
    write_corpus("produce_records", &batches);
    write_corpus("decompress", &sections);

    // Segments: batches with offsets 0.. as the broker stores them, whole and torn.
    let mut log = Vec::new();
    let mut next = 0i64;
    for (_, codec) in codecs {
        let records: Vec<_> = (0..3)
            .map(|i| common::record(i, 1_700_000_000_000, None, Bytes::from("v")))
            .collect();
        let mut batch = common::encode(&records, codec).to_vec();
        batch[..8].copy_from_slice(&next.to_be_bytes());
        let crc = weir::log::batch::compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        log.extend_from_slice(&batch);
        next += 3;
    }
    let segments = vec![
        ("whole".to_string(), log.clone()),
        ("torn-tail".to_string(), log[..log.len() - 7].to_vec()),
        ("torn-header".to_string(), log[..30].to_vec()),
        ("zero-tail".to_string(), [&log[..], &[0u8; 64][..]].concat()),
        ("flipped".to_string(), {
            let mut l = log.clone();
            let at = l.len() - 10;
            l[at] ^= 0x10;
            l
        }),
    ];
    write_corpus("segment_recovery", &segments);
    write_corpus("segment_summary", &weir::fuzzing::segment_summary_seeds());
}

fn write_corpus(target: &str, inputs: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in inputs {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

macro_rules! default_requests {
    ($($kind:ident),* $(,)?) => {
        /// A default-valued request body of `key`, for the APIs this broker serves.
        fn default_request(key: ApiKey) -> Option<RequestKind> {
            match key {
                $(ApiKey::$kind => Some(RequestKind::$kind(Default::default())),)*
                _ => None,
            }
        }
    };
}

default_requests!(
    Produce,
    Fetch,
    ListOffsets,
    Metadata,
    OffsetCommit,
    OffsetFetch,
    FindCoordinator,
    JoinGroup,
    Heartbeat,
    LeaveGroup,
    SyncGroup,
    DescribeGroups,
    ListGroups,
    ApiVersions,
    CreateTopics,
    DeleteTopics,
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
    TxnOffsetCommit,
    DescribeConfigs,
    CreatePartitions,
    DeleteGroups,
    OffsetDelete,
    DescribeCluster,
    DescribeProducers,
    DescribeTransactions,
    ListTransactions,
    ConsumerGroupHeartbeat,
    ConsumerGroupDescribe,
);
