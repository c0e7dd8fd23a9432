"""The runner's parsers against output recorded from the real tools (Kafka 4.1.2's tools,
rdkafka_performance of librdkafka 2.12.1, fio 3.33, iperf3 3.12). Run by `scripts/bench
--smoke`, or: python3 -m unittest discover -s bench/tests -t bench"""

import json
import math
import unittest

from weirbench import parsers

PRODUCER_PERFORMANCE = """\
99991 records sent, 19998.2 records/sec (19.53 MB/sec), 3.1 ms avg latency, 190.0 ms max latency.
200000 records sent, 68004.1 records/sec (66.41 MB/sec), 358.40 ms avg latency, 570.00 ms max latency, 365 ms 50th, 522 ms 95th, 546 ms 99th, 559 ms 99.9th.
"""

CONSUMER_PERFORMANCE = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-22 05:41:18:535, 2026-11-22 05:41:22:351, 390.6250, 102.3650, 400000, 104821.8029, 1468, 2348, 166.3650, 170357.7513
"""

CONSUMER_PERFORMANCE_TIMEOUT = """\
WARNING: Exiting before consuming the expected number of messages: timeout (10000 ms) exceeded. You can use the --timeout option to increase the timeout.
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-22 05:41:18:535, 2026-11-22 05:41:32:351, 10.0000, 0.7238, 10240, 741.1, 3000, 10816, 0.9245, 946.7
"""

END_TO_END_LATENCY = """\
0\t161.348554
1000\t0.8812949999999999
Avg latency: 1.9164 ms
Percentiles: 50th = 0, 99th = 10, 99.9th = 17
The node does not support OFFSET_COMMIT
org.apache.kafka.common.errors.UnsupportedVersionException: The node does not support OFFSET_COMMIT
"""

RDKAFKA_PRODUCER = """\
%4|1795325980.484|CONFWARN|rdkafka#producer-1| [thrd:app]: Configuration property auto.offset.reset is a consumer property and will be ignored by this producer instance
% Sending 200000 messages of size 1024 bytes
% 16 backpressures for 200000 produce calls: 0.008% backpressure rate
% 200000 messages produced (204800000 bytes), 200000 delivered (offset 79039, 0 failed) in 372ms: 537046 msgs/s and 549.94 MB/s, 16 produce failures, 0 in queue, no compression
"""

RDKAFKA_CONSUMER = """\
%4|1795325980.866|CONFWARN|rdkafka#consumer-1| [thrd:app]: Configuration property message.send.max.retries is a producer property and will be ignored by this consumer instance
% 400000 messages (409600000 bytes) consumed in 970ms: 412295 msgs/s (422.19 MB/s), latency curr/avg/lo/hi 1.20/4.88/0.90/238.80ms
% Average application fetch latency: 3us
"""

FIO = json.dumps({"fio version": "fio-3.33", "jobs": [{"jobname": "fdatasync_64k", "write": {
    "bw_bytes": 20430887, "iops": 311.75}, "sync": {"lat_ns": {"N": 1559, "percentile": {
        "50.000000": 3948544, "99.000000": 7569408, "99.900000": 8978432}}}}]})

IPERF3 = json.dumps({"end": {"sum_received": {"bits_per_second": 4.0e10}}})


class Parsers(unittest.TestCase):
    def test_producer_performance_takes_the_summary_line(self):
        r = parsers.producer_performance(PRODUCER_PERFORMANCE, 1024)
        self.assertEqual(r["records"], 200000)
        self.assertAlmostEqual(r["bytes_per_s"], 68004.1 * 1024)
        self.assertAlmostEqual(r["bytes_per_s"] / 2**20, 66.41, places=2)  # the tool's MB is MiB
        self.assertEqual((r["lat_p50_ms"], r["lat_p99_ms"], r["lat_p999_ms"]), (365, 546, 559))

    def test_producer_performance_without_summary_fails(self):
        with self.assertRaises(parsers.ParseError):
            parsers.producer_performance(PRODUCER_PERFORMANCE.splitlines()[0], 1024)

    def test_consumer_performance(self):
        r = parsers.consumer_performance(CONSUMER_PERFORMANCE)
        self.assertEqual(r["records"], 400000)
        self.assertAlmostEqual(r["bytes"], 400000 * 1024)
        self.assertAlmostEqual(r["bytes_per_s"], 166.365 * 2**20)
        self.assertAlmostEqual(r["seconds"], 2.348)
        self.assertNotIn("warning", r)

    def test_consumer_performance_timeout_warning(self):
        r = parsers.consumer_performance(CONSUMER_PERFORMANCE_TIMEOUT)
        self.assertEqual(r["records"], 10240)
        self.assertIn("timeout", r["warning"])

    def test_end_to_end_latency_even_after_a_late_failure(self):
        r = parsers.end_to_end_latency(END_TO_END_LATENCY)
        self.assertAlmostEqual(r["lat_avg_ms"], 1.9164)
        self.assertEqual((r["lat_p50_ms"], r["lat_p99_ms"], r["lat_p999_ms"]), (0, 10, 17))

    def test_rdkafka_producer(self):
        r = parsers.rdkafka_producer(RDKAFKA_PRODUCER)
        self.assertEqual(r["records"], 200000)
        self.assertAlmostEqual(r["bytes_per_s"], 204800000 / 0.372)

    def test_rdkafka_consumer(self):
        r = parsers.rdkafka_consumer(RDKAFKA_CONSUMER)
        self.assertEqual(r["bytes"], 409600000)
        self.assertAlmostEqual(r["bytes_per_s"], 409600000 / 0.970)

    def test_latency_file_percentiles(self):
        r = parsers.latency_file("\n".join(str(x) for x in range(1000, 0, -1)) + "\n")
        self.assertEqual(r["samples"], 1000)
        self.assertEqual(r["lat_p50_ms"], 0.5)
        self.assertEqual(r["lat_p99_ms"], 0.99)
        self.assertEqual(r["lat_p999_ms"], 0.999)
        self.assertEqual(r["lat_max_ms"], 1.0)

    def test_percentile_edges(self):
        self.assertTrue(math.isnan(parsers.percentile([], 50)))
        self.assertEqual(parsers.percentile([5.0], 99.9), 5.0)

    def test_fio_and_iperf3(self):
        f = parsers.fio(FIO)
        self.assertAlmostEqual(f["bytes_per_s"], 20430887)
        self.assertAlmostEqual(f["fdatasync_p99_ms"], 7.569408)
        self.assertAlmostEqual(parsers.iperf3(IPERF3)["bytes_per_s"], 5.0e9)


if __name__ == "__main__":
    unittest.main()
