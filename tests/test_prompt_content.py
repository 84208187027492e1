"""What the optimizer's prompt carries: attempts not kept, diverse full conversations at scale, and
never the validation or test splits' answers (real training runs against a scripted model)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forgegit import demo
from forgegit.cli import cli

VAL = [{"id": f"val-{n}", "question": f"What is the sum of the digits of {n}?", "answer": str(sum(map(int, str(n))))}
       for n in (98989898, 76767676, 54545454)]
TEST = [{"id": f"test-{n}", "question": f"What is the sum of the digits of {n}?", "answer": str(sum(map(int, str(n))))}
        for n in (89898989, 67676767)]


def forgegit(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def recording_script(prompts: list[str]) -> Any:
    inner = demo.make_script()

    def script(request: dict[str, Any]) -> Any:
        if request.get("model") == demo.OPTIMIZER_MODEL:
            prompts.append(json.dumps(request["messages"]))
        return inner(request)
    return script


def test_validation_and_test_answers_never_reach_any_optimizer_prompt(
        tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole run with --val and --test: no optimizer request holds a val/test question, id or answer."""
    repo = demo.make_repo(tmp_path / "repo")
    (repo / "tasks" / "val.jsonl").write_text("".join(json.dumps(t) + "\n" for t in VAL))
    (repo / "tasks" / "test.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TEST))
    prompts: list[str] = []
    llm_env(scripted(recording_script(prompts)))
    monkeypatch.chdir(repo)
    forgegit("train", "--run-id", "splits", "--val", "tasks/val.jsonl", "--test", "tasks/test.jsonl")
    assert len(prompts) >= 3  # the optimizer was asked every epoch
    for p in prompts:
        for t in VAL + TEST:
            number = t["question"].split()[-1].rstrip("?")
            assert number not in p and t["id"] not in p
            assert f"expected: {t['answer']}" not in p and f"expected {t['answer']}" not in p
    assert "expected: 39" in prompts[0]  # the training tasks' answers are shown (show_expected defaults to true)
