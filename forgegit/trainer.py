"""Training on git: each optimizer epoch is a commit on `forgegit/train/<run-id>`; the gate keeps it
or rolls it back with `git revert`; `patience` epochs without progress stop the run early.

The run's record lives in the note of its base commit (see history.py); every step leaves the
branch holding whole epochs only, so `--resume` can pick up after a crash at any point.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import errno
import fcntl
import functools
import os
import random
import re
import secrets
import signal
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import gate, git, history, notes, reviews
from .attempts import Attempt, files_key
from .commits import action_revert_message, commit_message, revert_message, trial_message
from .config import Settings
from .errors import ForgegitError
from .evaluation import Evaluator, conversations_of, sandbox_limits
from .function_files import write_actions
from .functions import FunctionFileError, load_specs
from .llm import LLM
from .prompt import EpochScore
from .proposal import Proposal, propose
from .records import (
    ActionRecord, EpochRecord, EvalResult, GateDecision, ReviewRound, RunRecord, Trial, Usage, to_json,
)
from .sandbox import check_imports
from .tasks import TaskSet
from .workflow_commands import safe_text
from .workspace import Workspace

MAX_DIFF_CHARS = 40_000  # of an attempt's diff kept for the prompt (the prompt cuts it to its budget)
CRASH_ENV = "FORGEGIT_TEST_CRASH_AT"  # test-only: SIGKILL ourselves at a named step

Echo = Callable[[str], None]


def crashpoint(name: str) -> None:
    """Die here, as a power cut would, when the test-only variable names this step."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


# ---------------------------------------------------------------------------- lock


class TrainLock:
    """One training per repository, for the life of the run: an exclusive `flock` on
    `.git/forgegit/train.lock`. The kernel releases it when the holder dies, however it dies, so a
    lock is never stale; the pid and run id written in the file are information for the messages only."""

    def __init__(self, repo: Path, run_id: str, echo: Echo) -> None:
        self.path = git.state_dir(repo) / "train.lock"
        self.run_id = run_id
        self.echo = echo
        self._fd: Optional[int] = None

    def __enter__(self) -> "TrainLock":
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise ForgegitError(f"cannot take the training lock {self.path}: {exc.strerror}") from None
                pid, other = self._holder()
                raise ForgegitError(
                    f"another `forgegit train` (pid {pid}, run {safe_text(other, 100)}) is running on this repository; "
                    f"wait for it or stop it (lock: {self.path})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the run that held it finished and removed the file meanwhile: lock the new one
                os.close(fd)
                continue
            pid, other = self._holder()
            if pid != "?" and pid != str(os.getpid()):
                self.echo(f"removed a stale training lock left by pid {pid} (run {safe_text(other, 100)})")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.run_id}\n".encode(), 0)
            self._fd = fd
            return self
        raise ForgegitError(f"cannot take the training lock {self.path}")

    def _holder(self) -> tuple[str, str]:
        """(pid, run id) as written in the lock file ("?" where unreadable)."""
        try:
            pid, _, other = self.path.read_text().partition(" ")
        except OSError:
            return "?", "?"
        pid = pid.strip()
        return (pid if pid.isdigit() else "?"), (other.strip() or "?")

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it: a waiter then sees another inode
        os.close(self._fd)
        self._fd = None


# ---------------------------------------------------------------------------- worktree


