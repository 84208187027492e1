"""Bad input everywhere: every mistake a user can make gets one clear line and a non-zero exit, never a traceback.

Each case drives the real command line in a subprocess (`python -m forgegit ...`), against the scripted
model on loopback where a model is needed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import git, make_repo

from forgegit import demo, history
from forgegit.checkers import BUILTIN, Verdict, get_checker
from forgegit.tasks import Task


def forgegit(cwd: Path, *args: str, server: Any = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FORGEGIT_RETRY_BACKOFF": "0.01", **(env or {})}
    if server is not None:
        full.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
    else:  # nothing listens here: a command that should not need the model fails fast if it tries
        full.setdefault("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    return subprocess.run([sys.executable, "-m", "forgegit", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The command failed with exactly one `forgegit: error:` line mentioning every needle, and no traceback."""
    assert proc.returncode not in (0, None), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("forgegit: retrying in ")]
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture
def server(scripted: Any) -> Any:
    return scripted(demo.make_script())


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    return demo.make_repo(tmp_path / "repo")


def snapshot(repo: Path) -> dict[str, str]:
    """What the user owns: HEAD, the branch it names, the index and working tree state."""
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "symbolic": subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=repo, capture_output=True, text=True).stdout,
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "diff": git(repo, "diff"),
        "staged": git(repo, "diff", "--cached"),
        "main": git(repo, "rev-parse", "main"),
    }


# ---------------------------------------------------------------- repository states


