package dev.weir.compat;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.message.ApiVersionsResponseData;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.requests.AbstractResponse;
import org.apache.kafka.common.requests.ApiVersionsRequest;
import org.apache.kafka.common.requests.ApiVersionsResponse;
import org.apache.kafka.common.requests.RequestHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.common.utils.Utils;

/**
 * Drives the real Apache Kafka Java client against a broker (Weir or a reference Kafka).
 *
 * <p>Usage: {@code java -jar weir-java-compat.jar <command> [--option value ...]}. Every command
 * prints JSON objects, one per line, on stdout; the last line is the summary and carries
 * {@code "ok": true|false}. Logging goes to stderr. Exit code: 0 ok, 1 failure, 2 usage error.
 *
 * <p>Record content is a pure function of a message index {@code i} so that {@code consume} can
 * verify what {@code produce} wrote: key {@code <key-prefix><i>}, value {@code v-<i>-} followed by
 * deterministic padding up to {@code --value-size} bytes, headers {@code idx=<i>} and
 * {@code src=weir-java-compat}, timestamp {@code base + i}.
 */
public final class JavaClientCompat {

    static final String DEFAULT_KEY_PREFIX = "k-";
    static final int DEFAULT_VALUE_SIZE = 100;
    static final String SRC_HEADER_VALUE = "weir-java-compat";
    static final int MAX_REPORTED_ERRORS = 20;

    private JavaClientCompat() {
    }

    // ------------------------------------------------------------------------------------------
    // entry point

    public static void main(String[] argv) {
        if (argv.length == 0 || argv[0].equals("-h") || argv[0].equals("--help") || argv[0].equals("help")) {
            System.err.println(USAGE);
            System.exit(argv.length == 0 ? 2 : 0);
        }
        String cmd = argv[0];
        int rc;
        try {
            Args a = Args.parse(argv, 1);
            rc = switch (cmd) {
                case "metadata" -> metadata(a);
                case "create-topic" -> createTopic(a);
                case "delete-topic" -> deleteTopic(a);
                case "describe-topic" -> describeTopic(a);
                case "describe-configs" -> describeConfigs(a);
                case "produce" -> produce(a);
                case "txn-produce" -> TransactionalProduce.run(a);
                case "consume" -> consume(a);
                case "end-offsets" -> endOffsets(a);
                case "offsets-for-times" -> offsetsForTimes(a);
                case "api-versions" -> apiVersions(a);
                case "version" -> version();
                default -> throw new UsageException("unknown command '" + cmd + "'");
            };
            a.checkAllUsed();
        } catch (UsageException e) {
            fail(cmd, "usage: " + e.getMessage(), null);
            System.err.println(USAGE);
            rc = 2;
        } catch (Throwable t) {
            Throwable root = unwrap(t);
            fail(cmd, describe(root), root);
            rc = 1;
        }
        System.out.flush();
        System.err.flush();
        // Client threads (e.g. a producer stuck on a dead broker) must not keep the JVM alive.
        System.exit(rc);
    }

    static final String USAGE = String.join("\n",
        "usage: java -jar weir-java-compat.jar <command> [options]",
        "commands:",
        "  metadata        --bootstrap B [--internal]",
        "  create-topic    --bootstrap B --topic T [--partitions N] [--replication-factor R]",
        "                  [--config k=v ...] [--if-not-exists] [--no-wait]",
        "  delete-topic    --bootstrap B --topic T [--if-exists] [--no-wait]",
        "  describe-topic  --bootstrap B --topic T",
        "  describe-configs --bootstrap B (--topic T | --broker ID)",
        "  produce         --bootstrap B --topic T --count N [--acks all|1|0]",
        "                  [--compression none|gzip|snappy|lz4|zstd] [--key-prefix P] [--value-size S]",
        "                  [--start I] [--base-timestamp MS] [--partition P] [--linger-ms L]",
        "                  [--batch-size BYTES] [--max-in-flight N] [--timeout-ms M]",
        "  consume         --bootstrap B --topic T --expect N [--timeout-ms M] [--key-prefix P]",
        "                  [--value-size S] [--start I] [--base-timestamp MS]",
        "                  [--check-partitioner true|false] [--any-start-offset]",
        "                  [--group G [--group-protocol classic|consumer]] [--max-poll-records N]",
        "  txn-produce     --bootstrap B --topic T --transactional-id ID [--transactions N]",
        "                  [--per-transaction N] [--abort-every K]",
        "  end-offsets     --bootstrap B --topic T",
        "  offsets-for-times --bootstrap B --topic T --timestamp MS",
        "  api-versions    [--bootstrap B]   (broker's ApiVersions vs. this client's range)",
        "  version",
        "common options: --client-id ID, --prop k=v (extra client config, repeatable), --timeout-ms M");

    // ------------------------------------------------------------------------------------------
    // admin commands

