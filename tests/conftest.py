"""Shared fixtures: real git repositories in temp dirs and a scripted OpenAI-compatible server."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from scripted_server import ScriptedServer

from forgegit import demo

# Deterministic commits, and no user config leaking into tests.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for k, v in _GIT_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GITHUB_TOKEN", "GITHUB_ACTIONS"):
        monkeypatch.delenv(k, raising=False)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None, message: str = "initial") -> Path:
    """A git repository at path with files committed on branch main by the test identity (forgegit.demo.make_repo)."""
    return demo.make_repo(path, files or {}, message, identity=None)


def run_outcome(repo: Path, branch: str) -> dict[str, object]:
    """What a training run decided, independent of timestamps: per-epoch actions, scores and
    verdicts, the final gate, the final functions/ tree, why it stopped and its status."""
    from forgegit import history

    run = history.load_run(repo, branch)
    g = run.final_gate
    return {
        "epochs": [(e.epoch, [(a.kind, a.name, a.accepted) for a in e.actions], e.score_before, e.score_after, e.kept)
                   for e in run.epochs],
        "final": (g.base_score, g.head_score, g.passed) if g else None,
        "tree": git(repo, "rev-parse", f"{branch}:functions"),
        "stop": run.stop_reason,
        "status": run.status,
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted servers: `server = scripted(script)`; all stop after the test."""
    servers: list[ScriptedServer] = []

    def start(script, **kw) -> ScriptedServer:  # type: ignore[no-untyped-def]
        s = ScriptedServer(script, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[ScriptedServer], None]:
    """Point the OpenAI SDK variables at a scripted server."""

    def point(server: ScriptedServer) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")

    return point


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_model: runs a real local model server (opt-in: FORGEGIT_LOCAL_MODEL=1)")
