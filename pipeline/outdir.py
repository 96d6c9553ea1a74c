"""The --out folder: a symbolic link to one complete round, replaced atomically.

Beside OUT verval keeps one hidden folder of its own:

    OUT                              symlink -> .OUT.rounds/<round-id>  (what readers open)
    .OUT.rounds/<round-id>/          a complete round; the link's target is the published one
    .OUT.rounds/<round-id>.tmp/      the work folder of a round being built
    .OUT.rounds/.lock                held (flock) by the run writing to OUT

Readers always see one complete round: publishing renames the finished work folder to
<round-id>, then replaces the link with `os.replace` (atomic), then removes the round it
replaced. A kill at any instant leaves OUT pointing at the previous round or at the new
one, never at a half-written folder. The next run (holding the lock, so no other run is
alive) removes work folders and unpublished rounds left by killed runs.

Nothing verval did not write is ever deleted. Each folder verval creates holds a marker
(MARKER) whose inventory lists every file verval wrote with its size and mtime; removing
an old round removes only files that still match, and keeps (and reports) anything else:
a file a user added through the link, or a workbook filled in place.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from pipeline.errors import InputError

MARKER = ".verval.json"
FORMAT = "verval-round/1"
ROUND_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}$")
# Folders the verval versions before the symlink layout left beside OUT.
OLD_WORK = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9a-f]{8}$")
OLD_PREVIOUS = re.compile(r"^\.(?P<name>.+)\.previous-[0-9a-f]{8}$")


def out_path(out: str | os.PathLike) -> Path:
    """Absolute OUT without following OUT itself (it may be our symlink); the parent is resolved."""
    absolute = Path(os.path.abspath(out))
    return absolute.parent.resolve() / absolute.name


def rounds_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.rounds"


def new_round_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == FORMAT else None


def write_marker(folder: Path, state: str, inventory: dict | None = None) -> None:
    body = {"format": FORMAT, "state": state, "pid": os.getpid(), "inventory": inventory or {}}
    path = folder / MARKER
    path.write_text(json.dumps(body, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)


def take_inventory(folder: Path) -> dict:
    """Every file under `folder` (marker excluded): relative path -> [size, mtime_ns], and
    the sub-folders, so a later removal can tell verval's files from anyone else's."""
    files, dirs = {}, []
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            continue
        if path.is_dir():
            dirs.append(relative)
        elif path.name != MARKER:
            stat = path.stat()
            files[relative] = [stat.st_size, stat.st_mtime_ns]
    return {"files": files, "dirs": dirs}


def is_verval_manifest(folder: Path) -> dict | None:
    """The manifest of a round written by verval (any version), or None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and "verval_version" in manifest and isinstance(manifest.get("outputs"), dict):
        return manifest
    return None


def _linked_round(out: Path) -> Path | None:
    """The round OUT links to, when OUT is verval's link; None when OUT is not a link."""
    if not out.is_symlink():
        return None
    target = (out.parent / os.readlink(out)).resolve()
    rounds = rounds_dir(out).resolve()
    if target.parent == rounds and not target.exists():
        return None  # our link, its round deleted by hand: replaced by the next publish
    if target.parent != rounds or read_marker(target) is None:
        raise InputError(
            f"--out {out}: is a symbolic link verval did not create (it points to {target}). "
            "Give a new or empty folder, or the --out of a previous round."
        )
    return target


