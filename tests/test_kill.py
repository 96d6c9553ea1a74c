"""kill -9 at any instant of a round: during ingest, during matching, and at each step of
publish. The previous outputs stay byte-identical (or, once the link has been switched,
--out shows the complete new round), and the next run removes what the killed one left
and succeeds. SIGTERM unwinds and removes the work folder at once."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from corpus import base, snapshot

from pipeline.cli import main
from pipeline.paths import PROJECT_DIR
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round

# The child runs the round as verval does, with one function replaced by a SIGKILL of
# itself at the chosen instant. (Great Expectations is skipped in the child only to spare
# its import; the kill and what it leaves behind are the same.)
CHILD = textwrap.dedent("""
    import os, signal, sys
    import pipeline.round as r
    import pipeline.outdir as outdir
    from pipeline.matching import dedupe
    from pipeline.progress import StageClock

    point, dtks, dukcapil, out = sys.argv[1:5]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def before(module, name, when=lambda *a, **k: True):
        original = getattr(module, name)
        setattr(module, name, lambda *a, **k: die() if when(*a, **k) else original(*a, **k))

    r.expectations = lambda ctx, kind: {}
    if point == "ingest":
        before(r, "ingest_extract", lambda path, kind, *rest: kind == "dukcapil")
    elif point == "matching":
        before(dedupe, "find_duplicates")
    elif point == "publish-inventory":
        before(outdir, "write_marker", lambda folder, state, *rest: state == "round")
    elif point == "publish-renamed":
        before(outdir, "_link")
    elif point == "publish-switched":
        before(outdir, "remove_round")
    elif point == "publish-removing":
        def half_then_die(folder):
            for path in sorted(p for p in folder.rglob("*.parquet"))[:3]:
                path.unlink()
            die()
        outdir.remove_round = half_then_die
    r.run_round(r.RoundContext(dtks=dtks, dukcapil=dukcapil, out=out, as_of="2026-11-22", decision_log=out + ".log"),
                StageClock(quiet=True))
""")
BEFORE_SWITCH = ("ingest", "matching", "publish-inventory", "publish-renamed")
AFTER_SWITCH = ("publish-switched", "publish-removing")


def complete(out) -> bool:
    """--out shows one round whose files all match its manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    return all(hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
               for name, entry in manifest["outputs"].items())


def leftovers(out) -> list[str]:
    rounds = out.parent / f".{out.name}.rounds"
    current = out.resolve().name
    stray = [p.name for p in rounds.iterdir() if p.name not in (".lock", current)]
    return stray + [p.name for p in out.parent.iterdir() if ".link-" in p.name or ".tmp-" in p.name]


@pytest.fixture
def published(tmp_path):
    run = base(tmp_path)
    ctx = RoundContext(dtks=str(run.dtks), dukcapil=str(run.dukcapil), out=str(run.out), as_of="2026-11-21",
                       decision_log=str(tmp_path / "log.jsonl"))
    run_round(ctx, StageClock(quiet=True))
    return run


@pytest.mark.parametrize("point", BEFORE_SWITCH + AFTER_SWITCH)
def test_kill_9_then_next_run_cleans_up(published, point):
    out = published.out
    before, target = snapshot(out), out.resolve()
    child = subprocess.run([sys.executable, "-c", CHILD, point, str(published.dtks), str(published.dukcapil), str(out)],
                           cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    if point in BEFORE_SWITCH:
        assert out.resolve() == target and snapshot(out) == before
    else:
        assert out.resolve() != target and complete(out)
    assert leftovers(out) or point == "publish-switched" or point == "publish-removing"

    ctx = RoundContext(dtks=str(published.dtks), dukcapil=str(published.dukcapil), out=str(out), as_of="2026-11-23",
                       decision_log=str(out.parent / "log.jsonl"))
    run_round(ctx, StageClock(quiet=True))
    assert complete(out) and leftovers(out) == []


def test_sigterm_unwinds_and_removes_the_work_folder(published, monkeypatch, capsys):
    import pipeline.round as round_module

    out = published.out
    before = snapshot(out)
    original = round_module.find_duplicates

    def terminated(ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(ctx)

    monkeypatch.setattr(round_module, "find_duplicates", terminated)
    code = main(["run", "--dtks", str(published.dtks), "--dukcapil", str(published.dukcapil), "--out", str(out),
                 "--no-prefect", "--quiet", "--decision-log", str(out.parent / "log.jsonl")])
    assert code == 130 and "previous outputs are untouched" in capsys.readouterr().err
    assert snapshot(out) == before and leftovers(out) == []
