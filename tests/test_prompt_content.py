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


def repeat_script(prompts: list[list[dict[str, Any]]]) -> Any:
    """The demo, but the optimizer proposes the reverted broken digit_sum again at epoch 3."""
    from forgegit.scripted import text, tool_calls

    def optimizer(request: dict[str, Any]) -> Any:
        prompts.append(request["messages"])
        if any(m.get("role") == "tool" for m in request["messages"]):
            return text("Understood: I will not repeat it.")
        epoch = demo.epoch_of(request)
        code = demo.DIGIT_SUM if epoch == 1 else demo.DIGIT_SUM_BROKEN
        if epoch > 3:
            return text("No more changes.")
        kind = "add_function" if epoch == 1 else "revise_function"
        return tool_calls((kind, {"name": "digit_sum", "description": "Sum of decimal digits",
                                  "arguments": {"type": "object"}, "packages": "", "code": code}),
                          content=f"epoch {epoch} edit")

    def script(request: dict[str, Any]) -> Any:
        if request.get("model") == demo.OPTIMIZER_MODEL:
            return optimizer(request)
        return demo.agent_reply(request)
    return script


def user_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") in ("user", "tool"))


def test_a_reverted_attempt_reaches_later_prompts_and_recreating_it_is_refused_before_evaluation(
        tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a revert the optimizer sees the diff, scores, gate reason and broken tasks; proposing the
    same functions again is refused without evaluating them, and the repair request says what happened."""
    from forgegit import history
    repo = demo.make_repo(tmp_path / "repo")
    prompts: list[list[dict[str, Any]]] = []
    server = scripted(repeat_script(prompts))
    llm_env(server)
    monkeypatch.chdir(repo)
    forgegit("train", "--run-id", "memory", "--epochs", "4", "--patience", "3")
    run = history.load_run(repo, "forgegit/train/memory")
    assert [e.kept for e in run.epochs][:3] == [True, False, False]
    third = user_text(prompts[2])  # epoch 3's first request
    assert "### epoch 2: reverted: worse; score 1.000 -> 0.000" in third
    assert "broke 12 task(s) (digits-987654" in third and "gate: " in third
    assert "+    return sum(int(d) for d in str(abs(n))[1:])  # skip the leading digit" in third  # its diff
    e3 = run.epochs[2]
    assert e3.commit is None and e3.score_after is None  # refused: never committed, never evaluated
    (refusal,) = [a for a in e3.actions if not a.accepted]
    assert "recreate exactly the functions of epoch 2" in refusal.reason and "broke 12 task(s)" in refusal.reason
    repair = user_text(prompts[3])  # the repair request of epoch 3
    assert "rejected: these edits recreate exactly the functions of epoch 2" in repair
    fourth = user_text(prompts[4])
    assert "- epoch 3: score 1.000, every proposed action was rejected: nothing applied" in fourth  # not "reverted"
    assert "- epoch 2: score 0.000, reverted: worse" in fourth


def test_show_expected_false_keeps_expected_answers_out_of_the_prompt() -> None:
    """With show_expected = false the optimizer sees no expected answer, not even inside the checker's feedback."""
    from forgegit.prompt import build_prompt
    from forgegit.records import EvalResult, TaskResult, Usage
    results = [TaskResult("t1", False, "41", "4242", "expected 4242, got 41"),
               TaskResult("t2", True, "Final answer: 977", "977", "")]
    conv = {"t2": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Final answer: 977"}]}
    ev = EvalResult("k", "r", "t", "f", "h", "m", 1, 2, Usage(), results)
    shown = json.dumps(build_prompt({}, ev, conv, [], max_actions=1, context_tokens=4000))
    hidden = json.dumps(build_prompt({}, ev, conv, [], max_actions=1, context_tokens=4000, show_expected=False))
    assert "4242" in shown and "977" in shown
    assert "4242" not in hidden and "977" not in hidden and "got 41" in hidden
    assert "[expected answer hidden]" in hidden


def test_with_2000_training_tasks_the_prompt_still_carries_full_conversations_of_failed_tasks() -> None:
    """At 2,000 tasks the default budget shows whole conversations of diverse failures and a summary of the rest."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from prompt_scale import measure
    m = measure(2000, 12000, seed=0)
    assert m["tokens"] <= 12000 and m["full"] >= 3 and m["summary"]
    assert m["kinds"] == m["kinds_present"] == 4  # one of each failure kind present, not four of the commonest
    again = measure(2000, 12000, seed=0)
    assert again == {**m, "seconds": again["seconds"]}  # reproducible with its seed
