"""Attribution per action: one commit per action inside an epoch; a mixed epoch (a good and a harmful edit) that
is not kept as a whole is judged action by action on the same tasks, and the good edit stays."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

import scripted_training
from conftest import git, run_outcome
from scripted_training import adds

from forgegit import history
from forgegit.cli import cli
from forgegit.report import render_markdown


def mixed(i: int, tools: list[str]) -> bool:
    """Odd tasks need `good`; even tasks pass unless `harm` is offered (it misleads the agent)."""
    return ("good" in tools) if i % 2 else ("harm" not in tools)


MIXED_REPLY = adds("good", "harm", content="Add good (solves the odd questions) and harm (a bad idea).")


@pytest.fixture
def mixed_repo(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    def make(config: str = "", where: str = "repo") -> Any:
        training, script = scripted_training.make(tmp_path / where, mixed, [MIXED_REPLY], config=config)
        server = scripted(script)
        llm_env(server)
        monkeypatch.chdir(training.repo)
        return training.repo, server

    return make


def train(*args: str) -> str:
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_mixed_epoch_keeps_the_good_edit_and_drops_the_harmful_one(mixed_repo: Callable[..., Any]) -> None:
    """A reply that adds a good and a harmful function nets +6/-6 and is not kept as a whole; judged alone, the good
    one passes (+6/-0) and the harmful one does not: the branch keeps good.py, reverts harm.py's own commit, and
    the note, `log` and the PR say "kept 1 of 2 actions"."""
    repo, _ = mixed_repo()
    out = train("--run-id", "mix")
    assert "judging its 2 actions one by one" in out and "kept 1 of 2 actions" in out
    run = history.load_run(repo, "forgegit/train/mix")
    (epoch,) = run.epochs
    assert epoch.kept and epoch.kept_actions == (1, 2)
    good, harm = [a for a in epoch.actions if a.accepted]
    assert (good.name, good.kept, harm.name, harm.kept) == ("good", True, "harm", False)
    assert [t.actions for t in epoch.attribution] == [[0], [1]] and [t.kept for t in epoch.attribution] == [True, False]
    assert epoch.score_after == 1.0 and epoch.gate is not None and (epoch.gate.up, epoch.gate.down) == (6, 0)
    files = git(repo, "ls-tree", "--name-only", "forgegit/train/mix:functions").split()
    assert "good.py" in files and "harm.py" not in files
    # one commit per action, then the revert of the dropped one: history and `git revert` work per action
    log = git(repo, "log", "--format=%s", f"{run.base_commit}..forgegit/train/mix").splitlines()
    assert log == ["forgegit: revert epoch 1 action 2 (add harm): kept 1 of 2 actions",
                   "forgegit: epoch 1: add harm", "forgegit: epoch 1: add good"]
    assert git(repo, "show", "--name-only", "--format=", good.commit or "") == "functions/good.py"
    assert epoch.end == epoch.reverts[-1] == git(repo, "rev-parse", "forgegit/train/mix")
    assert run.best_commit == epoch.end and run.improved
    assert "kept 1 of 2 actions" in CliRunner().invoke(cli, ["log", "forgegit/train/mix"]).output
    body = render_markdown(run)
    assert "kept 1 of 2 actions" in body and "(dropped)" in body


def test_attribution_off_reverts_the_whole_mixed_epoch(mixed_repo: Callable[..., Any]) -> None:
    """attribution = false: the mixed epoch is reverted whole (one revert of both action commits)."""
    repo, _ = mixed_repo(config="attribution = false\n")
    train("--run-id", "whole")
    (epoch,) = history.load_run(repo, "forgegit/train/whole").epochs
    assert not epoch.kept and not epoch.attribution and epoch.revert
    assert git(repo, "rev-parse", "forgegit/train/whole:functions") == git(repo, "rev-parse", "main:functions")


def train_subprocess(repo: Path, server: Any, *args: str, crash_at: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    if crash_at:
        env["FORGEGIT_TEST_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "forgegit", "train", "--epochs", "1", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("point", ["during-attribution", "during-revert"])
def test_killed_mid_attribution_resume_ends_like_an_uninterrupted_run(
        mixed_repo: Callable[..., Any], point: str) -> None:
    """A run killed while judging actions one by one (or while reverting the dropped one) resumes to the same
    result as a run never interrupted, and pays no model call twice."""
    reference, server = mixed_repo(where="reference")
    assert train_subprocess(reference, server, "--run-id", "r").returncode == 0
    expected = run_outcome(reference, "forgegit/train/r")
    calls = history.load_run(reference, "forgegit/train/r").usage.calls

    repo, server = mixed_repo(where="killed")
    killed = train_subprocess(repo, server, "--run-id", "r", crash_at=point)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert git(repo, "status", "--porcelain") == ""
    resumed = train_subprocess(repo, server, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_outcome(repo, "forgegit/train/r") == expected
    assert history.load_run(repo, "forgegit/train/r").usage.calls == calls
