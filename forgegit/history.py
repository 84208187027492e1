"""Reading training runs back from git: the run record lives in the note of the run's base commit."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Optional

from . import git, notes
from .errors import ForgegitError
from .records import RunRecord, to_json

BRANCH_PREFIX = "forgegit/train/"


def run_id_of(branch: str) -> str:
    if not branch.startswith(BRANCH_PREFIX):
        raise ForgegitError(f"{branch!r} is not a forgegit training branch ({BRANCH_PREFIX}<run-id>)")
    return branch[len(BRANCH_PREFIX):]


def _branches(repo: Path) -> list[str]:
    out = git.out(["for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}"], repo)
    return [b for b in out.splitlines() if b]


def _recorded_runs(repo: Path) -> dict[str, dict[str, Any]]:
    """Every run record in the notes, by run id (the most recently saved one where a run id repeats)."""
    runs: dict[str, dict[str, Any]] = {}
    for note in notes.all_notes(repo).values():
        for run_id, run in (note.get("runs") or {}).items():
            if run_id not in runs or _when(run) > _when(runs[run_id]):
                runs[run_id] = run
    return runs


def _when(run: dict[str, Any]) -> str:
    return str(run.get("updated") or run.get("started") or "")


def run_branches(repo: Path) -> list[str]:
    """Training branches, the least recently started or updated run first (from the run records; a
    record older than these times counts as oldest, then by its name's timestamp)."""
    runs = _recorded_runs(repo)
    return sorted(_branches(repo), key=lambda b: (_when(runs.get(b[len(BRANCH_PREFIX):], {})), b))


def latest_run_branch(repo: Path) -> Optional[str]:
    """The branch of the run started or updated most recently (not the alphabetically last name)."""
    branches = run_branches(repo)
    return branches[-1] if branches else None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def find_run_note(repo: Path, branch: str) -> tuple[str, dict[str, Any]]:
    """(base commit, run JSON): the first commit on the branch's first-parent line whose note holds the run."""
    run_id = run_id_of(branch)
    if not git.branch_exists(repo, branch):
        raise ForgegitError(f"no branch {branch!r} (see `git branch --list '{BRANCH_PREFIX}*'`)")
    for commit in git.out(["rev-list", "--first-parent", branch], repo).splitlines():
        run = notes.read_note(repo, commit).get("runs", {}).get(run_id)
        if run:
            return commit, run
    raise ForgegitError(f"{branch}: no forgegit run record in the notes (fetch them: git fetch origin refs/notes/forgegit:refs/notes/forgegit)")


def load_run(repo: Path, branch: str) -> RunRecord:
    """The run record of a training branch."""
    return RunRecord.from_json(find_run_note(repo, branch)[1])


def save_run(repo: Path, run: RunRecord) -> None:
    """Write the run record into its base commit's note (stamped with the time it was saved)."""
    run.started = run.started or now()
    run.updated = now()
    notes.update_note(repo, run.base_commit, runs={run.run_id: to_json(run)})
