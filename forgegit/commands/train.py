"""`forgegit train`: optimizer epochs as commits on a training branch, gated, reverted, early-stopped."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Callable, Optional

import click

from .. import history, records, reviews, safejson
from ..actions_env import set_output
from ..cost import budget_problem, reprice
from ..errors import ForgegitError
from ..evaluation import Evaluator
from ..records import ReviewRound, RunRecord
from ..tasks import TaskSet
from ..trainer import Trainer, TrainLock, Worktree, new_run_id
from ..workspace import Workspace, is_terminal
from ._options import agent_options
from ._sandbox import announce_sandbox
from .eval import ProgressLine


@click.command("train")
@click.option("--tasks", "tasks_path", help="Training task file (default: `tasks` in forgegit.toml).")
@click.option("--val", "val_path", help="Validation task file for the final gate (default: the training file).")
@click.option("--test", "test_path", help="Sealed test file: scored once, for the base and the final revision.")
@click.option("--base", "base_branch", help="Branch to train from (default: the current branch).")
@click.option("--run-id", help="Name of the run (branch forgegit/train/<run-id>); default: a timestamp.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (the latest, or --run-id).")
@click.option("--merge", is_flag=True, help="Merge into the base branch if the final gate passes.")
@click.option("--from-pr", "from_pr", type=click.IntRange(1), metavar="N",
              help="Continue the run of forgegit pull request N on its branch, its reviewers' feedback first in the prompt.")
@click.option("--reviews", "reviews_path", type=click.Path(dir_okay=False, exists=True),
              help="With --from-pr: the feedback as `forgegit reviews N --out FILE` wrote it (no GitHub call).")
@click.option("--epochs", type=click.IntRange(0), help="Most epochs.")
@click.option("--patience", type=click.IntRange(1), help="Stop after this many epochs in a row without improvement.")
@click.option("--max-actions", type=click.IntRange(1), help="Most function edits per epoch.")
@click.option("--min-delta", type=float, help="Least score gain for an epoch to be kept.")
@click.option("--gate", type=click.Choice(["mcnemar", "bootstrap", "delta", "no-worse"]), help="Epoch gate.")
@click.option("--alpha", type=float, help="Significance level of the mcnemar/bootstrap gate.")
@click.option("--batch-size", type=click.IntRange(0), help="Tasks sampled per epoch (0 = all).")
@click.option("--budget", "budget_usd", type=float, help="Stop cleanly once this many USD are spent.")
@click.option("--budget-tokens", type=click.IntRange(0), help="Stop cleanly once this many tokens are spent.")
@click.option("--optimizer-model", help="Model that proposes the edits (default: --model).")
@agent_options
def command(ws: Workspace, tasks_path: Optional[str], val_path: Optional[str], test_path: Optional[str],
            base_branch: Optional[str], run_id: Optional[str], resume: bool, merge: bool, from_pr: Optional[int],
            reviews_path: Optional[str], **overrides: object) -> None:
    """Train the functions on a task set: each epoch a commit, kept or reverted by the gate."""
    ws.settings = ws.settings.with_overrides(**overrides)
    branch = None
    review: Optional[ReviewRound] = None
    if reviews_path and from_pr is None:
        raise click.UsageError("--reviews goes with --from-pr N")
    if from_pr is not None:
        if resume or run_id:
            raise click.UsageError("--from-pr N continues that pull request's run: drop --resume/--run-id")
        review = _review_round(ws, from_pr, reviews_path)
        branch = review.branch
        recorded = history.load_run(ws.root, branch)
        ws.settings = ws.settings.with_overrides(**recorded.settings).with_overrides(**overrides)
        tasks_path, val_path, test_path = str(ws.root / recorded.tasks_file), str(ws.root / recorded.val_file), None
        run_id = recorded.run_id
        click.echo(f"continuing run {run_id} of pull request #{from_pr} with {len(review.comments)} review comment(s):")
        for line in reviews.log_lines(review):
            click.echo(line)
    elif resume:
        branch = history.BRANCH_PREFIX + run_id if run_id else history.latest_run_branch(ws.root)
        if not branch:
            raise ForgegitError("no training run to resume (no forgegit/train/* branch)")
        recorded = history.load_run(ws.root, branch)
        ws.settings = ws.settings.with_overrides(**recorded.settings)
        # The record keeps paths relative to the repository root, wherever forgegit.toml is.
        tasks_path, val_path = str(ws.root / recorded.tasks_file), str(ws.root / recorded.val_file)
        test_path = str(ws.root / recorded.test_file) if recorded.test_file else None
        run_id = recorded.run_id
        if recorded.status == "finished":
            _tidy(ws, recorded.run_id)
            if recorded.test is not None:
                raise ForgegitError(f"run {run_id} is finished and its sealed test split was already scored; refusing to score it again")
            raise ForgegitError(f"run {run_id} is already finished: see `forgegit log {branch}`")
    s = ws.settings
    refusal = budget_problem(s)
    if refusal:
        raise ForgegitError(refusal)
    from_cli = not resume
    tasks = ws.task_set(tasks_path or s.tasks, from_cli=from_cli and bool(tasks_path))
    val = ws.task_set(val_path, from_cli=from_cli) if val_path else (ws.task_set(s.val) if s.val else tasks)
    test = ws.task_set(test_path, from_cli=from_cli) if test_path else (
        ws.task_set(s.test) if s.test and not resume and review is None else None)
    if test is not None:
        _check_sealed(test, tasks, val)
    try:
        run, merged = asyncio.run(_train(ws, tasks, val, test, base_branch, run_id or new_run_id(), branch, merge, review))
    except asyncio.CancelledError:  # only our Ctrl-C handler cancels the run's task
        raise KeyboardInterrupt from None
    _report(reprice(run, ws.settings.prices))
    if merge:  # the last word, and the exit status, say whether --merge merged
        click.echo(merged)
        if not merged.startswith("merged "):
            sys.exit(1)


SAME_SETS_NOTE = ("forgegit: note: no separate validation set (--val): the final gate measures fit to the "
                  "training tasks, not generalization to new ones")


def _review_round(ws: Workspace, number: int, path: Optional[str]) -> ReviewRound:
    """PR number's feedback newer than its run's last round: from the file `forgegit reviews --out` wrote, or
    read from GitHub now; the PR's branch and notes are fetched when this clone lacks them."""
    if path:
        try:
            found = records.parse(ReviewRound, safejson.loads(Path(path).read_text(encoding="utf-8"),
                                                               max_depth=16, max_bytes=4 << 20))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ForgegitError(f"{path}: not a review feedback file ({exc})") from None
        if found.pr != number:
            raise ForgegitError(f"{path} holds the feedback of pull request #{found.pr}, not #{number}")
        reviews.fetch_run(ws.root, found.branch)
    else:
        from .pr import GitHubEnv

        client = GitHubEnv.from_environ().client()
        branch = reviews.training_branch(client, number)
        reviews.fetch_run(ws.root, branch)
        found = reviews.read_round(client, number, reviews.since_of(history.load_run(ws.root, branch)))
    run = history.load_run(ws.root, found.branch)
    found.comments = reviews.unseen(run, found.comments)
    if not found.comments:
        raise ForgegitError(f"pull request #{number} has no review feedback newer than its last training"
                            f"{' (' + run.reviews[-1].fetched + ')' if run.reviews else ''}: nothing new to train on")
    return found


