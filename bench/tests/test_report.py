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


if __name__ == "__main__":
    unittest.main()