class Worktree:
    """The training branch's own checkout under .git/forgegit/worktrees (never the user's)."""

    def __init__(self, repo: Path, run_id: str) -> None:
        self.repo = repo
        self.run_id = run_id
        self.path = git.state_dir(repo) / "worktrees" / run_id

    def open(self, commit: str, echo: Echo) -> None:
        """A detached checkout of commit; what interrupted runs left behind is cleaned first."""
        self.clean_stale(echo)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        git.run(["worktree", "add", "--quiet", "--detach", str(self.path), commit], self.repo)

    def clean_stale(self, echo: Echo) -> None:
        """Remove every worktree state a killed run can leave: forgegit's own worktrees (registered,
        locked by a `git worktree add` that never finished, or only half written) and their
        `.git/worktrees/<id>` entries. Called under the training lock, so no live run owns any of them."""
        git.run(["worktree", "prune"], self.repo, check=False)
        ours = self.path.parent.resolve()
        admin = git.common_dir(self.repo) / "worktrees"
        entries = sorted(admin.iterdir()) if admin.is_dir() else []
        for entry in entries:
            target = _worktree_of(entry)
            if target is None:  # killed before git wrote gitdir: ours only by name
                if not re.fullmatch(re.escape(self.run_id) + r"[0-9]*", entry.name):
                    continue
            elif target.parent != ours:
                continue  # the user's own worktree
            where = target or entry
            echo(f"cleaning the worktree left by an interrupted run: {safe_text(where, 300)}")
            if target is not None:
                git.run(["worktree", "unlock", str(target)], self.repo, check=False)
                git.run(["worktree", "remove", "--force", "--force", str(target)], self.repo, check=False)
                shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(entry, ignore_errors=True)
        if self.path.exists():  # a checkout git no longer knows about
            echo(f"cleaning the worktree left by an interrupted run: {self.path}")
            shutil.rmtree(self.path, ignore_errors=True)
        git.run(["worktree", "prune"], self.repo, check=False)

    def git_out(self, *args: str, **kw: object) -> str:
        """`git ARGS` run in this checkout; its output."""
        return git.out(list(args), self.path, **kw)

    def head(self) -> str:
        return self.git_out("rev-parse", "HEAD")

    def close(self) -> None:
        git.run(["worktree", "unlock", str(self.path)], self.repo, check=False)
        git.run(["worktree", "remove", "--force", "--force", str(self.path)], self.repo, check=False)
        shutil.rmtree(self.path, ignore_errors=True)
        git.run(["worktree", "prune"], self.repo, check=False)


def _worktree_of(entry: Path) -> Optional[Path]:
    """The checkout a `.git/worktrees/<id>` entry belongs to (from its gitdir file), or None."""
    try:
        gitdir = (entry / "gitdir").read_text().strip()
    except OSError:
        return None
    return Path(gitdir).resolve().parent if gitdir else None


# ---------------------------------------------------------------------------- trainer


