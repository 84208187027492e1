"""`forgegit log` on a real trained repository (the demo's)."""
from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from forgegit import demo, history
from forgegit.cli import cli
from forgegit.scripted import ScriptedServer


def test_log_names_the_sandbox_level_the_run_reached(tmp_path: Path) -> None:
    repo = demo.make_repo(tmp_path / "demo")
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        with ScriptedServer(demo.make_script()) as server:
            env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-log-test"}
            trained = runner.invoke(cli, ["train", "--epochs", "1", "--run-id", "l1"], env=env)
        assert trained.exit_code == 0, trained.output
        out = runner.invoke(cli, ["log"]).output
    finally:
        os.chdir(cwd)
    level = history.load_run(repo, "forgegit/train/l1").sandbox
    assert level.startswith("secrets-safe") and f"sandbox: {level}" in out