    static int metadata(Args a) throws Exception {
        long timeout = a.getLong("timeout-ms", 30_000);
        boolean internal = a.flag("internal");
        try (Admin admin = Admin.create(adminProps(a))) {
            DescribeClusterResult dc = admin.describeCluster(new DescribeClusterOptions().timeoutMs((int) timeout));
            String clusterId = dc.clusterId().get(timeout, TimeUnit.MILLISECONDS);
            Node controller = dc.controller().get(timeout, TimeUnit.MILLISECONDS);
            Collection<Node> nodes = dc.nodes().get(timeout, TimeUnit.MILLISECONDS);
            Set<String> topics = admin.listTopics(new ListTopicsOptions().listInternal(internal).timeoutMs((int) timeout))
                .names().get(timeout, TimeUnit.MILLISECONDS);
            List<Object> nodeList = new ArrayList<>();
            nodes.stream().sorted((x, y) -> Integer.compare(x.id(), y.id())).forEach(n -> nodeList.add(nodeJson(n)));
            Map<String, Object> out = obj("cmd", "metadata", "ok", true);
            out.put("client_version", AppInfoParser.getVersion());
            out.put("cluster_id", clusterId);
            out.put("controller", controller == null ? null : nodeJson(controller));
            out.put("nodes", nodeList);
            out.put("topics", new ArrayList<>(new TreeSet<>(topics)));
            emit(out);
        }
        return 0;
    }

    static int createTopic(Args a) throws Exception {
        String topic = a.require("topic");
        int partitions = a.getInt("partitions", 1);
        short rf = (short) a.getInt("replication-factor", 1);
        Map<String, String> configs = a.keyValues("config");
        long timeout = a.getLong("timeout-ms", 30_000);
        boolean ifNotExists = a.flag("if-not-exists");
        boolean noWait = a.flag("no-wait");
        try (Admin admin = Admin.create(adminProps(a))) {
            NewTopic nt = new NewTopic(topic, Optional.of(partitions), Optional.of(rf)).configs(configs);
            CreateTopicsResult res = admin.createTopics(List.of(nt));
            Map<String, Object> out = obj("cmd", "create-topic", "ok", true, "topic", topic);
            boolean existed = false;
            try {
                res.all().get(timeout, TimeUnit.MILLISECONDS);
                out.put("topic_id", String.valueOf(res.topicId(topic).get()));
                out.put("partitions", res.numPartitions(topic).get());
                out.put("replication_factor", res.replicationFactor(topic).get());
            } catch (ExecutionException e) {
                if (ifNotExists && e.getCause() instanceof TopicExistsException) {
                    existed = true;
                } else {
                    throw e;
                }
            }
            out.put("already_existed", existed);
            if (!noWait) {
                TopicDescription td = waitForLeaders(admin, topic, existed ? -1 : partitions, timeout);
                out.put("leaders", leadersJson(td));
            }
            emit(out);
        }
        return 0;
    }

