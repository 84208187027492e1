"""Every number a user reads is right: training scores of a run that kept nothing, USD budgets, costs at
today's prices, and the provider's cached prompt tokens (issue 14, items 1-5).

Real git repositories, the real CLI, the scripted OpenAI-compatible server on loopback.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git
from scripted_server import PromptCache

from forgegit import demo, history
from forgegit.cli import cli
from forgegit.cost import cost_of, reprice, usage_cost
from forgegit.github import pr_title
from forgegit.records import ModelTokens, Usage
from forgegit.report import render_markdown, summary_table
from forgegit.scripted import text, tool_calls


def forgegit(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def useless_optimizer(request: dict[str, Any]) -> Any:
    """An optimizer whose every edit changes nothing the agent needs: each epoch is reverted."""
    if request["model"] == demo.OPTIMIZER_MODEL:
        if any(m["role"] == "tool" for m in request["messages"]):
            return text("ok")
        return tool_calls(("add_function", {"name": "word_count", "code": demo.WORD_COUNT}),
                          content="Add a word counter.")
    return demo.agent_reply(request)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = demo.make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    return repo


def set_config(repo: Path, extra: str) -> None:
    config = repo / "forgegit.toml"
    config.write_text(config.read_text() + extra)
    git(repo, "commit", "-qam", "config")


# ------------------------------------------------------------------ item 1


def test_a_run_that_keeps_no_epoch_reports_its_baseline_as_the_trained_score(
        repo: Path, scripted: Any, llm_env: Any) -> None:
    """`train`, `log` and the pull request say training 8.3% -> 8.3% (not -> 0.0%) when every epoch is
    reverted, and "best" names the base commit, never a revert commit."""
    llm_env(scripted(useless_optimizer))
    result = forgegit("train", "--run-id", "r1", "--patience", "1")
    assert result.exit_code == 0, result.output
    run = history.load_run(repo, "forgegit/train/r1")
    assert [e.kept for e in run.epochs] == [False] and run.baseline_score > 0
    base = f"{run.baseline_score * 100:.1f}%"
    assert f"training score: {base} -> {base}" in result.output
    assert "-> 0.0%" not in result.output
    assert run.best_commit == run.base_commit and run.best_score == run.baseline_score
    reverts = {e.revert for e in run.epochs}
    assert run.best_commit not in reverts
    log = forgegit("log", "r1")
    assert f"training score: {base} -> {base} (no epoch kept)" in log.output
    body = render_markdown(run)
    assert f"| train | {base} | {base} | +0.0 pp |" in body
    assert "0.0%" not in pr_title(run) and "→ 0.0%" not in body
    # a record written before the fix (best_score 0, best_commit the revert) reads right too
    run.best_score, run.best_commit = 0.0, str(run.epochs[0].revert)
    assert f"training score: {base} -> {base}" in summary_table(run)
    assert f"| train | {base} | {base} |" in render_markdown(run)


# ------------------------------------------------------------------ item 2


def test_a_usd_budget_for_a_model_without_a_price_is_refused_naming_prices(
        repo: Path, scripted: Any, llm_env: Any) -> None:
    """`train --budget 0.01` with an unpriced model stops before any call, naming `[prices]` and
    `--budget-tokens`; once `prices` sets the model's price the same budget stops training."""
    server = scripted(demo.make_script())
    llm_env(server)
    refused = CliRunner().invoke(cli, ["train", "--run-id", "b1", "--budget", "0.01"])
    assert refused.exit_code == 1 and server.calls == 0
    message = str(refused.exception)
    assert "no price is known for 'scripted-agent'" in message and "'scripted-optimizer'" in message
    assert "prices = {" in message and "--budget-tokens" in message
    assert not git(repo, "branch", "--list", "forgegit/train/b1")
    set_config(repo, 'prices = { "scripted-agent" = { prompt = 100000, completion = 100000 }, '
                     '"scripted-optimizer" = { prompt = 100000, completion = 100000 } }\n')
    priced = forgegit("train", "--run-id", "b2", "--budget", "0.01")
    assert priced.exit_code == 0, priced.output
    run = history.load_run(repo, "forgegit/train/b2")
    assert run.stop_reason == "budget" and run.usage.cost >= 0.01 and len(run.epochs) < 3


# ------------------------------------------------------------------ item 3


def test_a_prices_change_changes_the_cost_shown_for_recorded_results(
        repo: Path, scripted: Any, llm_env: Any) -> None:
    """After `[prices]` changes, a reused evaluation, `log` and `--json` show the cost of the recorded
    tokens at the new price, not the cost frozen in the notes."""
    server = scripted(demo.make_script())
    llm_env(server)
    set_config(repo, 'prices = { "scripted-agent" = { prompt = 1.0, completion = 2.0 } }\n')
    first = json.loads(forgegit("eval", "--json").output)
    u = first["usage"]
    assert u["cost"] == pytest.approx((u["prompt_tokens"] * 1.0 + u["completion_tokens"] * 2.0) / 1e6)
    calls = server.calls
    config = repo / "forgegit.toml"
    config.write_text(config.read_text().replace("prompt = 1.0, completion = 2.0", "prompt = 10.0, completion = 20.0"))
    again = json.loads(forgegit("eval", "--json").output)
    assert again["reused"] and server.calls == calls
    assert again["usage"]["cost"] == pytest.approx(10 * u["cost"])
    text_out = forgegit("eval").output
    assert f"cost ${again['usage']['cost']:.4f}" in text_out
    # log and the run record: repriced when shown
    llm_env(scripted(useless_optimizer))
    assert forgegit("train", "--run-id", "c1", "--patience", "1").exit_code == 0
    stored = history.load_run(repo, "forgegit/train/c1").usage
    config.write_text(config.read_text().replace("prompt = 10.0, completion = 20.0", "prompt = 0.0, completion = 0.0"))
    shown = json.loads(forgegit("log", "c1", "--json").output)
    assert stored.cost > 0 and shown["usage"]["cost"] == 0.0
    assert re.search(r"usage: .* calls, \$0\.0000", forgegit("log", "c1").output)


