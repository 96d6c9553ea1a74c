"""The --out folder: what verval refuses, what it keeps, and how it takes over the
plain-folder outputs and leftovers of earlier versions."""

import json
import shutil

import pytest
from corpus import base

from pipeline import outdir
from pipeline.errors import InputError
from pipeline.progress import StageClock
from pipeline.round import RoundContext, run_round


def run(r, as_of="2026-11-21"):
    ctx = RoundContext(dtks=str(r.dtks), dukcapil=str(r.dukcapil), out=str(r.out), as_of=as_of,
                       decision_log=str(r.out.parent / "log.jsonl"))
    return run_round(ctx, StageClock(quiet=True))


@pytest.fixture
def published(tmp_path):
    r = base(tmp_path)
    run(r)
    return r


def test_files_added_or_changed_in_a_round_are_kept(published):
    out = published.out
    first = out.resolve()
    (out / "catatan.txt").write_text("mine")
    filled = next((out / "anomalies").glob("3201-*.xlsx"))
    with open(filled, "ab") as handle:  # a reviewer filled a kabupaten's workbook in place
        handle.write(b" ")
    summary = run(published, as_of="2026-11-22")
    assert out.resolve() != first
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*")) == [
        ".verval.json", "anomalies", f"anomalies/{filled.name}", "catatan.txt"]
    assert any("catatan.txt" in w and filled.name in w for w in summary["warnings"])


def test_rerun_for_the_same_date_replaces_its_history_entry(published):
    run(published)
    history = json.loads((published.out / "history.json").read_text())
    assert [h["as_of"] for h in history] == ["2026-11-21"]


def test_plain_folder_round_of_an_earlier_version_is_taken_over(published, tmp_path):
    out = published.out
    legacy = tmp_path / "legacy"
    shutil.copytree(out.resolve(), legacy)
    (legacy / outdir.MARKER).unlink()
    out.unlink()
    shutil.rmtree(tmp_path / ".out.rounds")
    legacy.rename(out)
    summary = run(published, as_of="2026-11-22")
    assert out.is_symlink() and summary["reconciliation"]["balanced"]
    assert [h["as_of"] for h in json.loads((out / "history.json").read_text())] == ["2026-11-21", "2026-11-22"]
    assert sorted(p.name for p in (tmp_path / ".out.rounds").iterdir()) == [".lock", out.resolve().name]


def test_plain_folder_round_with_a_foreign_file_is_refused(published, tmp_path):
    out = published.out
    target = out.resolve()
    out.unlink()
    target.rename(out)
    (out / outdir.MARKER).unlink()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="mine.txt"):
        run(published)
    assert (out / "mine.txt").read_text() == "keep"


def test_leftovers_of_earlier_versions_are_removed_or_recovered(published, tmp_path):
    out = published.out
    old_work = tmp_path / ".out.tmp-0123abcd"
    (old_work / "staging").mkdir(parents=True)
    (old_work / "staging" / "dtks.parquet").write_bytes(b"x")
    # Killed between the two renames of the old publish: no --out, history in .previous-*.
    target = out.resolve()
    out.unlink()
    (target / outdir.MARKER).unlink()
    target.rename(tmp_path / ".out.previous-89abcdef")
    shutil.rmtree(tmp_path / ".out.rounds")
    run(published, as_of="2026-11-22")
    assert not old_work.exists() and not (tmp_path / ".out.previous-89abcdef").exists()
    assert [h["as_of"] for h in json.loads((out / "history.json").read_text())] == ["2026-11-21", "2026-11-22"]


def test_a_second_run_on_the_same_out_is_refused_while_one_is_running(published):
    with outdir.OutLock(published.out):
        with pytest.raises(InputError, match="another verval run is writing"):
            run(published)


def test_refused_out_leaves_nothing_beside_it(tmp_path):
    r = base(tmp_path)
    r.out.write_text("a file")
    with pytest.raises(InputError, match="is a file"):
        run(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dtks.csv", "dukcapil.csv", "out"]