def _check_sealed(test: TaskSet, *others: TaskSet) -> None:
    """A sealed test split that shares questions with the training or validation set seals nothing."""
    seen = {t.question.strip() for ts in others for t in ts.tasks}
    shared = [t.id for t in test.tasks if t.question.strip() in seen]
    if shared:
        raise ForgegitError(
            f"the sealed test split {test.path} shares {len(shared)} question(s) with the training/validation "
            f"tasks (first: {shared[0]}); use a disjoint test file")


def _tidy(ws: Workspace, run_id: str) -> None:
    """A run killed after it finished but while tidying up leaves its worktree and lock: remove them."""
    try:
        with TrainLock(ws.root, run_id, click.echo):  # refuses while another training is running
            tree = Worktree(ws.root, run_id)
            if tree.path.exists():
                tree.close()
    except ForgegitError:
        pass


async def _train(ws: Workspace, tasks: TaskSet, val: TaskSet, test: Optional[TaskSet], base_branch: Optional[str], run_id: str,
                 resume_branch: Optional[str], merge: bool, review: Optional[ReviewRound] = None) -> tuple[RunRecord, str]:
    echo = click.echo
    agent_llm = ws.llm()
    optimizer_llm = ws.llm(optimizer=True)
    evaluator = Evaluator(ws.root, ws.settings, agent_llm, progress=ProgressLine() if is_terminal() else None,
                          on_isolation=announce_sandbox)
    trainer = Trainer(ws, tasks, val, test, evaluator, optimizer_llm, echo=echo)
    restore = _on_ctrl_c(trainer)
    try:
        with TrainLock(ws.root, run_id, echo):
            if review is not None and resume_branch:
                trainer.continue_with_review(resume_branch, review)
            elif resume_branch:
                trainer.resume(resume_branch)
                echo(f"resuming run {trainer.run.run_id} on {resume_branch} ({len(trainer.run.epochs)} epochs recorded)")
            else:
                trainer.start(base_branch, run_id)
                echo(f"run {trainer.run.run_id}: training on branch {trainer.run.branch} from {trainer.run.base_branch}")
            if val.sha256 == tasks.sha256:  # said once the run has started, not before an error
                click.echo(SAME_SETS_NOTE, err=True)
            try:
                run = await trainer.train()
                merged = trainer.merge() if merge else ""
            finally:
                trainer.close()
    finally:
        restore()
        await agent_llm.aclose()
        await optimizer_llm.aclose()
    return run, merged


def _on_ctrl_c(trainer: Trainer) -> Callable[[], None]:
    """The first Ctrl-C cancels the run's task and flags the trainer (which stops at its next step even if the
    cancellation is swallowed on the way); a second one is Python's own KeyboardInterrupt. Returns the undo."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def first() -> None:
        loop.remove_signal_handler(signal.SIGINT)  # back to KeyboardInterrupt for a second Ctrl-C
        trainer.interrupt()
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, first)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return lambda: None

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return undo


def _report(run: RunRecord) -> None:
    from ..report import summary_table
    click.echo("")
    click.echo(summary_table(run))
    g = run.final_gate
    if g is not None:
        verdict = "passed" if g.passed else "did not pass"
        click.echo(f"final gate on {g.tasks_file}: base {g.base_score:.3f} -> trained {g.head_score:.3f}: {verdict}")
    if run.test is not None:
        click.echo(f"sealed test on {run.test.tasks_file}: base {run.test.base_score:.3f} -> trained {run.test.head_score:.3f}")
    click.echo(f"stopped: {run.stop_reason}; branch {run.branch} (inspect: git log --notes=forgegit-summary {run.branch})")
    set_output("branch", run.branch)  # scores on validation, as `forgegit pr` reports them
    set_output("baseline-score", f"{(g.base_score if g else run.baseline_score):.4f}")
    set_output("score", f"{(g.head_score if g else run.trained_score):.4f}")
