"""The bundled examples run as shipped: their forgegit.toml (field mapping, checker), their splits and
the project's own functions/, against a scripted model that uses the `calculate` function."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git, make_repo

from forgegit.cli import cli
from forgegit.scripted import text, tool_calls, tool_names

ROOT = Path(__file__).resolve().parent.parent


def example_repo(tmp_path: Path, name: str) -> Path:
    """A repository holding the project's functions/ and one example directory, as a user would copy them."""
    repo = make_repo(tmp_path / "repo")
    shutil.copytree(ROOT / "functions", repo / "functions")
    shutil.copytree(ROOT / "examples" / name, repo / "examples" / name, ignore=shutil.ignore_patterns("test.jsonl"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")
    return repo


def answer_key(path: Path, question_field: str, answer_of: Any) -> dict[str, str]:
    return {json.loads(line)[question_field]: answer_of(json.loads(line)) for line in path.read_text().splitlines()}


def calculating_agent(key: dict[str, str], wrap: str) -> Any:
    """Looks the answer up (it is scripted), but routes it through the sandboxed `calculate` function when numeric."""

    def script(request: dict[str, Any]) -> Any:
        question = request["messages"][1]["content"]
        answer = key[question]
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if results:
            return text(f"The calculation gives {results[-1]}.\nFinal answer: {wrap.format(results[-1])}")
        if re.fullmatch(r"-?\d+", answer) and "calculate" in tool_names(request):
            return tool_calls(("calculate", {"expression": f"{answer} + 0"}))
        return text(f"Final answer: {wrap.format(answer)}")

    return script


def test_gsm8k_example_scores_through_the_gsm8k_checker_and_calculate(tmp_path: Path, scripted: Any, llm_env: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo = example_repo(tmp_path, "gsm8k")
    example = repo / "examples" / "gsm8k"
    key = answer_key(example / "train.jsonl", "question", lambda t: t["answer"].split("####")[-1].strip().replace(",", ""))
    server = scripted(calculating_agent(key, "{}"))
    llm_env(server)
    monkeypatch.chdir(example)
    result = CliRunner().invoke(cli, ["eval", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total"] == 40 and data["score"] == 1.0
    assert sum(r["tool_calls"] for r in data["results"]) == 40  # every answer went through calculate


def test_math_example_scores_boxed_latex_by_subject(tmp_path: Path, scripted: Any, llm_env: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = example_repo(tmp_path, "math")
    example = repo / "examples" / "math"
    key = answer_key(example / "train.jsonl", "problem", lambda t: t["answer"])
    llm_env(scripted(calculating_agent(key, "\\boxed{{{}}}")))
    monkeypatch.chdir(example)
    result = CliRunner().invoke(cli, ["eval", "--json", "--by", "subject"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total"] == 40 and data["score"] == 1.0
    assert len(data["by"]) == 7  # all seven MATH subjects are in the split