@dataclass
class Trainer:
    ws: Workspace
    tasks: TaskSet
    val: TaskSet
    test: Optional[TaskSet]
    evaluator: Evaluator
    optimizer_llm: LLM
    echo: Echo = print
    run: RunRecord = field(init=False)
    tree: Worktree = field(init=False)
    last_spent: Usage = field(init=False, default_factory=Usage)
    interrupted: bool = field(init=False, default=False)  # Ctrl-C: stop at the next step (see `interrupt`)

    @property
    def repo(self) -> Path:
        return self.ws.root

    @property
    def settings(self) -> Settings:
        return self.ws.settings

    # -- starting and resuming

    def start(self, base_branch: Optional[str], run_id: Optional[str]) -> None:
        base_branch = base_branch or git.current_branch(self.repo)
        if not base_branch:
            raise ForgegitError("HEAD is detached: pass --base BRANCH to say which branch to train from")
        base_commit = git.resolve(self.repo, base_branch)
        _, problems = load_specs(git.read_functions(self.repo, base_commit))
        if problems:
            raise FunctionFileError(
                problems, f"functions on {base_branch} do not pass `forgegit check`: " + "; ".join(map(str, problems[:3])))
        run_id = run_id or new_run_id()
        branch = history.BRANCH_PREFIX + run_id
        if git.branch_exists(self.repo, branch):
            raise ForgegitError(f"branch {branch} already exists: use `forgegit train --resume {run_id}`")
        s = self.settings
        self.run = RunRecord(
            run_id=run_id, branch=branch, base_branch=base_branch, base_commit=base_commit,
            model=s.model, optimizer_model=s.effective_optimizer_model, tasks_file=self.tasks.path,
            val_file=self.val.path, test_file=self.test.path if self.test else "", baseline_score=0.0,
            best_commit=base_commit, settings=_settings_json(s),
        )
        history.save_run(self.repo, self.run)
        git.run(["branch", branch, base_commit], self.repo)
        self.tree = Worktree(self.repo, run_id)
        self.tree.open(base_commit, self.echo)

    def resume(self, branch: str) -> None:
        """Pick up a run: the branch is put where the record says its last whole epoch ended."""
        _, data = history.find_run_note(self.repo, branch)
        self.run = RunRecord.from_json(data)
        tip = git.resolve(self.repo, branch)
        expected = self.run.epochs[-1].end if self.run.epochs else self.run.base_commit
        if tip != expected:
            # Killed between recording an epoch and moving the branch: finish the move.
            self.echo(f"moving {branch} to the end of recorded epoch {len(self.run.epochs)} ({expected[:12]})")
            git.run(["update-ref", f"refs/heads/{branch}", expected, tip], self.repo)
        self.tree = Worktree(self.repo, self.run.run_id)
        self.tree.open(expected, self.echo)

    def continue_with_review(self, branch: str, review: ReviewRound) -> None:
        """Continue a run (finished or not) on its own branch with review feedback: up to `epochs` more
        epochs, the reviewers' words first in each optimizer prompt; then a new final gate."""
        self.resume(branch)
        run = self.run
        review.first_epoch = len(run.epochs) + 1
        run.reviews.append(review)
        run.status, run.stop_reason, run.final_gate = "running", "", None
        if run.test is not None:
            self.echo("the sealed test split was scored for this run already: it is not scored again")
            run.test = None
        history.save_run(self.repo, run)

    def _since_review(self) -> list[EpochRecord]:
        """The epochs of the current stretch: since the last review round began (all of them before any)."""
        first = self.run.reviews[-1].first_epoch if self.run.reviews else 1
        return self.run.epochs[max(0, first - 1):]

    # -- the loop

    def interrupt(self) -> None:
        """Ctrl-C: the caller cancels the run's task; this flag also stops it at its next evaluation or epoch,
        should a library on the way swallow the cancellation (it happened inside the HTTP stack)."""
        self.interrupted = True

    def _stop_if_interrupted(self) -> None:
        if self.interrupted:
            raise asyncio.CancelledError()

    async def train(self) -> RunRecord:
        """Run epochs until a stop reason, then the final gate. Interrupted (Ctrl-C), it says how to resume."""
        try:
            return await self._train()
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.echo(f"interrupted: continue with `forgegit train --resume --run-id {self.run.run_id}`")
            raise

    async def _train(self) -> RunRecord:
        run = self.run
        if run.status == "finished":
            self.echo(f"run {run.run_id} is already finished")
            return run
        base_eval = await self._eval(run.base_commit, self._batch(0))
        if not run.epochs:
            run.baseline_score = run.best_score = base_eval.score
            run.baseline_val_score = await self._val_score(run.base_commit, base_eval)
            history.save_run(self.repo, run)  # `log` shows the baseline even if the run stops now
        self.echo(f"baseline: {base_eval.passed}/{base_eval.total} = {base_eval.score:.3f} on {self.tasks.path}")
        for warning in self._power_warnings():
            self.echo(f"warning: {warning}")
        while run.status == "running":
            stop = self._stop_reason()
            if stop:
                run.stop_reason = stop
                break
            await self._epoch(len(run.epochs) + 1)
        await self._final()
        return run

    def _power_warnings(self) -> list[str]:
        """What makes the gates unable to ever keep anything on these task sets (and what to do)."""
        s = self.settings
        found = [gate.power_warning(len(self.tasks), s.gate, s.alpha, self.tasks.path, batch_size=s.batch_size,
                                    sequential=s.sequential)]
        if self.val.sha256 != self.tasks.sha256:
            final_rule = "delta" if s.gate == "no-worse" else s.gate
            found.append(gate.power_warning(len(self.val), final_rule, s.alpha, f"the final gate's {self.val.path}"))
        return [w for w in found if w]

    def _stop_reason(self) -> str:
        s = self.settings
        stretch = self._since_review()
        if len(stretch) >= s.epochs:
            return "epochs"
        streak = 0
        for e in reversed(stretch):
            if e.kept and (e.gate is None or gate.is_gain(e.gate)):  # a no-worse tie is no progress
                break
            streak += 1
        if streak >= s.patience:
            return "early-stop"
        return self._over_budget()

    def _over_budget(self) -> str:
        run, s = self.run, self.settings
        if s.budget_tokens and run.usage.total_tokens >= s.budget_tokens:
            return "budget"
        if s.budget_usd and run.usage.cost >= s.budget_usd:
            return "budget"
        return ""

    def _batch(self, epoch: int) -> TaskSet:
        return self.tasks.sample(self.settings.batch_size, self.settings.seed + epoch)

    async def _eval(self, commit: str, tasks: TaskSet) -> EvalResult:
        """Evaluate (or reuse the recorded result); what new model calls cost goes to the run's usage."""
        self._stop_if_interrupted()
        result, reused = await self.evaluator.evaluate_or_reuse(commit, tasks)
        if self.evaluator.isolation is not None:
            self.run.sandbox = self.evaluator.isolation.summary()
        self.last_spent = Usage() if reused else result.usage
        self._spend(self.last_spent)
        return result

    def _spend(self, usage: Usage) -> None:
        """Add what model calls cost to the run's usage, saved at once: a resumed run's totals (and
        its --budget) include what was spent before the interruption, whose calls then come from
        the response cache at no cost."""
        self.run.usage.add(usage)
        if usage.calls or usage.total_tokens or usage.cost:
            history.save_run(self.repo, self.run)

    async def _val_score(self, commit: str, train_result: Optional[EvalResult]) -> float:
        """The validation score of commit for the learning curve (free when validation is the training set)."""
        if train_result is not None and self.val.sha256 == train_result.tasks_hash:
            return train_result.score
        return (await self._eval(commit, self.val)).score

    def _current_val_score(self) -> Optional[float]:
        """The validation score of the branch as it stands (a revert restores the last kept tree)."""
        for e in reversed(self.run.epochs):
            if e.kept:
                return e.val_score
        return self.run.baseline_val_score

    def _score_history(self) -> list[EpochScore]:
        """The epochs so far, as the optimizer's prompt shows them."""
        return [
            EpochScore(e.epoch, e.score_after if e.score_after is not None else e.score_before, e.kept,
                       [f"{a.kind} {a.name}" + (" (dropped)" if a.kept is False else "") for a in e.actions if a.accepted],
                       Attempt.from_epoch(e).label)
            for e in self.run.epochs
        ]

    def _attempts(self) -> list[Attempt]:
        """Every epoch not kept, with the diff of its commit (read from git: a fresh clone has it too),
        and every kept one that had actions rejected."""
        out = []
        for e in self.run.epochs:
            if e.kept and all(a.accepted for a in e.actions):
                continue
            diff = ""
            if e.commit and not e.kept:
                proc = git.run(["diff", "--no-color", "--no-ext-diff", e.parent, e.commit, "--", git.FUNCTIONS_DIR],
                               self.repo, check=False)
                diff = proc.stdout[:MAX_DIFF_CHARS]
            out.append(Attempt.from_epoch(e, diff))
        return out

    def _tried(self, attempts: list[Attempt]) -> dict[str, Attempt]:
        """{files_key of its functions: attempt} for every epoch that committed edits and was reverted."""
        commits = {e.epoch: e.commit for e in self.run.epochs if e.commit and not e.kept}
        return {files_key(git.read_functions(self.repo, commits[a.epoch])): a for a in attempts if a.epoch in commits}

    def _sealed_ids(self) -> set[str]:
        """Validation and test task ids that are not training tasks: never in a prompt."""
        train = {t.id for t in self.tasks.tasks}
        others = [*self.val.tasks, *(self.test.tasks if self.test else [])]
        return {t.id for t in others if t.id not in train}

    async def _epoch(self, k: int) -> None:
        self._stop_if_interrupted()
        run, s = self.run, self.settings
        parent = self.tree.head()
        batch = self._batch(k)
        before = await self._eval(parent, batch)
        self.echo(f"epoch {k}: score {before.score:.3f}, asking the optimizer ({run.optimizer_model})")
        files = git.read_functions(self.repo, parent)
        attempts = self._attempts()
        review = run.reviews[-1] if run.reviews else None
        proposal: Proposal = await propose(
            self.optimizer_llm, files, before, conversations_of(self.repo, before), self._score_history(),
            max_actions=s.max_actions, context_tokens=s.optimizer_context_tokens, model=run.optimizer_model,
            check_imports=functools.partial(check_imports, limits=sandbox_limits(s), allow_unsafe=s.sandbox == "unsafe"),
            attempts=attempts, tried=self._tried(attempts), show_expected=s.show_expected, seed=s.seed + k,
            forbidden_task_ids=self._sealed_ids(),
            feedback=reviews.prompt_section([review]) if review else "",
        )
        self._spend(proposal.usage)
        crashpoint("after-optimizer")
        records = [ActionRecord(a.kind, a.name, True) for a in proposal.actions] + list(proposal.rejected)
        for r in proposal.rejected:  # the optimizer's own text: one line each, no workflow command
            self.echo(f"  rejected {safe_text(r.kind, 40)} {safe_text(r.name, 100)}: {safe_text(r.reason, 2000)}")
        epoch = EpochRecord(epoch=k, parent=parent, commit=None, revert=None, actions=records,
                            rationale=proposal.rationale, score_before=before.score, score_after=None, kept=False,
                            usage=proposal.usage, answers=[c.id for c in review.comments] if review else [])
        if not proposal.actions:
            self.echo(f"epoch {k}: no valid edit proposed")
            self._record_epoch(epoch)
            return
        for i, action in enumerate(proposal.actions):  # one commit per action: history and revert per action
            write_actions(self.tree.path, [action])
            crashpoint("after-write")
            self.tree.git_out("add", "-A", "--", git.FUNCTIONS_DIR)
            message = commit_message(k, [action], proposal.rationale, run.optimizer_model, run.run_id)
            git.run(["commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-"], self.tree.path, input=message)
            records[i].commit = self.tree.head()
        crashpoint("after-commit")
        epoch.commit = self.tree.head()
        await self._gate(epoch, batch, before)

    async def _gate(self, epoch: EpochRecord, batch: TaskSet, before: EvalResult) -> None:
        """Evaluate the epoch's commit, keep it or revert it, and record the epoch."""
        assert epoch.commit
        after = await self._eval(epoch.commit, batch)
        epoch.usage.add(self.last_spent)
        crashpoint("after-eval")
        decision, b, a, sets = await self._judge(epoch, batch, before.outcomes(), after.outcomes())
        epoch.score_before, epoch.score_after = _mean(b), _mean(a)
        epoch.gate, epoch.kept = decision, decision.kept
        epoch.flipped_up = [t for t in a if a[t] and not b.get(t)]
        epoch.flipped_down = [t for t in b if b[t] and not a.get(t)]
        notes.update_note(self.repo, epoch.commit, epoch=to_json(epoch))
        crashpoint("after-note")
        accepted = [r for r in epoch.actions if r.accepted]
        best: Optional[Trial] = None
        if not decision.kept and len(accepted) > 1 and self.settings.attribution and not self._over_budget():
            best = await self._attribute(epoch, b, sets)
        if decision.kept:
            epoch.val_score = await self._val_score(epoch.commit, after)
        elif best is not None:
            self._keep_only(epoch, best)
            epoch.val_score = await self._val_score(epoch.end, after if epoch.end == epoch.commit else None)
        else:
            self._revert(epoch)
            epoch.val_score = self._current_val_score()
        verdict = "kept" if epoch.kept else "reverted"
        if best is not None:
            kept, total = epoch.kept_actions
            verdict = f"kept {kept} of {total} actions"
        self.echo(f"epoch {epoch.epoch}: {epoch.score_before:.3f} -> {epoch.score_after:.3f} {verdict} ({decision.reason}); "
                  f"{self.run.usage.total_tokens:,} tokens so far")
        self._record_epoch(epoch)

    async def _judge(self, epoch: EpochRecord, batch: TaskSet, b: dict[str, bool],
                     a: dict[str, bool]) -> tuple[GateDecision, dict[str, bool], dict[str, bool], list[TaskSet]]:
        """The gate's decision, with sequential looks: while the gain is positive but not significant,
        evaluate the next tasks (doubling, up to the whole set, within the budget) before and after the
        epoch, each look at its share of alpha (gate.spending). Returns the decision, the outcomes it saw and
        the task sets they came from."""
        s = self.settings
        assert epoch.commit
        sequential = s.sequential and s.gate in gate.TESTS
        sizes = gate.looks(len(batch), len(self.tasks)) if sequential else [len(batch)]
        levels = gate.spending(s.alpha, len(sizes))
        taken = {t.id for t in batch.tasks}
        rest = [t.id for t in self.tasks.tasks if t.id not in taken]
        random.Random(f"{s.seed}:{epoch.epoch}:looks").shuffle(rest)
        look = 0
        sets = [batch]
        while True:
            decision = gate.decide(b, a, rule=s.gate, alpha=levels[look], min_delta=s.min_delta, seed=s.seed)
            decision.looks = look + 1
            if not gate.undecided(decision) or look + 1 >= len(sizes) or self._over_budget():
                return decision, b, a, sets
            ids = rest[sizes[look] - len(batch):sizes[look + 1] - len(batch)]
            more = self.tasks.subset(ids, f"epoch{epoch.epoch}/look{look + 2}")
            sets.append(more)
            self.echo(f"epoch {epoch.epoch}: {decision.reason} on {len(b)} tasks; looking at {len(ids)} more "
                      f"(look {look + 2} of {len(sizes)}, alpha {levels[look + 1]:.4g})")
            b = {**b, **(await self._eval(epoch.parent, more)).outcomes()}
            epoch.usage.add(self.last_spent)
            a = {**a, **(await self._eval(epoch.commit, more)).outcomes()}
            epoch.usage.add(self.last_spent)
            crashpoint("after-look")
            look += 1

    async def _attribute(self, epoch: EpochRecord, before: dict[str, bool], sets: list[TaskSet]) -> Optional[Trial]:
        """Judge each action alone on the epoch's tasks (then the passing ones together, when that is a new
        subset): at most one evaluation more than there are actions. Each subset is tested at alpha divided
        by the number of subsets this may try (Bonferroni). The best that passes, or None."""
        s = self.settings
        accepted = [r for r in epoch.actions if r.accepted]
        n = len(accepted)
        level = s.alpha / (n + 1)
        self.echo(f"epoch {epoch.epoch}: not kept as a whole; judging its {n} actions one by one")
        trials: list[tuple[Trial, GateDecision, dict[str, bool]]] = []

        async def judge(indices: list[int]) -> None:
            commit = self._trial_commit(epoch, indices)
            after: dict[str, bool] = {}
            for tasks in sets:
                after.update((await self._eval(commit, tasks)).outcomes())
                epoch.usage.add(self.last_spent)
            d = gate.decide(before, after, rule=s.gate, alpha=level, min_delta=s.min_delta, seed=s.seed)
            trial = Trial(indices, commit, _mean(after), d.kept, d.reason, d.p_value)
            trials.append((trial, d, after))
            names = ", ".join(f"{accepted[i].kind} {safe_text(accepted[i].name, 80)}" for i in indices)
            self.echo(f"  {names}: {d.reason}")
            crashpoint("during-attribution")

        for i in range(n):
            await judge([i])
            if self._over_budget():
                break
        passing = sorted(i for t, _, _ in trials if t.kept for i in t.actions)
        if 1 < len(passing) < n and not self._over_budget():
            await judge(passing)
        epoch.attribution = [t for t, _, _ in trials]
        choice = gate.best([(i, d) for i, (_, d, _) in enumerate(trials)])
        if choice is None:
            return None
        trial, d, after = trials[choice]
        epoch.gate, epoch.score_after = d, trial.score
        epoch.flipped_up = [t for t in after if after[t] and not before.get(t)]
        epoch.flipped_down = [t for t in before if before[t] and not after.get(t)]
        return trial

    def _trial_commit(self, epoch: EpochRecord, indices: list[int]) -> str:
        """A commit of the epoch's parent plus only these actions (their own commits' changes), off the branch."""
        accepted = [r for r in epoch.actions if r.accepted]
        index = self.tree.path.parent / f"{self.run.run_id}.trial-index"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            git.run(["read-tree", epoch.parent], self.tree.path, env=env)
            for i in indices:
                commit = accepted[i].commit
                assert commit
                prev = accepted[i - 1].commit if i else epoch.parent
                assert prev
                raw = git.out(["diff-tree", "-r", "--no-renames", "-z", prev, commit], self.tree.path)
                fields = raw.split("\0")
                for meta, path in zip(fields[0::2], fields[1::2]):  # ":<old mode> <new mode> <old> <new> <status>"
                    parts = meta.lstrip(":").split(" ")
                    if len(parts) != 5 or not path:
                        continue
                    mode, sha, status = parts[1], parts[3], parts[4]
                    if status.startswith("D"):
                        git.run(["update-index", "--force-remove", "--", path], self.tree.path, env=env)
                    else:
                        git.run(["update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}"], self.tree.path, env=env)
            tree = git.out(["write-tree"], self.tree.path, env=env)
        finally:
            index.unlink(missing_ok=True)
        names = ", ".join(f"{accepted[i].kind} {accepted[i].name}" for i in indices)
        message = trial_message(epoch.epoch, names, self.run.run_id)
        return git.out(["commit-tree", tree, "-p", epoch.parent, "-F", "-"], self.tree.path, input=message)

    def _keep_only(self, epoch: EpochRecord, trial: Trial) -> None:
        """Keep the trial's actions: revert every other action's own commit (newest first), one revert each."""
        accepted = [r for r in epoch.actions if r.accepted]
        kept, total = len(trial.actions), len(accepted)
        for i in reversed(range(total)):
            accepted[i].kept = i in trial.actions
            if accepted[i].kept:
                continue
            commit = accepted[i].commit
            assert commit
            self.tree.git_out("revert", "--no-commit", commit)
            crashpoint("during-revert")
            message = action_revert_message(epoch.epoch, i + 1, f"{accepted[i].kind} {accepted[i].name}", kept, total,
                                            commit, self.run.run_id)
            git.run(["commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-"], self.tree.path, input=message)
            epoch.reverts.append(self.tree.head())
        if git.functions_tree(self.repo, self.tree.head()) != git.functions_tree(self.repo, trial.commit):
            raise ForgegitError(f"epoch {epoch.epoch}: reverting the dropped actions did not give the judged tree")
        epoch.revert = epoch.reverts[-1] if epoch.reverts else None
        epoch.kept = True
        notes.update_note(self.repo, epoch.end, epoch=to_json(epoch))

    def _revert(self, epoch: EpochRecord) -> None:
        assert epoch.commit
        self.tree.git_out("revert", "--no-commit", f"{epoch.parent}..{epoch.commit}")
        crashpoint("during-revert")
        message = revert_message(epoch.epoch, epoch.gate.reason if epoch.gate else "no improvement", epoch.commit,
                                 self.run.run_id)
        git.run(["commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-"], self.tree.path, input=message)
        epoch.revert = self.tree.head()
        notes.update_note(self.repo, epoch.revert, epoch=to_json(epoch))

    def _record_epoch(self, epoch: EpochRecord) -> None:
        """Record the whole epoch, then move the branch to its end (the only time the branch moves)."""
        run = self.run
        run.epochs.append(epoch)
        if epoch.kept and epoch.commit and epoch.score_after is not None:
            run.best_commit, run.best_score = epoch.end, epoch.score_after
        history.save_run(self.repo, run)
        crashpoint("after-record")
        git.run(["update-ref", f"refs/heads/{run.branch}", epoch.end, epoch.parent], self.repo)

    async def _final(self) -> None:
        """The final gate: best revision vs the base on the validation set; then the sealed test, once."""
        run, s = self.run, self.settings
        if not run.stop_reason:
            run.stop_reason = self._stop_reason() or "epochs"
        head = git.resolve(self.repo, run.branch)
        if run.final_gate is None:
            base_val = await self._eval(run.base_commit, self.val)
            head_val = await self._eval(head, self.val)
            cmp = gate.compare("val", self.val.path, base_val, head_val, rule=s.gate, alpha=s.alpha,
                                min_delta=s.min_delta, seed=s.seed)
            if head == run.base_commit or git.functions_tree(self.repo, head) == git.functions_tree(self.repo, run.base_commit):
                cmp.passed = False
            run.final_gate = cmp
            history.save_run(self.repo, run)
        if self.test is not None and run.test is None:
            base_t = await self._eval(run.base_commit, self.test)
            head_t = await self._eval(head, self.test)
            run.test = gate.compare("test", self.test.path, base_t, head_t, rule=s.gate, alpha=s.alpha,
                                     min_delta=s.min_delta, seed=s.seed)
        run.best_commit, run.best_score = run.trained_commit, run.trained_score  # never a revert commit
        run.status = "finished"
        notes.update_note(self.repo, head, final={"run": run.run_id, "val": to_json(run.final_gate),
                                                      "test": to_json(run.test)})
        history.save_run(self.repo, run)

    # -- the end

    def merge(self) -> str:
        """Merge the training branch into the base branch if the final gate passed; returns a message."""
        run = self.run
        if not run.improved:
            return f"not merged: the final gate did not pass; {run.branch} stays for review"
        base_ref = f"refs/heads/{run.base_branch}"
        old = git.resolve(self.repo, run.base_branch)
        holder = _worktree_holding(self.repo, run.base_branch)
        if holder is not None:
            if git.out(["status", "--porcelain", "--untracked-files=no"], holder):
                return f"not merged: {run.base_branch} is checked out in {holder} with uncommitted changes; merge {run.branch} yourself"
            git.run(["merge", "--no-ff", "--no-edit", "-m", f"Merge {run.branch} (forgegit: {_gain(run)})", run.branch], holder)
        else:
            self.tree.git_out("checkout", "--quiet", "--detach", old)
            self.tree.git_out("merge", "--no-ff", "--no-edit", "-m", f"Merge {run.branch} (forgegit: {_gain(run)})", run.branch)
            git.run(["update-ref", base_ref, self.tree.head(), old], self.repo)
        return f"merged {run.branch} into {run.base_branch}"

    def close(self) -> None:
        self.tree.close()


def _mean(outcomes: dict[str, bool]) -> float:
    return sum(outcomes.values()) / len(outcomes) if outcomes else 0.0


def _worktree_holding(repo: Path, branch: str) -> Optional[Path]:
    path: Optional[str] = None
    for line in git.out(["worktree", "list", "--porcelain"], repo).splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line == f"branch refs/heads/{branch}" and path:
            return Path(path)
    return None


def _gain(run: RunRecord) -> str:
    g = run.final_gate
    return f"val {g.base_score:.3f} -> {g.head_score:.3f}" if g else "trained"


def _settings_json(s: Settings) -> dict[str, Any]:
    keys = ("model", "optimizer_model", "epochs", "patience", "max_actions", "gate", "alpha", "min_delta",
            "batch_size", "sequential", "attribution", "budget_tokens", "budget_usd", "checker", "agent", "max_turns", "temperature", "seed")
    return {k: getattr(s, k) for k in keys}
