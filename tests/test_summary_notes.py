"""`git log --notes=forgegit-summary` is readable: one line per commit, beside the JSON data note,
pushed with it by `forgegit pr` (issue 14, item 17)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import git
from fake_github import FakeGitHub, bare_origin

from forgegit.cli import main
from forgegit.summary import LIMIT, summary_line

REPOSITORY = "octo/agent"
TOKEN = "ghs_test_token"


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = tmp_path_factory.mktemp("summary") / "demo"
    proc = subprocess.run([sys.executable, "-m", "forgegit", "demo", "--dir", str(demo)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return demo


def test_git_log_with_the_summary_notes_shows_one_readable_line_per_epoch_commit(demo_repo: Path) -> None:
    """`git log --notes=forgegit-summary` on the demo's branch gives each commit one short line saying
    the epoch, its verdict and scores; the data note stays JSON for programs."""
    log = git(demo_repo, "log", "--notes=forgegit-summary", "--format=%H%x00%s%x00%N%x01", "forgegit/train/demo")
    entries = [e.strip().split("\x00") for e in log.split("\x01") if e.strip()]
    by_subject = {subject: note.strip() for _, subject, note in entries}
    assert all(len(note.splitlines()) == 1 and len(note) <= LIMIT for note in by_subject.values()), by_subject
    assert by_subject["forgegit: epoch 1: add digit_sum"].startswith("forgegit: epoch 1 kept: train 8.3% -> 100.0%")
    assert by_subject["forgegit: epoch 2: revise digit_sum"].startswith("forgegit: epoch 2 reverted: train 100.0% -> 0.0%")
    revert = next(note for subject, note in by_subject.items() if subject.startswith("forgegit: revert epoch 2"))
    assert revert.startswith("forgegit: revert of epoch 2") and "back to train 100.0%" in revert
    base = by_subject["demo: an agent with one function"]
    assert base.startswith("forgegit: run demo starts here: baseline train 8.3%, 3 epochs (1 kept), finished")
    assert "final gate passed" in next(note for _, _, note in entries[:1])  # the branch tip holds the final gate
    for commit, _, _ in entries:  # the data is still data
        data = json.loads(git(demo_repo, "notes", "--ref=forgegit", "show", commit))
        assert isinstance(data, dict) and set(data) & {"epoch", "runs", "evals", "final"}
    raw = git(demo_repo, "log", "--notes=forgegit", "-1", "forgegit/train/demo~1")
    summary = git(demo_repo, "log", "--notes=forgegit-summary", "-1", "forgegit/train/demo~1")
    assert len(summary) * 10 < len(raw)


def test_a_hostile_note_still_gives_one_defused_summary_line() -> None:
    """Text in a note (anyone can push notes) cannot break the line or start a workflow command."""
    note = {"epoch": {"epoch": 1, "commit": "c", "revert": None, "kept": True, "score_before": 0.5, "score_after": 0.75,
                      "actions": [{"kind": "add", "name": "x\n::error::pwned", "accepted": True}],
                      "gate": {"test": "mcnemar\n", "p_value": 0.01}}}
    line = summary_line("c", note)
    assert "\n" not in line and "\r" not in line and not line.startswith("::")  # one line, never a workflow command
    assert "+x\\n::error::pwned" in line  # shown as text, the line break escaped
    assert line.startswith("forgegit: epoch 1 kept: train 50.0% -> 75.0%") and len(line) <= LIMIT
    assert summary_line("c", {}) == ""


def test_pr_pushes_the_summary_notes_with_the_data_notes(
        demo_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """After `forgegit pr`, origin has refs/notes/forgegit-summary too, so a clone's `git log` reads it."""
    origin = bare_origin(demo_repo, tmp_path / "origin.git")
    with FakeGitHub(REPOSITORY, token=TOKEN, origin=origin) as gh:
        monkeypatch.chdir(demo_repo)
        for k, v in gh.env().items():
            monkeypatch.setenv(k, v)
        main(["pr"])
        assert "opened pull request #1" in capsys.readouterr().out
    assert git(origin, "rev-parse", "refs/notes/forgegit-summary") == git(demo_repo, "rev-parse", "refs/notes/forgegit-summary")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(clone, "fetch", "-q", "origin", "refs/notes/forgegit-summary:refs/notes/forgegit-summary",
        "+refs/heads/forgegit/train/demo:refs/heads/forgegit/train/demo")
    assert "forgegit: epoch 1 kept" in git(clone, "log", "--notes=forgegit-summary", "forgegit/train/demo")
