"""Reading training runs back from git: the run record lives in the note of the run's base commit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from . import evalstore, git
from .errors import ForgegitError
from .records import RunRecord, to_json

BRANCH_PREFIX = "forgegit/train/"


def run_id_of(branch: str) -> str:
    if not branch.startswith(BRANCH_PREFIX):
        raise ForgegitError(f"{branch!r} is not a forgegit training branch ({BRANCH_PREFIX}<run-id>)")
    return branch[len(BRANCH_PREFIX):]


def run_branches(repo: Path) -> list[str]:
    """Training branches, oldest run first (run ids start with a UTC timestamp)."""
    out = git.out(["for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}"], repo)
    return sorted(b for b in out.splitlines() if b)


def latest_run_branch(repo: Path) -> Optional[str]:
    branches = run_branches(repo)
    return branches[-1] if branches else None


def find_run_note(repo: Path, branch: str) -> tuple[str, dict[str, Any]]:
    """(base commit, run JSON): the first commit on the branch's first-parent line whose note holds the run."""
    run_id = run_id_of(branch)
    if not git.branch_exists(repo, branch):
        raise ForgegitError(f"no branch {branch!r} (see `git branch --list '{BRANCH_PREFIX}*'`)")
    for commit in git.out(["rev-list", "--first-parent", branch], repo).splitlines():
        run = evalstore.read_note(repo, commit).get("runs", {}).get(run_id)
        if run:
            return commit, run
    raise ForgegitError(f"{branch}: no forgegit run record in the notes (fetch them: git fetch origin refs/notes/forgegit:refs/notes/forgegit)")


def load_run(repo: Path, branch: str) -> RunRecord:
    """The run record of a training branch."""
    return RunRecord.from_json(find_run_note(repo, branch)[1])


def save_run(repo: Path, run: RunRecord) -> None:
    """Write the run record into its base commit's note."""
    evalstore.update_note(repo, run.base_commit, runs={run.run_id: to_json(run)})