    /** Polls describeTopics until the topic has the expected partition count and every partition a leader. */
    static TopicDescription waitForLeaders(Admin admin, String topic, int partitions, long timeoutMs) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        Throwable last = null;
        while (true) {
            try {
                TopicDescription td = admin.describeTopics(List.of(topic)).allTopicNames()
                    .get(timeoutMs, TimeUnit.MILLISECONDS).get(topic);
                boolean ready = (partitions < 0 || td.partitions().size() == partitions)
                    && td.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
                if (ready) {
                    return td;
                }
                last = new IllegalStateException("topic " + topic + " not ready: " + leadersJson(td));
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) {
                    throw e;
                }
                last = e.getCause();
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("timed out waiting for leaders of " + topic + ": " + describe(last));
            }
            Thread.sleep(100);
        }
    }

    static int deleteTopic(Args a) throws Exception {
        String topic = a.require("topic");
        long timeout = a.getLong("timeout-ms", 30_000);
        boolean ifExists = a.flag("if-exists");
        boolean noWait = a.flag("no-wait");
        try (Admin admin = Admin.create(adminProps(a))) {
            boolean existed = true;
            try {
                admin.deleteTopics(List.of(topic)).all().get(timeout, TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                if (ifExists && e.getCause() instanceof UnknownTopicOrPartitionException) {
                    existed = false;
                } else {
                    throw e;
                }
            }
            boolean gone = false;
            if (!noWait) {
                long deadline = System.currentTimeMillis() + timeout;
                while (!gone) {
                    gone = !admin.listTopics().names().get(timeout, TimeUnit.MILLISECONDS).contains(topic);
                    if (!gone) {
                        if (System.currentTimeMillis() > deadline) {
                            throw new IllegalStateException("topic " + topic + " still listed after delete");
                        }
                        Thread.sleep(100);
                    }
                }
            }
            emit(obj("cmd", "delete-topic", "ok", true, "topic", topic, "existed", existed, "gone", gone));
        }
        return 0;
    }

    static int describeTopic(Args a) throws Exception {
        String topic = a.require("topic");
        long timeout = a.getLong("timeout-ms", 30_000);
        try (Admin admin = Admin.create(adminProps(a))) {
            TopicDescription td = admin.describeTopics(List.of(topic)).allTopicNames()
                .get(timeout, TimeUnit.MILLISECONDS).get(topic);
            List<Object> parts = new ArrayList<>();
            for (TopicPartitionInfo p : td.partitions()) {
                Map<String, Object> pj = obj("partition", p.partition(),
                    "leader", p.leader() == null || p.leader().isEmpty() ? null : p.leader().id());
                pj.put("replicas", p.replicas().stream().map(Node::id).toList());
                pj.put("isr", p.isr().stream().map(Node::id).toList());
                parts.add(pj);
            }
            Map<String, Object> out = obj("cmd", "describe-topic", "ok", true, "topic", td.name());
            out.put("topic_id", String.valueOf(td.topicId()));
            out.put("internal", td.isInternal());
            out.put("partition_count", td.partitions().size());
            out.put("partitions", parts);
            emit(out);
        }
        return 0;
    }

    static int describeConfigs(Args a) throws Exception {
        long timeout = a.getLong("timeout-ms", 30_000);
        String topic = a.get("topic", null);
        String broker = a.get("broker", null);
        if ((topic == null) == (broker == null)) {
            throw new UsageException("describe-configs needs exactly one of --topic or --broker");
        }
        ConfigResource res = topic != null
            ? new ConfigResource(ConfigResource.Type.TOPIC, topic)
            : new ConfigResource(ConfigResource.Type.BROKER, broker);
        try (Admin admin = Admin.create(adminProps(a))) {
            Config cfg = admin.describeConfigs(List.of(res)).all().get(timeout, TimeUnit.MILLISECONDS).get(res);
            List<ConfigEntry> entries = new ArrayList<>(cfg.entries());
            entries.sort((x, y) -> x.name().compareTo(y.name()));
            List<Object> list = new ArrayList<>();
            Map<String, Object> byName = new LinkedHashMap<>();
            for (ConfigEntry e : entries) {
                Map<String, Object> ej = obj("name", e.name(), "value", e.value(), "source", String.valueOf(e.source()));
                ej.put("default", e.isDefault());
                ej.put("read_only", e.isReadOnly());
                ej.put("sensitive", e.isSensitive());
                list.add(ej);
                byName.put(e.name(), e.value());
            }
            Map<String, Object> out = obj("cmd", "describe-configs", "ok", true,
                "resource_type", res.type().name(), "resource", res.name());
            out.put("count", list.size());
            out.put("configs", list);
            out.put("values", byName);
            emit(out);
        }
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // produce

    static int produce(Args a) throws Exception {
        String topic = a.require("topic");
        long count = a.getLong("count", 1000);
        long start = a.getLong("start", 0);
        String acks = a.get("acks", "all");
        String compression = a.get("compression", "none");
        String keyPrefix = a.get("key-prefix", DEFAULT_KEY_PREFIX);
        int valueSize = a.getInt("value-size", DEFAULT_VALUE_SIZE);
        long baseTs = a.getLong("base-timestamp", System.currentTimeMillis() - count);
        Integer forcedPartition = a.has("partition") ? a.getInt("partition", 0) : null;
        long timeout = a.getLong("timeout-ms", 120_000);

        Properties p = commonProps(a, "weir-compat-producer");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, acks);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        // The 4.x default (idempotence on for acks=all) is kept: --prop enable.idempotence=false
        // turns it off.
        p.put(ProducerConfig.LINGER_MS_CONFIG, a.get("linger-ms", "5"));
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, a.get("batch-size", "16384"));
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, a.get("max-in-flight", "5"));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(Math.min(timeout, 60_000)));
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, String.valueOf(Math.max(timeout, 35_000)));
        applyProps(a, p);

        final Map<Integer, long[]> perPartition = new TreeMap<>(); // partition -> {count, minOffset, maxOffset}
        final AtomicLong failed = new AtomicLong();
        final List<String> errors = Collections.synchronizedList(new ArrayList<>());
        final AtomicLong acked = new AtomicLong();
        long t0 = System.nanoTime();
        long bytes = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (long i = start; i < start + count; i++) {
                byte[] key = (keyPrefix + i).getBytes(StandardCharsets.UTF_8);
                byte[] value = valueFor(i, valueSize);
                bytes += key.length + value.length;
                List<Header> headers = List.of(
                    new RecordHeader("idx", Long.toString(i).getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("src", SRC_HEADER_VALUE.getBytes(StandardCharsets.UTF_8)));
                ProducerRecord<byte[], byte[]> rec =
                    new ProducerRecord<>(topic, forcedPartition, baseTs + i, key, value, headers);
                final long idx = i;
                producer.send(rec, (RecordMetadata md, Exception e) -> {
                    if (e != null) {
                        failed.incrementAndGet();
                        if (errors.size() < MAX_REPORTED_ERRORS) {
                            errors.add("index " + idx + ": " + describe(e));
                        }
                        return;
                    }
                    acked.incrementAndGet();
                    synchronized (perPartition) {
                        long[] s = perPartition.computeIfAbsent(md.partition(),
                            k -> new long[] {0, Long.MAX_VALUE, Long.MIN_VALUE});
                        s[0]++;
                        if (md.hasOffset()) {
                            s[1] = Math.min(s[1], md.offset());
                            s[2] = Math.max(s[2], md.offset());
                        }
                    }
                });
            }
            producer.flush();
        }
        long elapsedMs = (System.nanoTime() - t0) / 1_000_000;

        Map<String, Object> parts = new LinkedHashMap<>();
        boolean contiguous = true;
        synchronized (perPartition) {
            for (Map.Entry<Integer, long[]> e : perPartition.entrySet()) {
                long[] s = e.getValue();
                boolean hasOffsets = s[1] != Long.MAX_VALUE;
                Map<String, Object> pj = obj("count", s[0],
                    "first_offset", hasOffsets ? s[1] : null,
                    "last_offset", hasOffsets ? s[2] : null);
                if (hasOffsets && s[2] - s[1] + 1 != s[0]) {
                    contiguous = false;
                }
                parts.put(Integer.toString(e.getKey()), pj);
            }
        }
        boolean ok = failed.get() == 0 && acked.get() == count;
        Map<String, Object> out = obj("cmd", "produce", "ok", ok, "topic", topic);
        out.put("count", acked.get());
        out.put("requested", count);
        out.put("failed", failed.get());
        out.put("errors", new ArrayList<>(errors));
        out.put("acks", acks);
        out.put("compression", compression);
        out.put("start", start);
        out.put("base_timestamp", baseTs);
        out.put("value_size", valueSize);
        out.put("partitions", parts);
        out.put("offsets_contiguous", contiguous);
        out.put("bytes", bytes);
        out.put("elapsed_ms", elapsedMs);
        out.put("records_per_sec", elapsedMs == 0 ? null : count * 1000 / elapsedMs);
        emit(out);
        if (!ok) {
            System.err.println("produce failed: " + failed.get() + " of " + count + " sends failed; first: "
                + (errors.isEmpty() ? "?" : errors.get(0)));
        }
        return ok ? 0 : 1;
    }

    /** Deterministic value for message index i: "v-<i>-" padded to size bytes (never truncated). */
    static byte[] valueFor(long i, int size) {
        String head = "v-" + i + "-";
        StringBuilder sb = new StringBuilder(Math.max(size, head.length()));
        sb.append(head);
        int j = 0;
        while (sb.length() < size) {
            sb.append((char) ('a' + (int) ((i + j) % 26)));
            j++;
        }
        return sb.toString().getBytes(StandardCharsets.US_ASCII);
    }

    // ------------------------------------------------------------------------------------------
    // consume

    static int consume(Args a) throws Exception {
        String topic = a.require("topic");
        long expect = a.getLong("expect", -1);
        if (expect < 0) {
            throw new UsageException("consume needs --expect N");
        }
        long timeout = a.getLong("timeout-ms", 60_000);
        long start = a.getLong("start", 0);
        String keyPrefix = a.get("key-prefix", DEFAULT_KEY_PREFIX);
        int valueSize = a.getInt("value-size", DEFAULT_VALUE_SIZE);
        Long baseTs = a.has("base-timestamp") ? a.getLong("base-timestamp", 0) : null;
        boolean checkPartitioner = Boolean.parseBoolean(a.get("check-partitioner", "true"));
        boolean anyStartOffset = a.flag("any-start-offset");
        String group = a.get("group", null);

        Properties p = commonProps(a, "weir-compat-consumer");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, a.get("max-poll-records", "500"));
        p.put(ConsumerConfig.CHECK_CRCS_CONFIG, "true");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, a.get("group-protocol", "classic"));
        }
        applyProps(a, p);

        Map<Integer, PartState> states = new TreeMap<>();
        List<String> errors = new ArrayList<>();
        long errorCount = 0;
        BitSet seen = new BitSet();
        long count = 0;
        long bytes = 0;
        long t0 = System.nanoTime();
        long deadline = System.currentTimeMillis() + timeout;
        Map<String, Object> out = obj("cmd", "consume", "topic", topic);

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofMillis(Math.min(timeout, 30_000)));
            if (infos == null || infos.isEmpty()) {
                throw new IllegalStateException("no partitions for topic " + topic);
            }
            int numPartitions = infos.size();
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : infos) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            tps.sort((x, y) -> Integer.compare(x.partition(), y.partition()));
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(tps, Duration.ofMillis(30_000));
            for (TopicPartition tp : tps) {
                PartState st = new PartState();
                st.begin = begin.get(tp);
                st.nextOffset = anyStartOffset ? -1 : 0;
                if (!anyStartOffset && st.begin != 0) {
                    errorCount++;
                    addError(errors, "partition " + tp.partition() + ": beginning offset is " + st.begin + ", not 0");
                }
                states.put(tp.partition(), st);
            }
            if (group == null) {
                consumer.assign(tps);
                consumer.seekToBeginning(tps);
            } else {
                consumer.subscribe(List.of(topic));
            }

            while (count < expect && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    count++;
                    bytes += (r.key() == null ? 0 : r.key().length) + (r.value() == null ? 0 : r.value().length);
                    PartState st = states.computeIfAbsent(r.partition(), k -> new PartState());
                    String err = checkRecord(r, st, seen, start, expect, keyPrefix, valueSize, baseTs,
                        checkPartitioner ? numPartitions : -1);
                    if (err != null) {
                        errorCount++;
                        addError(errors, "p" + r.partition() + "@" + r.offset() + ": " + err);
                    }
                }
            }
            long elapsedMs = (System.nanoTime() - t0) / 1_000_000;

            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofMillis(30_000));
            Map<String, Object> parts = new LinkedHashMap<>();
            for (TopicPartition tp : tps) {
                PartState st = states.get(tp.partition());
                long pos = -1;
                try {
                    pos = consumer.position(tp, Duration.ofMillis(10_000));
                } catch (RuntimeException e) {
                    // not assigned (group mode) or no position: report -1
                }
                Map<String, Object> pj = obj("count", st.count,
                    "first_offset", st.firstOffset < 0 ? null : st.firstOffset,
                    "last_offset", st.lastOffset < 0 ? null : st.lastOffset);
                pj.put("beginning_offset", st.begin);
                pj.put("end_offset", end.get(tp));
                pj.put("position", pos);
                parts.put(Integer.toString(tp.partition()), pj);
                if (count == expect && pos >= 0 && pos < end.get(tp)) {
                    errorCount++;
                    addError(errors, "partition " + tp.partition() + ": position " + pos + " < end offset "
                        + end.get(tp) + " after " + expect + " records (more records than expected)");
                }
            }
            if (count < expect) {
                errorCount++;
                addError(errors, "timed out after " + timeout + " ms: got " + count + " of " + expect + " records");
            } else if (count > expect) {
                errorCount++;
                addError(errors, "got " + count + " records, expected " + expect);
            }
            long distinct = seen.cardinality();
            if (count == expect && distinct != expect) {
                errorCount++;
                addError(errors, "distinct indexes " + distinct + " != expected " + expect);
            }
            if (group != null) {
                consumer.commitSync(Duration.ofMillis(30_000));
                Map<TopicPartition, OffsetAndMetadata> committed =
                    consumer.committed(new java.util.HashSet<>(tps), Duration.ofMillis(30_000));
                Map<String, Object> cj = new LinkedHashMap<>();
                for (TopicPartition tp : tps) {
                    OffsetAndMetadata om = committed.get(tp);
                    cj.put(Integer.toString(tp.partition()), om == null ? null : om.offset());
                }
                out.put("group", group);
                out.put("committed", cj);
            }
            boolean ok = errorCount == 0;
            out.put("ok", ok);
            out.put("count", count);
            out.put("expected", expect);
            out.put("distinct", distinct);
            out.put("error_count", errorCount);
            out.put("errors", errors);
            out.put("partitions", parts);
            out.put("bytes", bytes);
            out.put("elapsed_ms", elapsedMs);
            emit(out);
            if (!ok) {
                System.err.println("consume failed: " + errorCount + " errors; first: " + errors.get(0));
            }
            return ok ? 0 : 1;
        }
    }

    static final class PartState {
        long begin = -1;
        long nextOffset = -1; // -1: accept any first offset
        long lastIndex = -1;
        long count;
        long firstOffset = -1;
        long lastOffset = -1;
    }

    static void addError(List<String> errors, String e) {
        if (errors.size() < MAX_REPORTED_ERRORS) {
            errors.add(e);
        }
    }

    /** Checks one record against the deterministic content; returns an error message or null. */
    static String checkRecord(ConsumerRecord<byte[], byte[]> r, PartState st, BitSet seen, long start, long expect,
                              String keyPrefix, int valueSize, Long baseTs, int numPartitions) {
        st.count++;
        if (st.firstOffset < 0) {
            st.firstOffset = r.offset();
        }
        String err = null;
        if (st.nextOffset >= 0 && r.offset() != st.nextOffset) {
            err = "offset " + r.offset() + " but expected " + st.nextOffset + " (gap or reorder)";
        }
        st.nextOffset = r.offset() + 1;
        st.lastOffset = r.offset();
        if (r.key() == null) {
            return firstNonNull(err, "null key");
        }
        String key = new String(r.key(), StandardCharsets.UTF_8);
        if (!key.startsWith(keyPrefix)) {
            return firstNonNull(err, "key '" + key + "' lacks prefix '" + keyPrefix + "'");
        }
        long idx;
        try {
            idx = Long.parseLong(key.substring(keyPrefix.length()));
        } catch (NumberFormatException e) {
            return firstNonNull(err, "key '" + key + "' has no index");
        }
        if (idx < start || idx >= start + expect) {
            err = firstNonNull(err, "index " + idx + " outside [" + start + ", " + (start + expect) + ")");
        } else {
            int bit = (int) (idx - start);
            if (seen.get(bit)) {
                err = firstNonNull(err, "duplicate index " + idx);
            }
            seen.set(bit);
        }
        if (idx <= st.lastIndex) {
            err = firstNonNull(err, "index " + idx + " after " + st.lastIndex + " in the same partition (reordered)");
        }
        st.lastIndex = Math.max(st.lastIndex, idx);
        byte[] want = valueFor(idx, valueSize);
        if (r.value() == null) {
            err = firstNonNull(err, "null value for index " + idx);
        } else if (!java.util.Arrays.equals(want, r.value())) {
            err = firstNonNull(err, "value mismatch for index " + idx + " (len " + r.value().length + ", want "
                + want.length + ")");
        }
        Header h = r.headers().lastHeader("idx");
        if (h == null) {
            err = firstNonNull(err, "missing header idx");
        } else if (!Long.toString(idx).equals(new String(h.value(), StandardCharsets.UTF_8))) {
            err = firstNonNull(err, "header idx=" + new String(h.value(), StandardCharsets.UTF_8) + " for key " + key);
        }
        Header src = r.headers().lastHeader("src");
        if (src == null || !SRC_HEADER_VALUE.equals(new String(src.value(), StandardCharsets.UTF_8))) {
            err = firstNonNull(err, "missing/wrong header src");
        }
        int headerCount = r.headers().toArray().length;
        if (headerCount != 2) {
            err = firstNonNull(err, "expected 2 headers, got " + headerCount);
        }
        if (baseTs != null) {
            if (r.timestampType() != TimestampType.CREATE_TIME) {
                err = firstNonNull(err, "timestamp type " + r.timestampType() + ", expected CreateTime");
            } else if (r.timestamp() != baseTs + idx) {
                err = firstNonNull(err, "timestamp " + r.timestamp() + ", expected " + (baseTs + idx));
            }
        }
        if (numPartitions > 0) {
            int want2 = Utils.toPositive(Utils.murmur2(r.key())) % numPartitions;
            if (want2 != r.partition()) {
                err = firstNonNull(err, "key " + key + " in partition " + r.partition() + ", default partitioner says "
                    + want2);
            }
        }
        return err;
    }

    static String firstNonNull(String a, String b) {
        return a != null ? a : b;
    }

    // ------------------------------------------------------------------------------------------
    // offsets

    static KafkaConsumer<byte[], byte[]> plainConsumer(Args a) {
        Properties p = commonProps(a, "weir-compat-offsets");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        applyProps(a, p);
        return new KafkaConsumer<>(p);
    }

    static List<TopicPartition> partitionsOf(KafkaConsumer<?, ?> c, String topic, long timeout) {
        List<PartitionInfo> infos = c.partitionsFor(topic, Duration.ofMillis(timeout));
        if (infos == null || infos.isEmpty()) {
            throw new IllegalStateException("no partitions for topic " + topic);
        }
        List<TopicPartition> tps = new ArrayList<>();
        for (PartitionInfo pi : infos) {
            tps.add(new TopicPartition(topic, pi.partition()));
        }
        tps.sort((x, y) -> Integer.compare(x.partition(), y.partition()));
        return tps;
    }

    static int endOffsets(Args a) {
        String topic = a.require("topic");
        long timeout = a.getLong("timeout-ms", 30_000);
        try (KafkaConsumer<byte[], byte[]> c = plainConsumer(a)) {
            List<TopicPartition> tps = partitionsOf(c, topic, timeout);
            Map<TopicPartition, Long> begin = c.beginningOffsets(tps, Duration.ofMillis(timeout));
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofMillis(timeout));
            Map<String, Object> parts = new LinkedHashMap<>();
            long total = 0;
            for (TopicPartition tp : tps) {
                parts.put(Integer.toString(tp.partition()), obj("beginning", begin.get(tp), "end", end.get(tp)));
                total += end.get(tp) - begin.get(tp);
            }
            Map<String, Object> out = obj("cmd", "end-offsets", "ok", true, "topic", topic);
            out.put("partitions", parts);
            out.put("total", total);
            emit(out);
        }
        return 0;
    }

    static int offsetsForTimes(Args a) {
        String topic = a.require("topic");
        long ts = a.getLong("timestamp", Long.MIN_VALUE);
        if (ts == Long.MIN_VALUE) {
            throw new UsageException("offsets-for-times needs --timestamp MS");
        }
        long timeout = a.getLong("timeout-ms", 30_000);
        try (KafkaConsumer<byte[], byte[]> c = plainConsumer(a)) {
            List<TopicPartition> tps = partitionsOf(c, topic, timeout);
            Map<TopicPartition, Long> query = new HashMap<>();
            for (TopicPartition tp : tps) {
                query.put(tp, ts);
            }
            Map<TopicPartition, OffsetAndTimestamp> res = c.offsetsForTimes(query, Duration.ofMillis(timeout));
            Map<String, Object> parts = new LinkedHashMap<>();
            for (TopicPartition tp : tps) {
                OffsetAndTimestamp ot = res.get(tp);
                if (ot == null) {
                    parts.put(Integer.toString(tp.partition()), null);
                } else {
                    Map<String, Object> pj = obj("offset", ot.offset(), "timestamp", ot.timestamp());
                    pj.put("leader_epoch", ot.leaderEpoch().orElse(null));
                    parts.put(Integer.toString(tp.partition()), pj);
                }
            }
            Map<String, Object> out = obj("cmd", "offsets-for-times", "ok", true, "topic", topic, "timestamp", ts);
            out.put("partitions", parts);
            emit(out);
        }
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // api-versions: one raw ApiVersions round trip (no client state machine), compared with the
    // version ranges this client build supports.

    static int apiVersions(Args a) throws Exception {
        String bootstrap = a.get("bootstrap", null);
        Map<Short, short[]> broker = new TreeMap<>();
        short usedVersion = -1;
        if (bootstrap != null) {
            String hp = bootstrap.split(",")[0].trim();
            int colon = hp.lastIndexOf(':');
            String host = hp.substring(0, colon);
            int port = Integer.parseInt(hp.substring(colon + 1));
            int timeout = (int) a.getLong("timeout-ms", 10_000);
            short v = ApiKeys.API_VERSIONS.latestVersion();
            ApiVersionsResponse resp = null;
            try {
                resp = apiVersionsRoundTrip(host, port, v, timeout);
            } catch (RuntimeException e) {
                System.err.println("ApiVersions v" + v + " failed (" + describe(e) + "), retrying with v0");
            }
            if (resp == null || resp.data().errorCode() != 0) {
                v = 0;
                resp = apiVersionsRoundTrip(host, port, v, timeout);
            }
            usedVersion = v;
            if (resp.data().errorCode() != 0) {
                throw new IllegalStateException("ApiVersions error code " + resp.data().errorCode());
            }
            for (ApiVersionsResponseData.ApiVersion av : resp.data().apiKeys()) {
                broker.put(av.apiKey(), new short[] {av.minVersion(), av.maxVersion()});
            }
        }
        TreeSet<Short> keys = new TreeSet<>(broker.keySet());
        for (ApiKeys k : ApiKeys.clientApis()) {
            keys.add(k.id);
        }
        List<Object> apis = new ArrayList<>();
        List<String> unusable = new ArrayList<>();
        for (short id : keys) {
            ApiKeys k = ApiKeys.hasId(id) ? ApiKeys.forId(id) : null;
            Map<String, Object> j = obj("api_key", (int) id, "name", k == null ? "UNKNOWN_" + id : k.name);
            boolean clientApi = k != null && ApiKeys.clientApis().contains(k);
            j.put("client_api", clientApi);
            if (k != null) {
                j.put("client_min", (int) k.oldestVersion());
                j.put("client_max", (int) k.latestVersion());
            }
            short[] b = broker.get(id);
            if (b != null) {
                j.put("broker_min", (int) b[0]);
                j.put("broker_max", (int) b[1]);
            }
            if (k != null && b != null) {
                int lo = Math.max(k.oldestVersion(), b[0]);
                int hi = Math.min(k.latestVersion(), b[1]);
                j.put("usable", lo <= hi ? hi : null);
                if (lo > hi) {
                    unusable.add(k.name);
                }
            }
            apis.add(j);
        }
        Map<String, Object> out = obj("cmd", "api-versions", "ok", true, "client_version", AppInfoParser.getVersion());
        out.put("bootstrap", bootstrap);
        out.put("request_version", bootstrap == null ? null : (int) usedVersion);
        out.put("apis", apis);
        out.put("no_common_version", unusable);
        emit(out);
        return 0;
    }

    static ApiVersionsResponse apiVersionsRoundTrip(String host, int port, short version, int timeoutMs)
            throws IOException {
        ApiVersionsRequest req = new ApiVersionsRequest.Builder(version).build(version);
        RequestHeader header = new RequestHeader(ApiKeys.API_VERSIONS, version, "weir-java-compat", 1);
        ByteBuffer payload = req.serializeWithHeader(header);
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), timeoutMs);
            s.setSoTimeout(timeoutMs);
            DataOutputStream os = new DataOutputStream(s.getOutputStream());
            byte[] body = new byte[payload.remaining()];
            payload.get(body);
            os.writeInt(body.length);
            os.write(body);
            os.flush();
            DataInputStream is = new DataInputStream(s.getInputStream());
            int size = is.readInt();
            if (size < 4 || size > 1 << 20) {
                throw new IOException("bad ApiVersions response size " + size);
            }
            byte[] resp = new byte[size];
            is.readFully(resp);
            AbstractResponse r = AbstractResponse.parseResponse(ByteBuffer.wrap(resp), header);
            return (ApiVersionsResponse) r;
        }
    }

    static int version() {
        emit(obj("cmd", "version", "ok", true, "client_version", AppInfoParser.getVersion(),
            "commit", AppInfoParser.getCommitId()));
        return 0;
    }

    // ------------------------------------------------------------------------------------------
    // configuration helpers

    static Properties commonProps(Args a, String defaultClientId) {
        Properties p = new Properties();
        p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, a.require("bootstrap"));
        p.put(CommonClientConfigs.CLIENT_ID_CONFIG, a.get("client-id", defaultClientId));
        return p;
    }

    static Properties adminProps(Args a) {
        Properties p = commonProps(a, "weir-compat-admin");
        long timeout = a.getLong("timeout-ms", 30_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(timeout));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, String.valueOf(Math.min(timeout, 30_000)));
        applyProps(a, p);
        return p;
    }

    static void applyProps(Args a, Properties p) {
        p.putAll(a.keyValues("prop"));
    }

    static Map<String, Object> nodeJson(Node n) {
        Map<String, Object> m = obj("id", n.id(), "host", n.host(), "port", n.port());
        m.put("rack", n.hasRack() ? n.rack() : null);
        return m;
    }

    static Map<String, Object> leadersJson(TopicDescription td) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (TopicPartitionInfo p : td.partitions()) {
            m.put(Integer.toString(p.partition()), p.leader() == null || p.leader().isEmpty() ? null : p.leader().id());
        }
        return m;
    }

    // ------------------------------------------------------------------------------------------
    // output helpers

    static void emit(Map<String, Object> m) {
        System.out.println(Json.write(m));
        System.out.flush();
    }

    static void fail(String cmd, String message, Throwable t) {
        Map<String, Object> m = obj("cmd", cmd, "ok", false, "error", message);
        if (t != null) {
            m.put("exception", t.getClass().getName());
        }
        emit(m);
        System.err.println(cmd + " failed: " + message);
    }

    static Throwable unwrap(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof java.util.concurrent.CompletionException)
            && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    static String describe(Throwable t) {
        if (t == null) {
            return "null";
        }
        t = unwrap(t);
        String s = t.getClass().getSimpleName() + ": " + t.getMessage();
        if (t.getCause() != null && t.getCause() != t) {
            s += " (caused by " + t.getCause().getClass().getSimpleName() + ": " + t.getCause().getMessage() + ")";
        }
        return s;
    }

    /** Builds an insertion-ordered map from alternating keys and values. */
    static Map<String, Object> obj(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i + 1 < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static final class UsageException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        UsageException(String msg) {
            super(msg);
        }
    }

    /** Minimal command-line parser: --name value, --name (flag), repeatable --config/--prop k=v. */
    static final class Args {
        private final Map<String, List<String>> values = new LinkedHashMap<>();
        private final Set<String> used = new java.util.HashSet<>();

        static Args parse(String[] argv, int from) {
            Args a = new Args();
            for (int i = from; i < argv.length; i++) {
                String s = argv[i];
                if (!s.startsWith("--") || s.length() == 2) {
                    throw new UsageException("unexpected argument '" + s + "'");
                }
                String name = s.substring(2);
                String value;
                int eq = name.indexOf('=');
                if (eq > 0) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
                    value = argv[++i];
                } else {
                    value = null; // flag
                }
                a.values.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
            }
            return a;
        }

        boolean has(String name) {
            used.add(name);
            return values.containsKey(name);
        }

        boolean flag(String name) {
            used.add(name);
            List<String> v = values.get(name);
            if (v == null) {
                return false;
            }
            String last = v.get(v.size() - 1);
            return last == null || Boolean.parseBoolean(last);
        }

        String get(String name, String dflt) {
            used.add(name);
            List<String> v = values.get(name);
            if (v == null) {
                return dflt;
            }
            String last = v.get(v.size() - 1);
            if (last == null) {
                throw new UsageException("--" + name + " needs a value");
            }
            return last;
        }

        String require(String name) {
            String v = get(name, null);
            if (v == null) {
                throw new UsageException("missing --" + name);
            }
            return v;
        }

        long getLong(String name, long dflt) {
            String v = get(name, null);
            if (v == null) {
                return dflt;
            }
            try {
                return Long.parseLong(v.replace("_", ""));
            } catch (NumberFormatException e) {
                throw new UsageException("--" + name + " expects an integer, got '" + v + "'");
            }
        }

        int getInt(String name, int dflt) {
            return (int) getLong(name, dflt);
        }

        Map<String, String> keyValues(String name) {
            used.add(name);
            Map<String, String> m = new LinkedHashMap<>();
            for (String kv : values.getOrDefault(name, List.of())) {
                int eq = kv == null ? -1 : kv.indexOf('=');
                if (eq <= 0) {
                    throw new UsageException("--" + name + " expects k=v, got '" + kv + "'");
                }
                m.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
            return m;
        }

        void checkAllUsed() {
            for (String k : values.keySet()) {
                if (!used.contains(k)) {
                    System.err.println("warning: option --" + k + " was ignored");
                }
            }
        }
    }

    /** Tiny JSON writer for maps, lists, strings, numbers, booleans and null. */
    static final class Json {
        private Json() {
        }

        static String write(Object o) {
            StringBuilder sb = new StringBuilder();
            write(sb, o);
            return sb.toString();
        }

        private static void write(StringBuilder sb, Object o) {
            if (o == null) {
                sb.append("null");
            } else if (o instanceof String s) {
                string(sb, s);
            } else if (o instanceof Boolean || o instanceof Integer || o instanceof Long || o instanceof Short) {
                sb.append(o);
            } else if (o instanceof Number n) {
                double d = n.doubleValue();
                sb.append(Double.isFinite(d) ? n.toString() : "null");
            } else if (o instanceof Map<?, ?> m) {
                sb.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    if (!first) {
                        sb.append(',');
                    }
                    first = false;
                    string(sb, String.valueOf(e.getKey()));
                    sb.append(':');
                    write(sb, e.getValue());
                }
                sb.append('}');
            } else if (o instanceof Iterable<?> it) {
                sb.append('[');
                boolean first = true;
                for (Object x : it) {
                    if (!first) {
                        sb.append(',');
                    }
                    first = false;
                    write(sb, x);
                }
                sb.append(']');
            } else {
                string(sb, o.toString());
            }
        }

        private static void string(StringBuilder sb, String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                    }
                }
            }
            sb.append('"');
        }
    }
}
