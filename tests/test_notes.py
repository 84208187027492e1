"""Results in git notes: the round trip, reuse of a known tree anywhere, and a stable key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import git, make_repo

from forgegit import notes
from forgegit.config import Settings
from forgegit.records import EpochRecord, EvalResult, TaskResult, Usage, to_json


def test_recorded_result_round_trips_through_a_git_note(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"functions/f.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    r = real_result(repo, head)
    notes.record(repo, head, r)
    got = notes.find(repo, r.key, head)
    assert got is not None and got.score == 0.5 and got.results[1].feedback == "no"
    assert f'"{r.key}"' in git(repo, "notes", "--ref", notes.NOTES_REF, "show", head)  # readable by humans too


def test_a_result_recorded_on_one_commit_is_found_from_another(tmp_path: Path) -> None:
    """A revert restores a known tree: its score is already known, wherever it was recorded."""
    repo = make_repo(tmp_path / "r", {"functions/f.py": "x = 1\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    r = real_result(repo, first)
    notes.record(repo, first, r)
    assert notes.find(repo, r.key, second) is not None
    assert notes.find(repo, "other", second) is None


def test_note_updates_merge_instead_of_overwriting(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a": "1"})
    head = git(repo, "rev-parse", "HEAD")
    r1, r2 = real_result(repo, head, "h1"), real_result(repo, head, "h2")
    notes.record(repo, head, r1)
    notes.record(repo, head, r2)
    epoch = to_json(EpochRecord(1, head, None, None, [], "why", 0.5, None, False))
    notes.update_note(repo, head, epoch=epoch)
    note = notes.read_note(repo, head)
    assert set(note["evals"]) == {r1.key, r2.key} and note["epoch"] == epoch


def test_key_changes_with_tree_tasks_and_model_but_not_with_concurrency() -> None:
    s = Settings()
    k = notes.eval_key("t1", "h1", s)
    assert k != notes.eval_key("t2", "h1", s)
    assert k != notes.eval_key("t1", "h2", s)
    assert k != notes.eval_key("t1", "h1", s.with_overrides(model="other"))
    assert k == notes.eval_key("t1", "h1", s.with_overrides(concurrency=64, epochs=9))


def test_a_foreign_note_that_is_not_json_is_ignored(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a": "1"})
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "notes", "--ref", notes.NOTES_REF, "add", "-m", "hand-written", head)
    assert notes.read_note(repo, head) == {}
    assert notes.find(repo, "k", head) is None


# --------------------------------------------------------------------------- notes from untrusted places


def real_result(repo: Path, commit: str, tasks_hash: str = "h", settings: Settings | None = None,
                task_ids: tuple[str, ...] = ("a", "b")) -> EvalResult:
    """A result whose key is what its tree, task hash and settings recompute to (what forgegit records)."""
    s = settings or Settings()
    tree = git(repo, "rev-parse", f"{commit}^{{tree}}")
    key = notes.eval_key(tree, tasks_hash, s)
    results = [TaskResult(t, i == 0, "1", "1", "ok" if i == 0 else "no", None if i == 0 else "wrong_answer")
               for i, t in enumerate(task_ids)]
    return EvalResult(key, commit, tree, "t.jsonl", tasks_hash, s.model, 1, len(results), Usage(10, 5, 1), results,
                      settings={k: getattr(s, k) for k in notes.KEY_SETTINGS})


WRITER = """
import sys
from pathlib import Path
from forgegit import notes
from forgegit.records import EvalResult, Usage
repo, commits, writer, count = Path(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], int(sys.argv[4])
for i in range(count):
    commit = commits[i % len(commits)]
    key = f"w{writer}-{i}"
    notes.record(repo, commit, EvalResult(key, commit, "t", "t.jsonl", "h", "m", 0, 0, Usage(), []))
"""


@pytest.mark.faults
def test_evaluations_recorded_by_processes_writing_at_once_are_all_kept(tmp_path: Path, record_property: Any) -> None:
    """8 processes x 10 results, on two commits at once: every result is in the notes afterwards
    (a lock held only by threads lost 36 of 80 here)."""
    repo = make_repo(tmp_path / "r", {"a": "1"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    writers, count = 8, 10
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(repo), f"{first},{second}", str(w), str(count)],
                              stderr=subprocess.PIPE, text=True) for w in range(writers)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    by_commit = notes.all_notes(repo)
    kept = {k for c in (first, second) for k in by_commit.get(c, {}).get("evals", {})}
    expected = {f"w{w}-{i}" for w in range(writers) for i in range(count)}
    record_property("fault", "8 processes recording 10 results each at once")
    record_property("injected", writers * count)
    record_property("data_lost", len(expected - kept))
    assert kept == expected, f"{len(expected - kept)} of {len(expected)} results lost"
    assert not git(repo, "for-each-ref", notes.TMP_PREFIX)  # no private ref left behind
