"""The report's header says how many repetitions its tables hold. Run by
`scripts/bench --smoke`, or: python3 -m unittest discover -s bench/tests -t bench"""

import unittest

from weirbench.report import Report


def results(planned: int, reps_done: int) -> dict:
    sessions = [{"name": name, "rep": rep, "workloads": {}}
                for rep in range(1, reps_done + 1) for name in ("weir-fsync", "kafka")]
    return {"meta": {"plan": {"reps": planned}}, "sessions": sessions, "limits": []}


class Repetitions(unittest.TestCase):
    def test_a_whole_run(self):
        self.assertEqual(Report(results(3, 3)).repetitions(), "3 repetition(s)")

    def test_a_run_stopped_early_says_so(self):
        self.assertEqual(Report(results(3, 2)).repetitions(),
                         "2 of 3 planned repetitions (the run was stopped after repetition 2)")


class AbClientShare(unittest.TestCase):
    """The A/B table's ceiling: what background could reach if the broker cost nothing."""

    def report(self, others_cpu_s_per_gib: float) -> str:
        key = "produce.small.rdkafka.p8"
        gib = 1024 ** 3
        background = {"bytes_per_s": 60 * 2 ** 20, "broker_cpu_s_per_gib": 18.0,
                      "others_cpu_s_per_gib": others_cpu_s_per_gib, "machine_busy_pct": 95.0}
        inline = {"bytes_per_s": gib / 64, "broker_cpu_s_per_gib": 44.0,
                  "others_cpu_s_per_gib": 29.0, "machine_busy_pct": 62.0}
        sessions = [{"name": "weir-fsync", "rep": 1, "workloads": {key: background}},
                    {"name": "weir-fsync-inline", "rep": 1, "workloads": {key: inline}}]
        results = {"meta": {"plan": {"reps": 1, "producer_counts": [8]}, "machine": {"cpus": 2}},
                   "sessions": sessions, "limits": []}
        r = Report(results)
        r.ab_client_share()
        return next(line for line in r.lines if "one record per request" in line)

    def test_ceiling_and_the_broker_cost_that_would_meet_the_target(self):
        # 2 cores / 16 CPU-s per GiB = 1/8 GiB/s, 8x inline's 1/64 GiB/s; 5x inline needs
        # 2 / (5/64) = 25.6 CPU-s per GiB in all, so the broker may use 25.6 - 16 = 9.6.
        row = self.report(16.0).split(" | ")
        self.assertEqual(row[-2], "8.00")
        self.assertEqual(row[-1].rstrip(" |"), "9.60")

    def test_load_generators_alone_over_the_budget(self):
        row = self.report(40.0)
        self.assertIn("none: the load generators alone exceed it", row)


if __name__ == "__main__":
    unittest.main()
