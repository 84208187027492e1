"""The gate (forgegit/gate.py): no-worse, sequential looks with alpha spending, and the warning when a task set
is too small for the gate to ever keep an epoch; unit checks, a simulation of the error it controls, and runs."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

import scripted_training
from conftest import git
from scripted_training import add

from forgegit import gate, history
from forgegit.cli import cli
from forgegit.scripted import text, tool_calls


def outcomes(passed: list[int]) -> dict[str, bool]:
    return {f"t{i:02d}": bool(p) for i, p in enumerate(passed)}


# --- no-worse ------------------------------------------------------------------------------


def test_no_worse_keeps_a_tie_and_reverts_only_a_loss() -> None:
    """gate = "no-worse" (the paper's rule): a tie is kept (but is no gain for patience), a loss is not."""
    before = outcomes([1, 0, 1, 0])
    tie = gate.decide(before, outcomes([1, 0, 1, 0]), rule="no-worse")
    worse = gate.decide(before, outcomes([0, 0, 1, 0]), rule="no-worse")
    better = gate.decide(before, outcomes([1, 1, 1, 0]), rule="no-worse")
    assert tie.kept and not gate.is_gain(tie) and "patience" in tie.reason
    assert not worse.kept and "worse" in worse.reason
    assert better.kept and gate.is_gain(better) and better.p_value is None


def test_final_gate_under_no_worse_needs_a_strict_gain() -> None:
    """A pull request claims an improvement: under no-worse the final gate does not pass on a tie."""
    from forgegit.records import EvalResult, TaskResult, Usage

    def result(passed: list[int]) -> EvalResult:
        rs = [TaskResult(f"t{i}", bool(p), "", "") for i, p in enumerate(passed)]
        return EvalResult("k", "r", "t", "f", "h", "m", sum(passed), len(passed), Usage(), rs)

    assert not gate.compare("val", "v", result([1, 0]), result([1, 0]), rule="no-worse", alpha=0.1, min_delta=0).passed
    assert gate.compare("val", "v", result([1, 0]), result([1, 1]), rule="no-worse", alpha=0.1, min_delta=0).passed


def test_unknown_gate_is_one_line_naming_every_rule() -> None:
    """A typo in --gate names the rules that exist."""
    from forgegit.errors import ForgegitError

    with pytest.raises(ForgegitError, match="mcnemar, bootstrap, delta or no-worse"):
        gate.decide({}, {}, rule="vibes")


# --- sequential looks ------------------------------------------------------------------------


def test_looks_double_up_to_the_whole_set_and_levels_sum_to_alpha() -> None:
    """The looks an epoch may take and the share of alpha each is tested at."""
    assert gate.looks(3, 20) == [3, 6, 12, 20]
    assert gate.looks(0, 20) == [20] and gate.looks(25, 20) == [20]
    assert gate.spending(0.1, 1) == [0.1]
    levels = gate.spending(0.1, 4)
    assert levels[:3] == pytest.approx([0.05, 0.025, 0.0125]) and sum(levels) == pytest.approx(0.1)


def sequential_keeps(rng: random.Random, n: int, batch: int, alpha: float, spend: bool) -> bool:
    """One null epoch (each task flips either way with the same chance) judged with sequential looks."""
    before = [rng.random() < 0.5 for _ in range(n)]
    after = [b if rng.random() < 0.6 else not b for b in before]
    sizes = gate.looks(batch, n)
    levels = gate.spending(alpha, len(sizes)) if spend else [alpha] * len(sizes)
    for size, level in zip(sizes, levels):
        d = gate.decide(dict(enumerate(before[:size])), dict(enumerate(after[:size])),  # type: ignore[arg-type]
                        rule="mcnemar", alpha=level)
        if not gate.undecided(d):
            return d.kept
    return False


def test_alpha_spending_bounds_the_chance_of_keeping_a_useless_epoch() -> None:
    """Under no real effect, sequential looks keep an epoch at most alpha of the time (re-testing at full alpha
    on every look does not): the error the README says is controlled."""
    rng = random.Random(7)
    trials = 3000
    spent = sum(sequential_keeps(rng, 80, 10, 0.1, True) for _ in range(trials)) / trials
    naive = sum(sequential_keeps(rng, 80, 10, 0.1, False) for _ in range(trials)) / trials
    assert spent <= 0.1
    assert naive > spent  # what spending buys


# --- power on small sets -----------------------------------------------------------------------


def test_power_warning_names_the_three_task_trap_and_the_ways_out() -> None:
    """A 3-task set under McNemar at alpha 0.1 can never keep anything (p >= 0.125): the warning says what to do."""
    w = gate.power_warning(3, "mcnemar", 0.1, "tasks/train.jsonl")
    assert w is not None and "tasks/train.jsonl has 3 task(s)" in w and "p=0.125" in w
    assert "at least 4" in w and "no-worse" in w and "raise alpha above 0.125" in w
    assert gate.power_warning(4, "mcnemar", 0.1, "x") is None
    assert gate.power_warning(3, "no-worse", 0.1, "x") is None and gate.power_warning(3, "bootstrap", 0.1, "x") is None
    batch = gate.power_warning(20, "mcnemar", 0.1, "x", batch_size=3)
    assert batch is not None and "batch_size" in batch
    assert gate.power_warning(20, "mcnemar", 0.1, "x", batch_size=3, sequential=True) is None


def test_init_warns_that_its_example_tasks_are_too_few_for_the_gate(tmp_path: Path) -> None:
    """`forgegit init` scaffolds 3 tasks and says the default gate can never keep an epoch on them, and what to do."""
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "proj")])
    assert result.exit_code == 0, result.output
    assert "warning: tasks/train.jsonl has 3 task(s)" in result.output and "no-worse" in result.output


