package dev.weir.compat;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * {@code txn-produce}: writes {@code --transactions} transactions of {@code --per-transaction}
 * records each with one transactional producer, committing them except every
 * {@code --abort-every}-th, which is aborted. Values are {@code c-<txn>-<i>} for committed and
 * {@code a-<txn>-<i>} for aborted transactions, so a consumer can check what it sees.
 */
final class TransactionalProduce {
    private TransactionalProduce() {}

    static int run(JavaClientCompat.Args a) throws Exception {
        String topic = a.require("topic");
        String transactionalId = a.require("transactional-id");
        int transactions = a.getInt("transactions", 10);
        int perTransaction = a.getInt("per-transaction", 100);
        int abortEvery = a.getInt("abort-every", 0);

        Properties p = JavaClientCompat.commonProps(a, "weir-compat-txn-producer");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        JavaClientCompat.applyProps(a, p);

        long committed = 0;
        long aborted = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            for (int t = 0; t < transactions; t++) {
                boolean abort = abortEvery > 0 && (t + 1) % abortEvery == 0;
                producer.beginTransaction();
                for (int i = 0; i < perTransaction; i++) {
                    String value = (abort ? "a-" : "c-") + t + "-" + i;
                    producer.send(new ProducerRecord<>(topic, null,
                        value.getBytes(StandardCharsets.UTF_8)));
                }
                if (abort) {
                    // Sent first, so the abort has records in the log to hide (the client
                    // would otherwise drop what it has not sent yet).
                    producer.flush();
                    producer.abortTransaction();
                    aborted += perTransaction;
                } else {
                    producer.commitTransaction();
                    committed += perTransaction;
                }
            }
        }
        Map<String, Object> out = JavaClientCompat.obj("cmd", "txn-produce", "ok", true,
            "topic", topic, "committed", committed, "aborted", aborted);
        JavaClientCompat.emit(out);
        return 0;
    }
}
