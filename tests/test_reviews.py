"""Reviewers teach the optimizer: a forgegit PR's line comments, reviews and comments are read from the (fake)
GitHub API, bounded and defused; `train --from-pr N` puts them in the prompt and `forgegit pr` updates PR N."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import scripted_training
from conftest import git
from fake_github import FakeGitHub
from scripted_training import adds

from forgegit import history, reviews
from forgegit.cli import cli
from forgegit.errors import ForgegitError
from forgegit.github import GitHubClient
from forgegit.report import render_markdown

TOKEN = "ghs_review_token"
REPOSITORY = "octo/agent"


@pytest.fixture
def gh(tmp_path: Path) -> Any:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    with FakeGitHub(REPOSITORY, token=TOKEN, origin=origin) as fake:
        yield fake


def client(gh: FakeGitHub) -> GitHubClient:
    return GitHubClient(gh.api_url, REPOSITORY, TOKEN)


# --- reading the feedback ----------------------------------------------------------------------


def test_read_round_gets_line_comments_with_file_and_line_reviews_and_comments(gh: FakeGitHub) -> None:
    """All three kinds of feedback arrive, oldest first, with file and line for line comments; empty approvals
    and forgegit's own marker-bearing text are left out."""
    pr = gh.add_pr("forgegit/train/r1", labels=("forgegit",))["number"]
    gh.add_comment(pr, "Please also handle percentages.", created="2030-01-03T00:00:00Z")
    gh.add_line_comment(pr, "functions/add.py", 7, "This breaks on negative numbers.", created="2030-01-01T00:00:00Z")
    gh.add_review(pr, "Looks wrong for big inputs.", submitted="2030-01-02T00:00:00Z")
    gh.add_review(pr, "", state="APPROVED", submitted="2030-01-04T00:00:00Z")
    gh.add_comment(pr, "<!-- forgegit:run=r1 --> report", created="2030-01-05T00:00:00Z")
    got = reviews.read_round(client(gh), pr)
    assert [(c.kind, c.body) for c in got.comments] == [
        ("line", "This breaks on negative numbers."), ("review", "Looks wrong for big inputs."),
        ("comment", "Please also handle percentages.")]
    line = got.comments[0]
    assert (line.path, line.line, line.author) == ("functions/add.py", 7, "alice") and line.id.startswith("line-")
    assert got.branch == "forgegit/train/r1" and got.pr == pr
    assert {"GET /repos/octo/agent/pulls/1/comments", "GET /repos/octo/agent/pulls/1/reviews",
            "GET /repos/octo/agent/issues/1/comments"} <= set(gh.routes())


def test_feedback_is_bounded_per_comment_and_per_round_and_pages_are_followed(gh: FakeGitHub) -> None:
    """A 50,000-character comment is cut; 150 comments (two pages) are read, and the newest MAX_COMMENTS kept."""
    pr = gh.add_pr("forgegit/train/r2", labels=("forgegit",))["number"]
    gh.add_comment(pr, "x" * 50_000, created="2029-01-01T00:00:00Z")
    for i in range(150):
        gh.add_line_comment(pr, "functions/add.py", i + 1, f"note {i}", created=f"2030-01-01T00:{i // 60:02d}:{i % 60:02d}Z")
    got = reviews.read_round(client(gh), pr)
    assert len(got.comments) == reviews.MAX_COMMENTS
    assert got.comments[-1].body == "note 149" and got.comments[0].body == f"note {150 - reviews.MAX_COMMENTS}"
    assert sum("page=2" in r.path or r.query.get("page") == "2" for r in gh.requests) >= 1
    huge = reviews.clean("x" * 50_000)
    assert len(huge) == reviews.MAX_COMMENT_CHARS


def test_feedback_since_the_last_round_only(gh: FakeGitHub) -> None:
    """Only comments newer than the run's last round are new feedback."""
    pr = gh.add_pr("forgegit/train/r3", labels=("forgegit",))["number"]
    gh.add_comment(pr, "old", created="2030-01-01T00:00:00Z")
    gh.add_comment(pr, "new", created="2030-02-01T00:00:00Z")
    got = reviews.read_round(client(gh), pr, since="2030-01-15T00:00:00+00:00")
    assert [c.body for c in got.comments] == ["new"]


def test_a_pull_request_that_is_not_forgegit_s_or_closed_is_refused(gh: FakeGitHub) -> None:
    """--from-pr on someone's feature branch, or a closed forgegit PR, is one clear line."""
    other = gh.add_pr("feature/x")["number"]
    with pytest.raises(ForgegitError, match="not a forgegit training pull request"):
        reviews.read_round(client(gh), other)
    closed = gh.add_pr("forgegit/train/old", labels=("forgegit",))["number"]
    gh.pulls[closed]["state"] = "closed"
    with pytest.raises(ForgegitError, match="is closed"):
        reviews.read_round(client(gh), closed)