def test_old_usage_without_per_model_tokens_keeps_its_recorded_cost() -> None:
    """A note written before tokens were kept per model still shows the cost it recorded."""
    assert usage_cost(Usage(1000, 100, 1, 0, 0.42)) == 0.42
    u = Usage(1_000_000, 0, 1, 0, 9.0, models={"gpt-4o-mini": ModelTokens(1_000_000, 0, 0)})
    assert reprice(u).cost == pytest.approx(0.15)


# ------------------------------------------------------------------ item 4


def test_cached_prompt_tokens_are_priced_at_the_cached_rate() -> None:
    """A prompt token the provider served from its cache costs the cached rate (gpt-4o-mini: half)."""
    assert cost_of("gpt-4o-mini", 1_000_000, 0, cached_tokens=1_000_000) == pytest.approx(0.075)
    assert cost_of("gpt-4o-mini", 1_000_000, 0, cached_tokens=400_000) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075)
    prices = {"m": {"prompt": 1.0, "completion": 2.0, "cached": 0.1}}
    assert cost_of("m", 1_000_000, 0, prices, cached_tokens=1_000_000) == pytest.approx(0.1)
    no_rate = {"m": {"prompt": 1.0, "completion": 2.0}}  # no cached rate: the full prompt rate
    assert cost_of("m", 1_000_000, 0, no_rate, cached_tokens=1_000_000) == pytest.approx(1.0)


def test_eval_counts_and_shows_the_providers_cached_prompt_tokens(
        repo: Path, scripted: Any, llm_env: Any) -> None:
    """With a server that reports `prompt_tokens_details.cached_tokens`, `eval` counts them, shows
    them, and costs them at the cached rate (less than the same tokens uncached)."""
    set_config(repo, 'prices = { "scripted-agent" = { prompt = 1.0, completion = 1.0, cached = 0.1 } }\n')
    cache = PromptCache(min_tokens=32, block=16)
    llm_env(scripted(demo.make_script(), prompt_cache=cache))
    result = forgegit("eval", "--json", "--concurrency", "1")
    data = json.loads(result.output)
    u = data["usage"]
    assert 0 < u["cached_tokens"] < u["prompt_tokens"] and cache.hits > 0
    full = (u["prompt_tokens"] + u["completion_tokens"]) / 1e6
    assert u["cost"] == pytest.approx(full - u["cached_tokens"] * 0.9 / 1e6)
    shown = forgegit("eval").output
    assert re.search(rf"prompt {u['prompt_tokens']:,} of which {u['cached_tokens']:,} cached", shown), shown


# ------------------------------------------------------------------ item 5


def test_every_agent_request_starts_with_the_same_system_prompt_and_tools(
        repo: Path, scripted: Any, llm_env: Any) -> None:
    """The stable part of a request (tool schemas, system prompt) comes before the task, so a
    provider's prefix cache serves it to every task: each first request differs only after it."""
    server = scripted(demo.make_script())
    llm_env(server)
    assert forgegit("eval", "--concurrency", "1").exit_code == 0
    firsts = [r for r in server.requests if len(r["messages"]) == 2]
    assert len(firsts) == len(demo.TASKS)
    rendered = [PromptCache.render(r) for r in firsts]
    stable = PromptCache.render({"tools": firsts[0].get("tools"), "messages": firsts[0]["messages"][:1]})
    assert all(p.startswith(stable) for p in rendered)
    assert [m["role"] for m in firsts[0]["messages"]] == ["system", "user"]


def test_the_optimizers_prompt_keeps_the_functions_in_its_cacheable_prefix_when_one_is_added() -> None:
    """After an epoch adds a function, the next optimizer prompt still starts with the same system
    prompt and the same earlier function sources (no count in the heading that would change first),
    so a provider's prefix cache serves them again."""
    from forgegit.prompt import EpochScore, build_prompt
    from forgegit.records import EvalResult, TaskResult

    results = [TaskResult("t1", False, "1", "2", "expected 2, got 1")]
    last = EvalResult("k", "rev", "tree", "tasks.jsonl", "h", "m", 0, 1, Usage(), results)
    before = {"add.py": demo.BASE_FUNCTION.encode()}
    after = {**before, "digit_sum.py": demo.DIGIT_SUM.encode()}
    a = build_prompt(before, last, {}, [], max_actions=3, context_tokens=12000)
    b = build_prompt(after, last, {}, [EpochScore(1, 0.5, True, ["add digit_sum"])],
                     max_actions=3, context_tokens=12000)
    assert a[0] == b[0]  # the system prompt
    shared = len(os.path.commonprefix([a[1]["content"], b[1]["content"]]))
    assert demo.BASE_FUNCTION.strip() in b[1]["content"][:shared]
