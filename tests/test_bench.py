"""verval bench reads every stage's time from the round's progress lines (summary.json is
written before the last stages run) and turns two sizes into a growth exponent."""

import time

from pipeline.bench import exponent, logged_stages, scaling_table


def test_stage_lines_are_read_from_the_round_log(tmp_path):
    log = tmp_path / "round.log"
    log.write_text("  ✓ ingest-dtks                     5.93 s   peak     1,424 MiB\n"
                   "noise ✓ not a stage line\n"
                   "  ✓ workbooks                      35.60 s   peak      1594 MiB   cpu   61.20 s\n", encoding="utf-8")
    assert logged_stages(log) == [
        {"stage": "ingest-dtks", "seconds": 5.93, "peak_rss_mib": 1424.0},
        {"stage": "workbooks", "seconds": 35.6, "peak_rss_mib": 1594.0, "cpu_seconds": 61.2},
    ]


def test_a_stage_clock_counts_the_cpu_time_of_its_threads():
    import threading

    from pipeline.progress import StageClock

    def spin():
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass

    clock = StageClock(quiet=True)
    with clock.stage("busy"):
        threads = [threading.Thread(target=spin) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with clock.stage("idle"):
        time.sleep(0.2)
    busy, idle = clock.timings
    assert busy["cpu_seconds"] >= 0.3
    assert idle["cpu_seconds"] < 0.1 and idle["seconds"] >= 0.2


def test_growth_exponent():
    assert exponent(10.0, 100.0, 1_000_000, 10_000_000) == 1.0
    assert exponent(10.0, 300.0, 1_000_000, 10_000_000) == 1.48
    assert exponent(0.01, 5.0, 1_000_000, 10_000_000) is None  # too small to tell


def test_scaling_table_shows_the_cores_each_stage_kept_busy():
    result = {"rows": 1000, "round": {"wall_seconds": 10.0, "peak_rss_mib": 100.0, "cpu_seconds": 15.0},
              "stages": [{"stage": "link", "seconds": 4.0, "peak_rss_mib": 90.0, "cpu_seconds": 6.0},
                         {"stage": "old", "seconds": 2.0, "peak_rss_mib": 50.0}]}
    table = scaling_table([result])
    assert table["cores@1,000"].to_list() == [1.5, None, 1.5]
