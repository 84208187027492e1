"""Results in git notes: the round trip, reuse of a known tree anywhere, and a stable key."""
from __future__ import annotations

from pathlib import Path

from conftest import git, make_repo

from forgegit import evalstore
from forgegit.config import Settings
from forgegit.records import EvalResult, TaskResult, Usage


def result(key: str, revision: str) -> EvalResult:
    return EvalResult(key, revision, "tree", "t.jsonl", "h", "m", 1, 2, Usage(10, 5, 1),
                      [TaskResult("a", True, "1", "1", "ok"), TaskResult("b", False, "2", "3", "expected 3, got 2", "wrong_answer")])


def test_recorded_result_round_trips_through_a_git_note(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"functions/f.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    evalstore.record(repo, head, result("k1", head))
    got = evalstore.find(repo, "k1", head)
    assert got is not None and got.score == 0.5 and got.results[1].feedback == "expected 3, got 2"
    assert '"k1"' in git(repo, "notes", "--ref", evalstore.NOTES_REF, "show", head)  # readable by humans too


def test_a_result_recorded_on_one_commit_is_found_from_another(tmp_path: Path) -> None:
    """A revert restores a known tree: its score is already known, wherever it was recorded."""
    repo = make_repo(tmp_path / "r", {"functions/f.py": "x = 1\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    evalstore.record(repo, first, result("k2", first))
    assert evalstore.find(repo, "k2", second) is not None
    assert evalstore.find(repo, "other", second) is None


def test_note_updates_merge_instead_of_overwriting(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a": "1"})
    head = git(repo, "rev-parse", "HEAD")
    evalstore.record(repo, head, result("k1", head))
    evalstore.record(repo, head, result("k2", head))
    evalstore.update_note(repo, head, epoch={"epoch": 1})
    note = evalstore.read_note(repo, head)
    assert set(note["evals"]) == {"k1", "k2"} and note["epoch"] == {"epoch": 1}


def test_key_changes_with_tree_tasks_and_model_but_not_with_concurrency() -> None:
    s = Settings()
    k = evalstore.eval_key("t1", "h1", s)
    assert k != evalstore.eval_key("t2", "h1", s)
    assert k != evalstore.eval_key("t1", "h2", s)
    assert k != evalstore.eval_key("t1", "h1", s.with_overrides(model="other"))
    assert k == evalstore.eval_key("t1", "h1", s.with_overrides(concurrency=64, epochs=9))


def test_a_foreign_note_that_is_not_json_is_ignored(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a": "1"})
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "notes", "--ref", evalstore.NOTES_REF, "add", "-m", "hand-written", head)
    assert evalstore.read_note(repo, head) == {}
    assert evalstore.find(repo, "k", head) is None
