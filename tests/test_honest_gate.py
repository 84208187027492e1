"""The paired gate against a noisy model: a useless edit that wins by luck is kept by the raw
delta rule and rejected by McNemar's test, and the epoch's note records the test and its counts."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git

from forgegit import demo, history, notes
from forgegit.cli import cli
from forgegit.scripted import text, tool_calls, tool_names
from forgegit.stats import mcnemar_exact

N_TASKS = 20


def lucky(question: str, tools: list[str]) -> bool:
    """The noisy agent: right or wrong by a coin that depends on the question and the tool set only."""
    digest = hashlib.sha256((question + "|" + ",".join(sorted(tools))).encode()).digest()
    return digest[0] % 2 == 0


def useless_function(name: str) -> str:
    return demo.WORD_COUNT.replace("def word_count", f"def {name}")


def pick_useless_name(questions: list[str]) -> tuple[str, int, int]:
    """A function name whose addition flips tasks by luck: a gain, but not a significant one."""
    for i in range(500):
        name = f"helper_{i}"
        before = [lucky(q, ["add"]) for q in questions]
        after = [lucky(q, ["add", name]) for q in questions]
        up = sum(a and not b for a, b in zip(after, before))
        down = sum(b and not a for a, b in zip(after, before))
        if up > down and mcnemar_exact(up, down) > 0.1:
            return name, up, down
    raise AssertionError("no suitable name found")


@pytest.fixture
def noisy_repo(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    repo = demo.make_repo(tmp_path / "repo")
    tasks = [{"id": f"q{i}", "question": f"Question {i}: what is {i} + {i}?", "answer": str(2 * i)} for i in range(N_TASKS)]
    (repo / "tasks" / "train.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    git(repo, "commit", "-qam", "noisy tasks")
    name, up, down = pick_useless_name([t["question"] for t in tasks])

    def script(request: dict[str, Any]) -> Any:
        if request["model"] == demo.OPTIMIZER_MODEL:
            if any(m["role"] == "tool" for m in request["messages"]):
                return text("done")
            return tool_calls(("add_function", {"name": name, "code": useless_function(name)}),
                              content="A helper that will surely help.")
        question = request["messages"][1]["content"]
        i = int(question.split()[1].rstrip(":"))
        tools = [t for t in tool_names(request) if t != "python"]
        return text(f"Final answer: {2 * i if lucky(question, tools) else 2 * i + 1}")

    llm_env(scripted(script))
    monkeypatch.chdir(repo)
    return repo, up, down


def train(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_raw_delta_keeps_a_lucky_useless_epoch_but_mcnemar_does_not(noisy_repo: Any) -> None:
    repo, up, down = noisy_repo
    train("--run-id", "raw", "--gate", "delta")
    raw = history.load_run(repo, "forgegit/train/raw")
    assert raw.epochs[0].kept and raw.epochs[0].score_after > raw.epochs[0].score_before  # fooled by noise

    train("--run-id", "paired", "--gate", "mcnemar", "--alpha", "0.1")
    paired = history.load_run(repo, "forgegit/train/paired")
    epoch = paired.epochs[0]
    assert not epoch.kept and epoch.revert
    assert epoch.gate is not None and epoch.gate.test == "mcnemar"
    assert (epoch.gate.up, epoch.gate.down) == (up, down)
    assert epoch.gate.p_value == pytest.approx(mcnemar_exact(up, down))
    # the epoch's own note records the test, its p-value and the flips
    note = notes.read_note(repo, epoch.commit)["epoch"]["gate"]
    assert note["test"] == "mcnemar" and note["up"] == up and note["down"] == down and note["p_value"] > 0.1
    assert not paired.improved


def test_final_gate_reports_difference_with_confidence_interval(noisy_repo: Any) -> None:
    repo, up, down = noisy_repo
    train("--run-id", "ci", "--gate", "delta")
    run = history.load_run(repo, "forgegit/train/ci")
    g = run.final_gate
    assert g is not None and g.ci_low is not None and g.ci_high is not None
    assert g.ci_low < g.delta < g.ci_high and g.ci_low < 0  # the interval says the gain may be nothing
    assert len(g.flipped_up) == up and len(g.flipped_down) == down
    assert all("feedback" in f for f in g.flipped_down)