def check_out(out: Path) -> str:
    """What OUT is now: "new", "empty", "link" (a previous round) or "legacy" (a previous
    round written as a plain folder by an earlier verval). Refuses anything else, so a
    run can never replace a folder or file it did not write."""
    if out == Path.cwd() or out in Path.cwd().parents:
        raise InputError(f"--out {out}: is the current folder or one of its parents; give a folder of its own, e.g. --out reports/round-1")
    if out.is_symlink():
        _linked_round(out)
        return "link"
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder. Give a folder path (new, empty, or the --out of a previous round).")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return "empty"
    manifest = is_verval_manifest(out)
    if manifest is not None:
        foreign = [name for name in entries if name not in _legacy_known(manifest)]
        if not foreign:
            return "legacy"
        raise InputError(
            f"--out {out}: holds a previous verval round and also {len(foreign)} file(s) verval did not write "
            f"({', '.join(foreign[:3])}). Move those out of the folder and run again."
        )
    raise InputError(
        f"--out {out}: is a folder that already holds {len(entries)} item(s) verval did not write "
        f"({', '.join(entries[:3])}); verval never replaces them. Give a new or empty folder, or the --out of a previous round."
    )


def _legacy_known(manifest: dict) -> set[str]:
    """Top-level names an earlier round wrote: its outputs (files, or folders such as
    lookup/), the manifest and staging/."""
    return {"manifest.json", "staging", *(name.split("/")[0] for name in manifest.get("outputs", {}))}


