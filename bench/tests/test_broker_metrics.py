"""Weir's metrics as the runner reads them around a workload: the Prometheus text it scrapes,
and the quantiles it derives from the histogram buckets a workload added. Run by
`scripts/bench --smoke`, or: python3 -m unittest discover -s bench/tests -t bench"""

import unittest

from weirbench.brokers import WeirBroker, parse_counters
from weirbench.workloads import histogram_quantile, wal_groups

# The shape metrics-exporter-prometheus writes (labels sorted as registered, le last).
SCRAPE = """\
# TYPE weir_request_duration_seconds histogram
weir_request_duration_seconds_bucket{api="Fetch",le="0.001"} 900
weir_request_duration_seconds_bucket{api="Produce",le="0.001"} 50
weir_request_duration_seconds_bucket{api="Produce",le="0.0025"} 90
weir_request_duration_seconds_bucket{api="Produce",le="0.005"} 100
weir_request_duration_seconds_bucket{api="Produce",le="+Inf"} 100
weir_request_duration_seconds_sum{api="Produce"} 0.12
weir_request_duration_seconds_count{api="Produce"} 100
weir_wal_fsync_duration_seconds_bucket{le="0.0005"} 7
weir_wal_fsync_duration_seconds_bucket{le="+Inf"} 8
weir_wal_fsync_duration_seconds_sum 0.004
weir_wal_fsync_duration_seconds_count 8
weir_wal_group_bytes_sum 800000
weir_wal_group_bytes_count 8
weir_wal_group_requests_sum 16
"""


class ParseCounters(unittest.TestCase):
    def test_series_and_filtered_buckets(self):
        c = parse_counters(SCRAPE, WeirBroker.WAL_SERIES, WeirBroker.HISTOGRAMS)
        self.assertEqual(c["weir_wal_group_bytes_sum"], 800000)
        self.assertEqual(c["weir_wal_fsync_duration_seconds_count"], 8)
        # Fetch's bucket is left out; Produce's are kept by their bound.
        self.assertEqual(c["produce_s:0.001"], 50)
        self.assertEqual(c["produce_s:+Inf"], 100)
        self.assertEqual(c["fsync_s:0.0005"], 7)
        self.assertEqual(len([k for k in c if k.startswith("produce_s:")]), 4)


class Quantiles(unittest.TestCase):
    def test_interpolates_inside_the_bucket(self):
        d = {"x:0.001": 50, "x:0.0025": 90, "x:0.005": 100, "x:+Inf": 100}
        self.assertAlmostEqual(histogram_quantile(d, "x", 0.5), 0.001)
        # rank 70 lies halfway through the (1, 2.5] ms bucket.
        self.assertAlmostEqual(histogram_quantile(d, "x", 0.7), 0.00175)
        self.assertAlmostEqual(histogram_quantile(d, "x", 0.99), 0.0025 + 0.0025 * 0.9)

    def test_inf_bucket_gives_the_highest_bound(self):
        d = {"x:0.001": 1, "x:+Inf": 10}
        self.assertEqual(histogram_quantile(d, "x", 0.99), 0.001)

    def test_no_samples(self):
        self.assertIsNone(histogram_quantile({"x:0.001": 0, "x:+Inf": 0}, "x", 0.5))
        self.assertIsNone(histogram_quantile({}, "x", 0.5))

    def test_a_workload_counts_only_what_it_added(self):
        before = parse_counters(SCRAPE, WeirBroker.WAL_SERIES, WeirBroker.HISTOGRAMS)
        after = dict(before)
        for k, v in (("produce_s:0.001", 50), ("produce_s:0.0025", 90), ("produce_s:0.005", 150),
                     ("produce_s:+Inf", 150), ("fsync_s:0.0005", 9), ("fsync_s:+Inf", 10),
                     ("weir_wal_fsync_duration_seconds_count", 10),
                     ("weir_wal_fsync_duration_seconds_sum", 0.005),
                     ("weir_wal_group_bytes_count", 10)):
            after[k] = v
        r = wal_groups(before, after)
        # 50 new requests, all in (2.5, 5] ms: the median is in the middle of that bucket.
        self.assertAlmostEqual(r["broker_produce_p50_ms"], 3.75)
        self.assertEqual(r["wal_fsyncs"], 2)
        # Both new fsyncs took at most 0.5 ms: the median is the bucket's middle.
        self.assertAlmostEqual(r["broker_fsync_p50_ms"], 0.25)


if __name__ == "__main__":
    unittest.main()
