"""`forgegit pr`: push the training branch to a bare `origin`, then open/update the PR on a fake GitHub API."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator, Optional

import pytest

import forgegit
from conftest import git, make_repo
from fake_github import FakeGitHub, bare_origin, reset_time_text
from forgegit import actions_env
from forgegit.cli import main
from forgegit.errors import ForgegitError
from forgegit.github import GitHubClient, GitHubError, open_or_update_pr
from forgegit.records import ActionRecord, Comparison, EpochRecord, GateDecision, RunRecord, Usage

TOKEN = "ghs_secret_token"
REPOSITORY = "octo/agent"


# --- fixtures ---------------------------------------------------------------------------


def make_run(repo: Path, branch: str, *, improved: bool = True, run_id: Optional[str] = None) -> RunRecord:
    """A RunRecord for a branch in repo, as history.load_run would return it."""
    base = git(repo, "rev-parse", "main")
    head = git(repo, "rev-parse", branch) if branch.startswith("forgegit/") else base
    return RunRecord(
        run_id=run_id or branch.rsplit("/", 1)[-1], branch=branch, base_branch="main", base_commit=base,
        model="gpt-test", optimizer_model="gpt-opt", tasks_file="train.jsonl", val_file="val.jsonl",
        test_file="", baseline_score=0.5, best_commit=head, best_score=0.7, status="finished",
        stop_reason="epochs", usage=Usage(100, 50, 3, 0, 0.01),
        epochs=[EpochRecord(1, base, head, None, [ActionRecord("add", "solve", True)], "add a solver",
                            0.5, 0.7, True, GateDecision(True, "mcnemar", 0.2, 0.01, 4, 0), Usage(100, 50, 3))],
        final_gate=Comparison("val", "val.jsonl", 0.6, 0.75 if improved else 0.6, 0.15 if improved else 0.0,
                              0.05, 0.25, 0.02 if improved else 1.0, improved,
                              [{"task_id": "v7", "feedback": "expected 42"}] if improved else []),
    )


class Setup:
    """A local repo with a training branch, its bare origin, the fake API and the stubbed history."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, gh: FakeGitHub) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.gh = gh
        self.origin = gh.origin
        self.repo = make_repo(tmp / "work", {"functions/__init__.py": "", "README.md": "hi\n"})
        git(self.repo, "remote", "add", "origin", str(self.origin))
        git(self.repo, "push", "-q", "origin", "main")
        self.runs: dict[str, RunRecord] = {}
        self.latest: Optional[str] = None
        self.commits = 0
        history = types.ModuleType("forgegit.history")
        history.load_run = self.load_run  # type: ignore[attr-defined]
        history.latest_run_branch = lambda repo: self.latest  # type: ignore[attr-defined]
        try:
            import forgegit.history as real
        except ImportError:
            monkeypatch.setitem(sys.modules, "forgegit.history", history)
            monkeypatch.setattr(forgegit, "history", history, raising=False)
        else:
            monkeypatch.setattr(real, "load_run", history.load_run)
            monkeypatch.setattr(real, "latest_run_branch", history.latest_run_branch)
        monkeypatch.chdir(self.repo)
        monkeypatch.setenv("GITHUB_API_URL", gh.api_url)
        monkeypatch.setenv("GITHUB_SERVER_URL", gh.server_url)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    def load_run(self, repo: Path, branch: str) -> RunRecord:
        if branch not in self.runs:
            raise ForgegitError(f"no forgegit run on branch {branch!r}")
        return self.runs[branch]

    def train(self, run_id: str, *, improved: bool = True, commits: int = 1) -> RunRecord:
        """Simulate `forgegit train`: a training branch with commits and a note, and its record."""
        branch = f"forgegit/train/{run_id}"
        if not git(self.repo, "branch", "--list", branch):
            git(self.repo, "branch", branch, "main")
        git(self.repo, "checkout", "-q", branch)
        for i in range(commits):
            self.commits += 1
            (self.repo / "functions" / f"f{self.commits}.py").write_text(f"def f():\n    return {self.commits}\n")
            git(self.repo, "add", "-A")
            git(self.repo, "commit", "-q", "-m", f"epoch {i + 1}")
        git(self.repo, "notes", "--ref=forgegit", "add", "-f", "-m", f'{{"run": "{run_id}"}}', "HEAD")
        git(self.repo, "checkout", "-q", "main")
        run = make_run(self.repo, branch, improved=improved, run_id=run_id)
        self.runs[branch] = run
        self.latest = branch
        return run

    def on_origin(self, ref: str) -> Optional[str]:
        out = git(self.origin, "for-each-ref", "--format=%(objectname)", ref)
        return out or None

    def actions_env(self) -> tuple[Path, Path]:
        """Simulate a GitHub Actions step: GITHUB_ACTIONS, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files."""
        out, summary = self.tmp / "output.txt", self.tmp / "summary.md"
        out.write_text("")
        summary.write_text("")
        self.monkeypatch.setenv("GITHUB_ACTIONS", "true")
        self.monkeypatch.setenv("GITHUB_OUTPUT", str(out))
        self.monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        return out, summary


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    for k in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_API_URL", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(k, raising=False)
    with FakeGitHub(REPOSITORY, token=TOKEN, origin=origin) as gh:
        yield Setup(tmp_path, monkeypatch, gh)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `forgegit ARGS` in-process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def outputs(path: Path) -> dict[str, str]:
    """Parse a $GITHUB_OUTPUT file (name=value and heredoc entries; the last value wins)."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            end = lines.index(delim, i + 1)
            values[name] = "\n".join(lines[i + 1:end])
            i = end + 1
        else:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
    return values


# --- opening and updating ---------------------------------------------------------------


def test_pr_pushes_the_branch_and_notes_then_opens_a_labelled_pr(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A user running `forgegit pr` after an improving run gets the branch on origin and one PR with the report."""
    run = setup.train("r1")
    code, out, err = cli(capsys, "pr")
    assert code == 0, err
    assert setup.on_origin(f"refs/heads/{run.branch}") == git(setup.repo, "rev-parse", run.branch)
    assert setup.on_origin("refs/notes/forgegit") == git(setup.repo, "rev-parse", "refs/notes/forgegit")
    posts = [r for r in setup.gh.requests if r.route == f"POST /repos/{REPOSITORY}/pulls"]
    assert len(posts) == 1
    assert posts[0].body["head"] == run.branch and posts[0].body["base"] == "main"
    assert posts[0].body["draft"] is False
    assert "<!-- forgegit:run=r1 -->" in posts[0].body["body"]
    assert "60.0% → 75.0%" in posts[0].body["title"]
    assert posts[0].headers["authorization"] == f"Bearer {TOKEN}"
    pr = setup.gh.pulls[1]
    assert [lab["name"] for lab in pr["labels"]] == ["forgegit"]
    assert "opened pull request #1" in out and pr["html_url"] in out
    assert TOKEN not in out + err