def test_not_a_git_repository_at_all(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for args in (["eval"], ["train"], ["log"], ["check"], ["pr", "--dry-run"], ["cache", "stats"], ["train", "--resume"]):
        error_line(forgegit(plain, *args), "not inside a git repository")


def test_a_repository_with_no_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "empty")
    (repo / "tasks").mkdir()
    (repo / "tasks" / "train.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    error_line(forgegit(repo, "eval"), "no commits")
    error_line(forgegit(repo, "train"), "no commits")
    error_line(forgegit(repo, "train", "--base", "main"), "no commits")
    error_line(forgegit(repo, "log"), "no training run")
    assert not git(repo, "branch", "--list")  # nothing was created


def test_detached_head_asks_for_base_and_works_with_it(demo_repo: Path, server: Any) -> None:
    git(demo_repo, "checkout", "-q", "--detach")
    before = snapshot(demo_repo)
    error_line(forgegit(demo_repo, "train", "--run-id", "d", server=server), "--base")
    assert not git(demo_repo, "branch", "--list", "forgegit/train/*")
    ok(forgegit(demo_repo, "train", "--base", "main", "--run-id", "d", server=server))
    run = history.load_run(demo_repo, "forgegit/train/d")
    assert run.base_branch == "main" and run.status == "finished" and run.epochs
    assert snapshot(demo_repo) == before  # still detached at the same commit
    ok(forgegit(demo_repo, "eval", server=server))  # eval of a detached HEAD needs no branch


def test_a_dirty_working_tree_is_left_exactly_as_it_was(demo_repo: Path, server: Any) -> None:
    add = demo_repo / "functions" / "add.py"
    add.write_text(add.read_text() + "\n# staged edit\n")
    git(demo_repo, "add", "functions/add.py")
    add.write_text(add.read_text() + "# unstaged edit\n")
    (demo_repo / "functions" / "scratch.py").write_text("this is not python (\n")  # untracked, broken
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text() + "# local tweak\n")
    before = snapshot(demo_repo)
    contents = {p: p.read_bytes() for p in demo_repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    ok(forgegit(demo_repo, "train", "--run-id", "dirty", server=server))
    assert history.load_run(demo_repo, "forgegit/train/dirty").epochs
    assert snapshot(demo_repo) == before
    assert {p: p.read_bytes() for p in contents} == contents
    assert len(git(demo_repo, "worktree", "list").splitlines()) == 1


def test_a_shallow_clone_as_in_github_actions(tmp_path: Path, demo_repo: Path, server: Any) -> None:
    (demo_repo / "README.md").write_text("second commit\n")
    git(demo_repo, "add", "README.md")
    git(demo_repo, "commit", "-q", "-m", "second")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{demo_repo}", str(clone)], check=True)
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    ok(forgegit(clone, "eval", server=server))
    again = ok(forgegit(clone, "eval", server=server))
    assert "recorded result reused" in again.stdout
    ok(forgegit(clone, "train", "--run-id", "ci", server=server))
    run = history.load_run(clone, "forgegit/train/ci")
    assert run.status == "finished" and run.epochs and run.final_gate is not None
    assert "kept" in ok(forgegit(clone, "log")).stdout
    error_line(forgegit(clone, "eval", "HEAD~1", server=server), "unknown revision")  # beyond the shallow boundary


def test_missing_functions_directory(demo_repo: Path, server: Any) -> None:
    git(demo_repo, "rm", "-q", "-r", "functions")
    git(demo_repo, "commit", "-q", "-m", "no functions")
    error_line(forgegit(demo_repo, "check"), "no functions/ directory")
    out = ok(forgegit(demo_repo, "eval", "--json", server=server))
    result = json.loads(out.stdout)
    assert result["total"] == len(demo.TASKS) and result["tree"] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("toml, needles", [
    ('model = "x"\nepochs = \n', ["forgegit.toml:2: "]),
    ("[train\nepochs = 3\n", ["forgegit.toml"]),
    ('modle = "gpt-4o"\n', ["unknown key 'modle'", "did you mean 'model'"]),
    ('[limits]\nbogus = 1\n', ["unknown key 'bogus'"]),
    ('epochs = "five"\n', ["epochs must be int", "'five'"]),
    ("python_tool = 1\n", ["python_tool must be bool"]),
    ("alpha = 2.0\n", ["alpha must be between 0 and 1"]),
    ("concurrency = 0\n", ["concurrency must be at least 1"]),
    ("prices = 5\n", ["prices must be dict"]),
    ('[prices]\n"scripted-agent" = "cheap"\n', ["[prices]", "scripted-agent"]),
    ('[prices]\n"scripted-agent" = {prompt = 1}\n', ["[prices]", "scripted-agent"]),
])
def test_malformed_forgegit_toml(demo_repo: Path, toml: str, needles: list[str]) -> None:
    (demo_repo / "forgegit.toml").write_text(toml)
    error_line(forgegit(demo_repo, "eval"), *needles)
    error_line(forgegit(demo_repo, "train"), *needles)
    assert not git(demo_repo, "branch", "--list", "forgegit/train/*")


def test_forgegit_toml_that_is_not_text(demo_repo: Path) -> None:
    (demo_repo / "forgegit.toml").write_bytes(b"\xff\xfe\x00model = 1\n")
    error_line(forgegit(demo_repo, "eval"), "forgegit.toml", "cannot read")
    error_line(forgegit(demo_repo, "eval", "--config", "missing.toml"), "missing.toml", "not found")


def test_bad_retry_backoff_variable(demo_repo: Path) -> None:
    error_line(forgegit(demo_repo, "eval", env={"FORGEGIT_RETRY_BACKOFF": "soon"}), "FORGEGIT_RETRY_BACKOFF")


# ---------------------------------------------------------------- task files


@pytest.mark.parametrize("kind, needles", [
    ("directory", ["is a directory"]),
    ("binary", ["not UTF-8"]),
    ("latin1", ["not UTF-8"]),
    ("empty", ["no tasks"]),
    ("not-json", [":2:", "not valid JSON"]),
    ("not-object", [":1:", "expected a JSON object"]),
    ("no-answer", [":1:", "missing field 'answer'"]),
    ("duplicate", [":2:", "duplicate task id"]),
    ("missing", ["task file not found"]),
])
def test_bad_task_files(demo_repo: Path, kind: str, needles: list[str]) -> None:
    path = demo_repo / "tasks" / "bad.jsonl"
    good = '{"id": "a", "question": "q", "answer": "1"}\n'
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "latin1":
        path.write_bytes('{"question": "caf\u00e9?", "answer": "1"}\n'.encode("latin-1"))
    elif kind != "missing":
        path.write_text({
            "empty": "\n\n",
            "not-json": good + "{question: q}\n",
            "not-object": "[1, 2]\n",
            "no-answer": '{"question": "q"}\n',
            "duplicate": good + good,
        }[kind])
    error_line(forgegit(demo_repo, "eval", "--tasks", "tasks/bad.jsonl"), "bad.jsonl", *needles)
    error_line(forgegit(demo_repo, "train", "--tasks", "tasks/bad.jsonl"), "bad.jsonl", *needles)
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text()
                                             .replace("tasks/train.jsonl", "tasks/bad.jsonl"))
    error_line(forgegit(demo_repo, "eval"), "bad.jsonl", *needles)
    assert not git(demo_repo, "branch", "--list", "forgegit/train/*")


# ---------------------------------------------------------------- options and arguments


@pytest.mark.parametrize("shard, needle", [("5/3", "between 1 and N"), ("0/3", "between 1 and N"),
                                           ("1/0", "between 1 and N"), ("two/4", "expected K/N"),
                                           ("1/2/3", "expected K/N"), ("", "expected K/N")])
def test_bad_shard(demo_repo: Path, shard: str, needle: str) -> None:
    error_line(forgegit(demo_repo, "eval", "--shard", shard), "--shard", needle)


@pytest.mark.parametrize("content", ["not json at all", "{}", "[1, 2]", "5", "null", '"text"',
                                     '{"id": "a", "question": "q", "answer": "1"}\n{"id": "b", "question": "q", "answer": "2"}\n',
                                     '{"key": 1, "revision": 2, "tree": 3, "tasks_file": 4, "tasks_hash": 5, "model": 6, '
                                     '"passed": "x", "total": [], "results": 5, "usage": 7}'])
def test_eval_merge_of_a_file_that_is_not_a_shard_result(demo_repo: Path, content: str) -> None:
    bogus = demo_repo / "bogus.json"
    bogus.write_text(content)
    error_line(forgegit(demo_repo, "eval", "--merge", str(bogus)), "bogus.json", "not a shard result")
    assert git(demo_repo, "notes", "--ref", "refs/notes/forgegit", "list") == ""