class OutLock:
    """An exclusive flock on .OUT.rounds/.lock for the whole run; released by the kernel
    if the process dies, so a killed run never blocks the next one."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.fd: int | None = None

    def __enter__(self) -> "OutLock":
        rounds = rounds_dir(self.out)
        rounds.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fd = os.open(rounds / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(
                    f"--out {self.out}: another verval run is writing to this folder now; wait for it to finish."
                ) from None
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        rounds = rounds_dir(self.out)
        # A first run that failed leaves nothing behind: not even the lock.
        if not self.out.is_symlink() and [p.name for p in rounds.iterdir()] == [".lock"]:
            (rounds / ".lock").unlink()
            rounds.rmdir()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def make_work_dir(out: Path, round_id: str) -> Path:
    work = rounds_dir(out) / f"{round_id}.tmp"
    # Personal data (UU 27/2022): the work folder is owner-only from the start.
    work.mkdir(mode=0o700, parents=True)
    write_marker(work, "work")
    return work


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(out: Path, round_dir: Path) -> None:
    """Point OUT at round_dir with one atomic rename of a fresh symlink."""
    temporary = out.parent / f".{out.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(round_dir, out.parent), temporary)
    os.replace(temporary, out)
    _fsync_dir(out.parent)


def _adopt_legacy(folder: Path, manifest: dict, round_id: str, out: Path) -> Path:
    """Move a plain-folder round of an earlier verval into the rounds folder, with an
    inventory of what verval wrote there (outputs whose SHA-256 still matches; staging)."""
    from pipeline.round import sha256

    inventory = take_inventory(folder)
    inventory["files"] = {
        relative: size_mtime for relative, size_mtime in inventory["files"].items()
        if relative.startswith("staging/") or relative == "manifest.json"
        or manifest["outputs"].get(relative, {}).get("sha256") == sha256(folder / relative)
    }
    write_marker(folder, "round", inventory)
    target = rounds_dir(out) / round_id
    os.rename(folder, target)
    return target


def remove_round(folder: Path) -> list[str]:
    """Remove what verval wrote in a round folder; returns the files kept because verval
    did not write them (or they changed since it did)."""
    marker = read_marker(folder)
    if marker is None:
        return []
    written = marker.get("inventory", {})
    now = take_inventory(folder)
    kept = []
    for relative, size_mtime in now["files"].items():
        if written.get("files", {}).get(relative) == size_mtime:
            (folder / relative).unlink()
        else:
            kept.append(relative)
    ours = set(written.get("dirs", [])) | {"duckdb_tmp"}
    for relative in sorted(now["dirs"], key=lambda d: d.count("/"), reverse=True):
        if relative in ours and not any((folder / relative).iterdir()):
            (folder / relative).rmdir()
    if kept:
        return kept
    (folder / MARKER).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # something verval did not write (a folder, a link) stays with it
        return sorted(p.name for p in folder.iterdir())
    return []


def kept_note(folder: Path, kept: list[str]) -> str:
    return (f"kept {len(kept)} file(s) verval did not write (or that changed after it wrote them) in the earlier round "
            f"{folder}: {', '.join(kept[:3])}. Move them somewhere else if you need them; verval never deletes them.")


def clean_stale(out: Path) -> list[str]:
    """Under the lock: finish or undo what killed runs left, and return notes for the user.

    - work folders (<id>.tmp) of killed runs are removed;
    - rounds that are not OUT's target (a kill after the rename, before or after the link
      swap) are removed, files verval did not write kept;
    - temporary links and the work folders of earlier verval versions are removed;
    - if OUT is missing but a complete round exists (a kill while a plain folder was being
      replaced), the newest round is linked again."""
    rounds = rounds_dir(out)
    notes: list[str] = []
    parent = out.parent
    for entry in parent.iterdir():
        old_work = OLD_WORK.match(entry.name)
        if entry.name.startswith(f".{out.name}.link-") and entry.is_symlink():
            entry.unlink()
        elif old_work and old_work["name"] == out.name and entry.is_dir() and not entry.is_symlink() and (
            (entry / "staging").is_dir() or not any(entry.iterdir())
        ):
            shutil.rmtree(entry)
        elif (previous := OLD_PREVIOUS.match(entry.name)) and previous["name"] == out.name and entry.is_dir():
            manifest = is_verval_manifest(entry)
            if manifest is not None:
                _adopt_legacy(entry, manifest, "00000000T000000-" + uuid.uuid4().hex[:6], out)
    linked = _linked_round(out) if out.is_symlink() else None
    complete = []
    for entry in sorted(rounds.iterdir()) if rounds.is_dir() else []:
        name = entry.name
        if name.endswith(".tmp") and ROUND_ID.match(name[:-4]) and entry.is_dir():
            shutil.rmtree(entry)
        elif ROUND_ID.match(name) and entry.is_dir() and read_marker(entry) is not None:
            complete.append(entry)
    if not out.exists() and not out.is_symlink() and complete:
        _link(out, complete[-1])
        linked = complete[-1].resolve()
        notes.append(f"--out {out} was missing after an interrupted run; the last complete round is linked again")
    for entry in complete:
        if linked is None or entry.resolve() != linked:
            kept = remove_round(entry)
            if kept:
                notes.append(kept_note(entry, kept))
    return notes


def prepare_out(out: Path, round_id: str) -> tuple[Path, list[str]]:
    """Under the lock: check OUT, clean what killed runs left, adopt a plain-folder round
    of an earlier verval, and create this run's work folder."""
    notes = clean_stale(out)
    state = check_out(out)
    if state == "legacy":
        manifest = is_verval_manifest(out)
        adopted = _adopt_legacy(out, manifest, "00000000T000000-" + uuid.uuid4().hex[:6], out)
        _link(out, adopted)
    return make_work_dir(out, round_id), notes


def publish(out: Path, work: Path, round_id: str) -> tuple[Path, list[str]]:
    """Make the finished work folder OUT's round: owner-only permissions, inventory,
    rename, one atomic link swap, then remove the round it replaced."""
    shutil.rmtree(work / "duckdb_tmp", ignore_errors=True)
    for path in work.rglob("*"):
        # Outputs carry personal data (UU 27/2022): readable by their owner only.
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    os.chmod(work, 0o700)
    write_marker(work, "round", take_inventory(work))
    final = rounds_dir(out) / round_id
    os.rename(work, final)
    _fsync_dir(final.parent)
    previous = _linked_round(out)
    if not out.is_symlink() and out.is_dir():
        os.rmdir(out)  # only ever an empty folder here (check_out); fails if one appeared since
    _link(out, final)
    notes = []
    if previous is not None:
        kept = remove_round(previous)
        if kept:
            notes.append(kept_note(previous, kept))
    return final, notes