# --- training runs -------------------------------------------------------------------------------

@pytest.fixture
def gate_repo(tmp_path: Path, scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """make(passes, replies, n=12, config=""): a training repository (tests/scripted_training.py), served."""

    def make(passes: Callable[[int, list[str]], bool], replies: list[Any], n: int = 12, config: str = "") -> Path:
        training, script = scripted_training.make(tmp_path, passes, replies, n=n, config=config)
        llm_env(scripted(script))
        monkeypatch.chdir(training.repo)
        return training.repo

    return make


def train(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_train_warns_when_the_gate_can_never_keep_an_epoch(gate_repo: Callable[..., Path]) -> None:
    """`forgegit train` on 3 tasks with the default gate says no epoch can ever be kept, before spending more."""
    repo = gate_repo(lambda i, tools: False, [text("nothing")], n=3)
    out = train("--run-id", "tiny", "--epochs", "1").output
    assert "warning: tasks/train.jsonl has 3 task(s)" in out and "no-worse" in out
    assert history.load_run(repo, "forgegit/train/tiny").status == "finished"


def test_no_worse_gate_keeps_a_neutral_edit_and_stops_on_patience(gate_repo: Callable[..., Path]) -> None:
    """Under no-worse a neutral epoch is kept (not reverted), yet epochs without a strict gain still early-stop."""
    repo = gate_repo(lambda i, tools: i % 2 == 0, [tool_calls(add("neutral_a")), tool_calls(add("neutral_b")),
                                                   tool_calls(add("neutral_c"))])
    train("--run-id", "nw", "--gate", "no-worse", "--epochs", "5", "--patience", "2")
    run = history.load_run(repo, "forgegit/train/nw")
    assert [e.kept for e in run.epochs] == [True, True] and not any(e.revert for e in run.epochs)
    assert run.stop_reason == "early-stop"
    assert "neutral_b.py" in git(repo, "ls-tree", "--name-only", "forgegit/train/nw:functions")
    assert not run.improved  # no gain on validation: no pull request claims one


def test_sequential_looks_keep_a_real_gain_a_small_batch_cannot_prove(gate_repo: Callable[..., Path]) -> None:
    """With --batch-size 3 a +3/-0 epoch is not significant (p=0.125); sequential looks evaluate more training
    tasks and keep it, and the note records the looks and the level spent; with sequential off it is reverted."""
    def passes(i: int, tools: list[str]) -> bool:
        return "solver" in tools

    repo = gate_repo(passes, [tool_calls(add("solver"))])
    out = train("--run-id", "seq", "--epochs", "1", "--batch-size", "3").output
    epoch = history.load_run(repo, "forgegit/train/seq").epochs[0]
    assert epoch.kept and epoch.gate is not None
    assert epoch.gate.looks == 2 and epoch.gate.tasks == 6 and epoch.gate.alpha == pytest.approx(0.025)
    assert (epoch.gate.up, epoch.gate.down) == (6, 0) and "looking at 3 more" in out

    with (repo / "forgegit.toml").open("a") as f:
        f.write("sequential = false\n")
    git(repo, "commit", "-qam", "sequential off")
    train("--run-id", "fixed", "--epochs", "1", "--batch-size", "3")
    fixed = history.load_run(repo, "forgegit/train/fixed").epochs[0]
    assert not fixed.kept and fixed.gate is not None and fixed.gate.looks == 1 and fixed.gate.tasks == 3


def test_sequential_looks_stop_at_a_loss(gate_repo: Callable[..., Path]) -> None:
    """An epoch that is worse on its batch is reverted at once: no extra tasks are evaluated for it."""
    repo = gate_repo(lambda i, tools: "breaker" not in tools, [tool_calls(add("breaker"))])
    out = train("--run-id", "loss", "--epochs", "1", "--batch-size", "3").output
    epoch = history.load_run(repo, "forgegit/train/loss").epochs[0]
    assert not epoch.kept and epoch.gate is not None and epoch.gate.looks == 1 and "more" not in out