def test_eval_merge_of_shards_of_other_functions_or_too_few(demo_repo: Path, server: Any) -> None:
    shard = demo_repo.parent / "s1.json"
    ok(forgegit(demo_repo, "eval", "--shard", "1/2", "--out", str(shard), server=server))
    error_line(forgegit(demo_repo, "eval", "--merge", str(shard)), "shards do not cover the task set")
    (demo_repo / "functions" / "extra.py").write_text(demo.WORD_COUNT)
    git(demo_repo, "add", "-A")
    git(demo_repo, "commit", "-q", "-m", "more functions")
    error_line(forgegit(demo_repo, "eval", "--merge", str(shard)), "shards were evaluated on other functions")


def test_unknown_revisions_and_branches(demo_repo: Path) -> None:
    error_line(forgegit(demo_repo, "eval", "no-such-rev"), "unknown revision 'no-such-rev'")
    error_line(forgegit(demo_repo, "eval", "HEAD~7"), "unknown revision 'HEAD~7'")
    error_line(forgegit(demo_repo, "eval", "--", "-rf"), "unknown revision")
    error_line(forgegit(demo_repo, "train", "--base", "no-such-branch"), "unknown revision 'no-such-branch'")
    error_line(forgegit(demo_repo, "log", "no-such-run"), "no branch")
    error_line(forgegit(demo_repo, "log", "main"), "no branch")
    error_line(forgegit(demo_repo, "pr", "--dry-run", "main"), "main")
    error_line(forgegit(demo_repo, "train", "--resume", "--run-id", "no-such-run"), "no branch")
    assert not git(demo_repo, "branch", "--list", "forgegit/train/*")


def test_log_and_pr_and_resume_with_no_runs(demo_repo: Path) -> None:
    error_line(forgegit(demo_repo, "log"), "no training run yet")
    error_line(forgegit(demo_repo, "log", "--json"), "no training run yet")
    assert ok(forgegit(demo_repo, "log", "--all")).stdout == ""
    error_line(forgegit(demo_repo, "pr"), "no training run")
    error_line(forgegit(demo_repo, "train", "--resume"), "no training run to resume")


def test_pr_without_github_repository(demo_repo: Path, server: Any) -> None:
    ok(forgegit(demo_repo, "train", "--run-id", "p", server=server))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    proc = subprocess.run([sys.executable, "-m", "forgegit", "pr"], cwd=demo_repo, env=env,
                          capture_output=True, text=True, timeout=120)
    error_line(proc, "GITHUB_REPOSITORY", "GITHUB_TOKEN", "--dry-run")
    proc = subprocess.run([sys.executable, "-m", "forgegit", "pr"], cwd=demo_repo, env={**env, "GITHUB_TOKEN": "t"},
                          capture_output=True, text=True, timeout=120)
    error_line(proc, "GITHUB_REPOSITORY is not set")
    assert ok(forgegit(demo_repo, "pr", "--dry-run")).stdout  # the body renders without GitHub


def test_an_unknown_checker_or_agent(demo_repo: Path) -> None:
    error_line(forgegit(demo_repo, "eval", "--checker", "nonsense"), "unknown checker 'nonsense'")
    error_line(forgegit(demo_repo, "eval", "--checker", "no_such_module:f"), "cannot import")
    (demo_repo / "forgegit.toml").write_text((demo_repo / "forgegit.toml").read_text() + 'agent = "no_such_agent:run"\n')
    error_line(forgegit(demo_repo, "eval"), "agent 'no_such_agent:run'")


# ---------------------------------------------------------------- answer checkers never raise


def _task(answer: str) -> Task:
    return Task("t", "question?", answer, 1)


@pytest.mark.parametrize("name", sorted(BUILTIN))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(reply=st.text(max_size=300), answer=st.text(min_size=1, max_size=60))
def test_a_checker_never_raises_on_arbitrary_text(name: str, reply: str, answer: str) -> None:
    v = get_checker(name)(reply, _task(answer))
    assert isinstance(v, Verdict) and isinstance(v.passed, bool) and isinstance(v.feedback, str)


_NUMBERISH = st.lists(st.sampled_from(["1", "0", "-", "+", ".", ",", "e", "E", "/", "%", "$", "\\frac{", "}", " ",
                                       "Final answer:", "\n", "inf", "nan", "1e999", "9" * 40, "\\boxed{", "####",
                                       "\u2212", "\u00bd", "\u0661", "x", "="]), max_size=30).map("".join)


@pytest.mark.parametrize("name", sorted(BUILTIN))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(reply=_NUMBERISH, answer=_NUMBERISH.filter(lambda s: s.strip() != ""))
def test_a_checker_never_raises_on_number_like_text(name: str, reply: str, answer: str) -> None:
    v = get_checker(name)(reply, _task(answer))
    assert isinstance(v, Verdict) and isinstance(v.passed, bool) and isinstance(v.feedback, str)