def test_draft_and_extra_labels_reach_the_pr(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`--draft --label a,b --label c` opens a draft PR labelled forgegit, a, b, c."""
    setup.train("r1")
    code, _, err = cli(capsys, "pr", "--draft", "--label", "a,b", "--label", "c")
    assert code == 0, err
    assert setup.gh.pulls[1]["draft"] is True
    assert [lab["name"] for lab in setup.gh.pulls[1]["labels"]] == ["forgegit", "a", "b", "c"]


def test_second_pr_for_the_same_run_updates_it_instead_of_a_422(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Re-running `forgegit pr` after the run grew updates the open PR (PATCH) and pushes the new commits."""
    setup.train("r1")
    assert cli(capsys, "pr")[0] == 0
    setup.train("r1")  # resumed: one more commit on the same branch
    setup.runs["forgegit/train/r1"].final_gate.head_score = 0.8  # type: ignore[union-attr]
    code, out, err = cli(capsys, "pr")
    assert code == 0, err
    routes = setup.gh.routes()
    assert routes.count(f"POST /repos/{REPOSITORY}/pulls") == 1
    assert f"PATCH /repos/{REPOSITORY}/pulls/1" in routes
    assert len(setup.gh.pulls) == 1
    assert "80.0%" in setup.gh.pulls[1]["title"]
    assert "updated pull request #1" in out
    assert setup.on_origin("refs/heads/forgegit/train/r1") == git(setup.repo, "rev-parse", "forgegit/train/r1")


def test_a_new_run_opens_a_new_pr_and_closes_the_superseded_one(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A later run's PR replaces the earlier forgegit PR for main: the old one is commented on and closed."""
    setup.train("r1")
    assert cli(capsys, "pr")[0] == 0
    unrelated = setup.gh.add_pr("feature/x", body="a human's PR")
    setup.train("r2")
    code, out, err = cli(capsys, "pr")
    assert code == 0, err
    assert setup.gh.pulls[1]["state"] == "closed"
    assert setup.gh.comments[1] == ["Superseded by #3 (forgegit run `r2`)."]
    assert setup.gh.pulls[3]["state"] == "open"
    assert unrelated["state"] == "open" and unrelated["number"] not in setup.gh.comments
    assert "closed #1: superseded by #3" in out


def test_no_improvement_opens_nothing_and_says_so(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose validation gate failed: no push, no API call, a clear message, exit 0."""
    run = setup.train("r1", improved=False)
    code, out, err = cli(capsys, "pr")
    assert code == 0, err
    assert "no pull request" in out and "did not improve" in out
    assert setup.gh.requests == []
    assert setup.on_origin(f"refs/heads/{run.branch}") is None


def test_concurrent_open_is_handled_as_an_update(setup: Setup) -> None:
    """If the PR appeared between the lookup and the POST (GitHub's 422 'already exists'), it is updated."""
    run = setup.train("r1")
    client = GitHubClient(setup.gh.api_url, REPOSITORY, TOKEN)
    git(setup.repo, "push", "-q", "origin", run.branch)
    setup.gh.add_pr(run.branch)
    original = client.find_open_pr
    calls = iter([None])
    client.find_open_pr = lambda h, b: next(calls, None) or original(h, b)  # type: ignore[method-assign]
    result = open_or_update_pr(setup.repo, run, client=client)
    assert result.action == "updated" and result.number == 1


# --- failures -------------------------------------------------------------------------


@pytest.mark.parametrize("mode, only, expected", [
    ("401", None, "GITHUB_TOKEN rejected (401): check the github-token input / secret"),
    ("403", None, "contents: write and pull-requests: write"),
    ("404", None, f"GitHub repository {REPOSITORY} not found (404) or the token cannot see it"),
    ("422", "POST", "GitHub rejected opening the pull request (422): Validation Failed: No commits between"),
    ("rate_limit", None, f"GitHub API rate limit exceeded; it resets at {reset_time_text()}"),
    ("secondary_rate_limit", None, "secondary rate limit hit; retry after 60 s"),
])
def test_api_failure_is_one_line_and_the_branch_stays_pushed(
    setup: Setup, capsys: pytest.CaptureFixture[str], mode: str, only: Optional[str], expected: str,
) -> None:
    """Each GitHub failure: one error line saying what to fix, exit 1, and the trained branch is on origin."""
    run = setup.train("r1")
    setup.gh.fail(mode, only=only)
    code, out, err = cli(capsys, "pr")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("forgegit: error: ")
    assert expected in lines[0]
    assert f"branch {run.branch} is pushed to origin" in lines[0]
    assert f"https://github.example/{REPOSITORY}/compare/main...{run.branch}?expand=1" in lines[0]
    assert "Traceback" not in err and TOKEN not in err + out
    assert setup.on_origin(f"refs/heads/{run.branch}") == git(setup.repo, "rev-parse", run.branch)


def test_api_failure_inside_actions_is_also_an_error_annotation(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """In Actions the failure also shows as an ::error annotation on the run page."""
    setup.train("r1")
    setup.actions_env()
    setup.gh.fail("401")
    code, out, _ = cli(capsys, "pr")
    assert code == 1
    assert out.startswith("::error title=forgegit pr::GITHUB_TOKEN rejected (401)")


def test_unreachable_api_is_one_line(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """GITHUB_API_URL pointing nowhere: one line naming the URL, branch still pushed."""
    run = setup.train("r1")
    setup.monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    code, _, err = cli(capsys, "pr")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "cannot reach the GitHub API at http://127.0.0.1:9" in err
    assert setup.on_origin(f"refs/heads/{run.branch}") is not None


def test_label_failure_after_opening_is_a_warning_not_an_error(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """If labelling fails the PR is still opened: exit 0, a warning, the URL printed."""
    setup.train("r1")
    setup.gh.fail("403", only="POST /repos/octo/agent/issues")
    code, out, err = cli(capsys, "pr")
    assert code == 0
    assert "opened pull request #1" in out
    assert "forgegit: warning: GitHub refused labelling pull request #1 (403" in err


@pytest.mark.parametrize("missing", [["GITHUB_TOKEN"], ["GITHUB_REPOSITORY"], ["GITHUB_TOKEN", "GITHUB_REPOSITORY"]])
def test_missing_github_variables_are_one_clear_line(
    setup: Setup, capsys: pytest.CaptureFixture[str], missing: list[str],
) -> None:
    """Without GITHUB_TOKEN / GITHUB_REPOSITORY the user is told which, and nothing is pushed."""
    run = setup.train("r1")
    for name in missing:
        setup.monkeypatch.delenv(name)
    code, _, err = cli(capsys, "pr")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    for name in missing:
        assert name in err
    assert setup.on_origin(f"refs/heads/{run.branch}") is None and setup.gh.requests == []


def test_no_run_is_a_clear_error(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`forgegit pr` before any training says to run `forgegit train` first."""
    code, _, err = cli(capsys, "pr")
    assert code == 1
    assert "run `forgegit train` first" in err


# --- never push the base branch -------------------------------------------------------


def test_refuses_to_push_a_branch_that_is_not_a_training_branch(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`forgegit pr main` (or a run record naming main) never pushes main nor calls the API."""
    before = setup.on_origin("refs/heads/main")
    (setup.repo / "local.txt").write_text("unpushed\n")
    git(setup.repo, "add", "-A")
    git(setup.repo, "commit", "-q", "-m", "local work")
    setup.runs["main"] = make_run(setup.repo, "main")
    code, _, err = cli(capsys, "pr", "main")
    assert code == 1
    assert "refusing to push 'main'" in err
    assert setup.on_origin("refs/heads/main") == before
    assert setup.gh.requests == []
    for bad in ("main", "forgegit/train/", "forgegit/trainer", "feature/forgegit/train/x"):
        with pytest.raises(ForgegitError, match="refusing to push"):
            open_or_update_pr(setup.repo, dataclasses.replace(setup.runs["main"], branch=bad),
                              client=GitHubClient(setup.gh.api_url, REPOSITORY, TOKEN))
    assert setup.on_origin("refs/heads/main") == before


def test_a_bare_run_id_names_its_training_branch(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`forgegit pr r1` means forgegit/train/r1, like `forgegit log r1`."""
    setup.train("r1")
    setup.train("r2")
    code, out, err = cli(capsys, "pr", "r1")
    assert code == 0, err
    assert setup.gh.requests[1].body["head"] == "forgegit/train/r1"


def test_push_never_clobbers_a_remote_branch_it_has_not_seen(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """If someone else pushed to the training branch, force-with-lease refuses: one line, no PR."""
    run = setup.train("r1")
    other = make_repo(setup.tmp / "other")
    git(other, "remote", "add", "origin", str(setup.origin))
    git(other, "fetch", "-q", "origin")
    git(other, "checkout", "-q", "-b", run.branch, "origin/main")
    (other / "x.txt").write_text("theirs\n")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", run.branch)
    theirs = setup.on_origin(f"refs/heads/{run.branch}")
    code, _, err = cli(capsys, "pr")
    assert code == 1
    assert "git push of forgegit/train/r1 to origin failed" in err
    assert setup.on_origin(f"refs/heads/{run.branch}") == theirs
    assert setup.gh.requests == []


def test_notes_pushed_by_another_run_are_merged_not_lost(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """When origin's notes moved on (another clone's run), both runs' notes end up on origin."""
    other = setup.tmp / "other"
    git(setup.tmp, "clone", "-q", str(setup.origin), str(other))
    git(other, "notes", "--ref=forgegit", "add", "-m", '{"run": "elsewhere"}', "HEAD")
    git(other, "push", "-q", "origin", "refs/notes/forgegit")
    run = setup.train("r1")
    code, _, err = cli(capsys, "pr")
    assert code == 0, err
    git(setup.origin, "notes", "--ref=forgegit", "show", "main")  # the other clone's note survived
    git(setup.origin, "notes", "--ref=forgegit", "show", run.branch)  # and ours arrived


# --- Actions outputs and summary ------------------------------------------------------


def test_outputs_and_step_summary_in_actions(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """In Actions `forgegit pr` writes score, baseline-score, branch, pr-url, pr-number and the summary."""
    run = setup.train("r1")
    out_file, summary = setup.actions_env()
    code, _, err = cli(capsys, "pr", "forgegit/train/r1")
    assert code == 0, err
    values = outputs(out_file)
    assert values == {
        "score": "0.7500", "baseline-score": "0.6000", "branch": run.branch,
        "pr-url": f"https://github.example/{REPOSITORY}/pull/1", "pr-number": "1",
    }
    text = summary.read_text()
    assert "<!-- forgegit:run=r1 -->" in text and "xychart-beta" in text
    assert f"https://github.example/{REPOSITORY}/commit/{run.best_commit}" in text


def test_no_improvement_in_actions_is_a_notice_with_empty_pr_outputs(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-improving run in Actions: a ::notice, the summary, scores, and empty pr-url/pr-number."""
    setup.train("r1", improved=False)
    out_file, summary = setup.actions_env()
    code, out, _ = cli(capsys, "pr")
    assert code == 0
    assert out.startswith("::notice title=forgegit pr::no pull request")
    values = outputs(out_file)
    assert values["pr-url"] == "" and values["pr-number"] == "" and values["score"] == "0.6000"
    assert "Not improved" in summary.read_text()


def test_dry_run_prints_the_body_and_touches_nothing(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`--dry-run` prints the PR body; no push, no API call, works without a token."""
    run = setup.train("r1")
    setup.monkeypatch.delenv("GITHUB_TOKEN")
    code, out, err = cli(capsys, "pr", "--dry-run")
    assert code == 0, err
    assert out.startswith("<!-- forgegit:run=r1 -->")
    assert "would push" in err
    assert setup.gh.requests == [] and setup.on_origin(f"refs/heads/{run.branch}") is None


def test_set_output_uses_a_heredoc_for_multiline_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multi-line output value cannot inject other outputs (random heredoc delimiter)."""
    path = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    assert actions_env.set_output("body", "line 1\npr-url=https://evil\nEOF")
    assert actions_env.set_output("n", 3)
    assert outputs(path) == {"body": "line 1\npr-url=https://evil\nEOF", "n": "3"}
    assert "ghadelimiter_" in path.read_text()


def test_actions_helpers_are_no_ops_outside_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Actions nothing is written and the helpers return False."""
    for k in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS"):
        monkeypatch.delenv(k, raising=False)
    assert actions_env.set_output("x", "1") is False
    assert actions_env.append_summary("# hi") is False
    assert actions_env.in_actions() is False


def test_github_error_is_a_forgegit_error() -> None:
    """GitHubError prints like every other user error (one line, no traceback)."""
    assert issubclass(GitHubError, ForgegitError)


# --- end to end with real training and history ----------------------------------------


def test_demo_run_is_pushed_and_opened_through_real_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """After `forgegit demo`, `forgegit pr` reads the run from the notes, pushes it and opens its PR."""
    demo = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "forgegit", "demo", "--dir", str(demo)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    origin = bare_origin(demo, tmp_path / "origin.git")
    with FakeGitHub(REPOSITORY, token=TOKEN, origin=origin) as gh:
        monkeypatch.chdir(demo)
        for k, v in gh.env().items():
            monkeypatch.setenv(k, v)
        code, out, err = cli(capsys, "pr")
        assert code == 0, err
        assert "opened pull request #1" in out
        body = gh.pulls[1]["body"]
    assert "<!-- forgegit:run=demo -->" in body and "✅ kept" in body and "↩️ reverted" in body
    assert git(origin, "rev-parse", "refs/heads/forgegit/train/demo") == git(demo, "rev-parse", "forgegit/train/demo")
    assert git(origin, "rev-parse", "refs/notes/forgegit") == git(demo, "rev-parse", "refs/notes/forgegit")