def test_review_text_is_defused_in_logs_and_in_the_pr_body(gh: FakeGitHub) -> None:
    """A hostile comment cannot start a workflow command in the log, nor render HTML, links or mentions in the PR."""
    pr = gh.add_pr("forgegit/train/r4", labels=("forgegit",))["number"]
    gh.add_line_comment(pr, "functions/add.py", 1, "::error::pwned\n<img src=x onerror=alert(1)> @everyone [x](https://evil)\u202e")
    got = reviews.read_round(client(gh), pr)
    assert "\u202e" not in got.comments[0].body
    (line,) = reviews.log_lines(got)
    assert "\n" not in line and "::error::" not in line.replace("\u200b", "x")
    from forgegit.report import review_section
    from forgegit.records import RunRecord

    run = RunRecord("r4", "forgegit/train/r4", "main", "0" * 40, "m", "o", "t", "v", "", 0.0, reviews=[got])
    section = review_section(run)
    assert "<img" not in section and "[x](https" not in section and "@everyone" not in section
    assert "not answered yet" in section


# --- the whole loop --------------------------------------------------------------------------------


def test_train_from_pr_puts_review_text_in_the_prompt_and_updates_that_pr(
        tmp_path: Path, gh: FakeGitHub, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train and open PR #1; a reviewer comments on a line; `train --from-pr 1` shows the comment to the optimizer
    under its own section, adds epochs to the same branch, and `forgegit pr` updates PR #1 (no second PR),
    whose body says which epoch answered the comment."""
    def passes(i: int, tools: list[str]) -> bool:
        return "solver" in tools or ("fixer" in tools and i % 2 == 0)

    training, script = scripted_training.make(tmp_path, passes, [adds("fixer"), adds("solver")])
    repo = training.repo
    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    git(repo, "remote", "add", "origin", str(gh.origin))
    git(repo, "push", "-q", "origin", "main")
    for k, v in {"GITHUB_API_URL": gh.api_url, "GITHUB_SERVER_URL": gh.server_url, "GITHUB_REPOSITORY": REPOSITORY,
                 "GITHUB_TOKEN": TOKEN}.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    ok("train", "--run-id", "rev", "--epochs", "1")
    assert "opened pull request #1" in ok("pr", "forgegit/train/rev")
    assert "Reviewer feedback" not in training.optimizer_prompts[-1]
    gh.add_line_comment(1, "functions/fixer.py", 3, "Odd questions still fail: solve every question.", user="alice")

    out = ok("train", "--from-pr", "1")
    assert "continuing run rev of pull request #1 with 1 review comment(s)" in out
    prompt = training.optimizer_prompts[-1]
    assert prompt.startswith("## Reviewer feedback (highest priority)")
    assert "functions/fixer.py line 3" in prompt and "Odd questions still fail: solve every question." in prompt
    run = history.load_run(repo, "forgegit/train/rev")
    assert len(run.epochs) == 2 and run.reviews and run.reviews[0].first_epoch == 2
    assert run.epochs[1].answers == [run.reviews[0].comments[0].id] and run.epochs[1].kept
    assert git(repo, "rev-parse", "forgegit/train/rev") == run.epochs[1].end  # the same branch moved on

    assert "updated pull request #1" in ok("pr", "forgegit/train/rev")
    assert len(gh.pulls) == 1 and "PATCH /repos/octo/agent/pulls/1" in gh.routes()
    body = gh.pulls[1]["body"]
    assert "### Review feedback" in body and "answered by epoch 2 (kept)" in body
    assert render_markdown(run).count("Odd questions still fail") == 1

    # nothing new since: --pending finds nothing, and --from-pr says so
    assert "no open forgegit pull request has review feedback" in ok("reviews", "--pending")
    again = runner.invoke(cli, ["train", "--from-pr", "1"])
    assert again.exit_code != 0 and "no review feedback newer than its last training" in str(again.exception)


def test_reviews_pending_writes_a_file_that_train_reads_without_github(
        tmp_path: Path, gh: FakeGitHub, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Action's split: `forgegit reviews --pending --out F` (GitHub token, no model key) finds the PR with new
    feedback; `train --from-pr N --reviews F` (model key, no GitHub token) trains on it."""
    training, script = scripted_training.make(tmp_path, lambda i, tools: "solver" in tools,
                                              [adds("solver"), adds("helper")])
    repo = training.repo
    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    git(repo, "remote", "add", "origin", str(gh.origin))
    git(repo, "push", "-q", "origin", "main")
    for k, v in {"GITHUB_API_URL": gh.api_url, "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_TOKEN": TOKEN}.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    assert runner.invoke(cli, ["train", "--run-id", "p", "--epochs", "1"]).exit_code == 0
    assert runner.invoke(cli, ["pr", "forgegit/train/p"]).exit_code == 0
    gh.add_review(1, "Add a helper for the edge cases.", user="bob")
    out_file = tmp_path / "feedback.json"
    result = runner.invoke(cli, ["reviews", "--pending", "--out", str(out_file)])
    assert result.exit_code == 0 and "pull request #1" in result.output, result.output
    assert json.loads(out_file.read_text())["comments"][0]["body"] == "Add a helper for the edge cases."

    monkeypatch.delenv("GITHUB_TOKEN")
    result = runner.invoke(cli, ["train", "--from-pr", "1", "--reviews", str(out_file)])
    assert result.exit_code == 0, result.output
    assert "Add a helper for the edge cases." in training.optimizer_prompts[-1]
    wrong = runner.invoke(cli, ["train", "--from-pr", "2", "--reviews", str(out_file)])
    assert wrong.exit_code != 0 and "not #2" in str(wrong.exception)
