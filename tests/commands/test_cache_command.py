"""`forgegit cache stats|clear` in a real repository."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgegit import git
from forgegit.cache import ResponseCache
from forgegit.cli import cli
from forgegit.errors import ForgegitError


def fill(repo: Path, entries: int = 2, calls: int = 3) -> Path:
    """Put some responses and log entries in the repository's cache; its path."""
    path = git.state_dir(repo) / "cache.sqlite"
    with ResponseCache(path) as c:
        for i in range(entries):
            c.put(f"k{i}", {"model": "m"}, {"choices": [{"message": {"content": str(i)}}]})
        c.get("k0")
        c.get("missing")
        for _ in range(calls):
            c.log({"model": "m"}, None, error="boom", duration=0.1, cached=False, usage=None)
    return path


def test_stats_json_reports_the_repository_cache(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forgegit cache stats --json` shows the cache under .git/forgegit with its counts."""
    path = fill(repo)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["cache", "stats", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["path"] == str(path) and path.parent == repo.resolve() / ".git" / "forgegit"
    assert (data["entries"], data["hits"], data["misses"], data["calls"]) == (2, 1, 1, 3)


def test_stats_table_is_readable_from_a_subdirectory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The human table lists entries, size and hit rate, wherever in the repository you run it."""
    fill(repo)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    result = CliRunner().invoke(cli, ["cache", "stats"])
    assert result.exit_code == 0, result.output
    rows = {line[:14].strip(): line[14:].strip() for line in result.output.splitlines()}
    assert rows["entries"] == "2"
    assert rows["hit rate"] == "50.0%"
    assert rows["logged calls"] == "3"
    assert rows["size"].endswith(" B")


def test_stats_on_a_fresh_repository_shows_an_empty_cache(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any model call the cache is simply empty, and asking does not create it."""
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["cache", "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["entries"] == 0
    assert not (repo / ".git" / "forgegit" / "cache.sqlite").exists()


def test_clear_keeps_the_call_log_and_clear_log_removes_it(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cache clear` drops cached responses only; `cache clear --log` drops the call log too."""
    path = fill(repo)
    monkeypatch.chdir(repo)
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "clear"])
    assert result.exit_code == 0 and result.output.strip() == "removed 2 cached responses"
    with ResponseCache(path) as c:
        assert (c.stats()["entries"], c.stats()["calls"]) == (0, 3)
    result = runner.invoke(cli, ["cache", "clear", "--log"])
    assert result.exit_code == 0 and result.output.strip() == "removed 0 cached responses and 3 logged calls"
    with ResponseCache(path) as c:
        assert c.stats()["calls"] == 0


def test_outside_a_repository_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running the command outside git says so instead of creating a stray cache."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["cache", "stats"])
    assert isinstance(result.exception, ForgegitError)
    assert "not inside a git repository" in str(result.exception)
