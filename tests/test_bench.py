"""verval bench reads every stage's time from the round's progress lines (summary.json is
written before the last stages run) and turns two sizes into a growth exponent."""

from pipeline.bench import exponent, logged_stages


def test_stage_lines_are_read_from_the_round_log(tmp_path):
    log = tmp_path / "round.log"
    log.write_text("  ✓ ingest-dtks                     5.93 s   peak     1,424 MiB\n"
                   "noise ✓ not a stage line\n"
                   "  ✓ workbooks                      35.60 s   peak      1594 MiB\n", encoding="utf-8")
    assert logged_stages(log) == [
        {"stage": "ingest-dtks", "seconds": 5.93, "peak_rss_mib": 1424.0},
        {"stage": "workbooks", "seconds": 35.6, "peak_rss_mib": 1594.0},
    ]


def test_growth_exponent():
    assert exponent(10.0, 100.0, 1_000_000, 10_000_000) == 1.0
    assert exponent(10.0, 300.0, 1_000_000, 10_000_000) == 1.48
    assert exponent(0.01, 5.0, 1_000_000, 10_000_000) is None  # too small to tell
