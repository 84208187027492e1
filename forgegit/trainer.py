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
import re
import secrets
import signal
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import git, history, notes, stats
from .commits import commit_message, revert_message
from .errors import ForgegitError
from .evaluation import Evaluator, load_trajectories, sandbox_limits
from .function_files import write_actions
from .functions import FunctionFileError, load_specs
from .proposal import Proposal, propose
from .records import ActionRecord, EpochRecord, EvalResult, RunRecord, Usage, to_json
from .sandbox import check_imports
from .tasks import TaskSet
from .workflow_commands import safe_text
from .workspace import Workspace

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

    def __exit__(self, *exc: Any) -> None:
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

    def git_out(self, *args: str, **kw: Any) -> str:
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
    optimizer_llm: Any
    echo: Echo = print
    run: RunRecord = field(init=False)
    tree: Worktree = field(init=False)
    last_spent: Usage = field(init=False, default_factory=Usage)

    @property
    def repo(self) -> Path:
        return self.ws.root

    @property
    def settings(self) -> Any:
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

    # -- the loop

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
        while run.status == "running":
            stop = self._stop_reason()
            if stop:
                run.stop_reason = stop
                break
            await self._epoch(len(run.epochs) + 1)
        await self._final()
        return run

    def _stop_reason(self) -> str:
        run, s = self.run, self.settings
        if len(run.epochs) >= s.epochs:
            return "epochs"
        streak = 0
        for e in reversed(run.epochs):
            if e.kept:
                break
            streak += 1
        if streak >= s.patience:
            return "early-stop"
        if s.budget_tokens and run.usage.total_tokens >= s.budget_tokens:
            return "budget"
        if s.budget_usd and run.usage.cost >= s.budget_usd:
            return "budget"
        return ""

    def _batch(self, epoch: int) -> TaskSet:
        return self.tasks.sample(self.settings.batch_size, self.settings.seed + epoch)

    async def _eval(self, commit: str, tasks: TaskSet) -> EvalResult:
        """Evaluate (or reuse the recorded result); what new model calls cost goes to the run's usage."""
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

    async def _val_score(self, commit: str, train_result: EvalResult) -> float:
        """The validation score of commit for the learning curve (free when validation is the training set)."""
        if self.val.sha256 == train_result.tasks_hash:
            return train_result.score
        return (await self._eval(commit, self.val)).score

    def _current_val_score(self) -> Optional[float]:
        """The validation score of the branch as it stands (a revert restores the last kept tree)."""
        for e in reversed(self.run.epochs):
            if e.kept:
                return e.val_score
        return self.run.baseline_val_score

    def _score_history(self) -> list[dict[str, Any]]:
        return [
            {"epoch": e.epoch, "score": e.score_after if e.score_after is not None else e.score_before,
             "kept": e.kept, "actions": [f"{a.kind} {a.name}" for a in e.actions if a.accepted]}
            for e in self.run.epochs
        ]

    async def _epoch(self, k: int) -> None:
        run, s = self.run, self.settings
        parent = self.tree.head()
        batch = self._batch(k)
        before = await self._eval(parent, batch)
        self.echo(f"epoch {k}: score {before.score:.3f}, asking the optimizer ({run.optimizer_model})")
        files = git.read_functions(self.repo, parent)
        proposal: Proposal = await propose(
            self.optimizer_llm, files, before, load_trajectories(self.repo, before.key), self._score_history(),
            max_actions=s.max_actions, context_tokens=s.optimizer_context_tokens, model=run.optimizer_model,
            check_imports=functools.partial(check_imports, limits=sandbox_limits(s), allow_unsafe=s.sandbox == "unsafe"),
        )
        self._spend(proposal.usage)
        crashpoint("after-optimizer")
        records = [ActionRecord(a.kind, a.name, True) for a in proposal.actions] + list(proposal.rejected)
        for r in proposal.rejected:  # the optimizer's own text: one line each, no workflow command
            self.echo(f"  rejected {safe_text(r.kind, 40)} {safe_text(r.name, 100)}: {safe_text(r.reason, 2000)}")
        epoch = EpochRecord(k, parent, None, None, records, proposal.rationale, before.score, None, False,
                            usage=proposal.usage)
        if not proposal.actions:
            epoch.gate = None
            self.echo(f"epoch {k}: no valid edit proposed")
            self._record_epoch(epoch)
            return
        write_actions(self.tree.path, proposal.actions)
        crashpoint("after-write")
        self.tree.git_out("add", "-A", "--", git.FUNCTIONS_DIR)
        message = commit_message(k, proposal.actions, proposal.rationale, run.optimizer_model, run.run_id)
        git.run(["commit", "--quiet", "--no-verify", "-F", "-"], self.tree.path, input=message)
        crashpoint("after-commit")
        epoch.commit = self.tree.head()
        await self._gate(epoch, batch, before)

    async def _gate(self, epoch: EpochRecord, batch: TaskSet, before: EvalResult) -> None:
        """Evaluate the epoch's commit, keep it or revert it, and record the epoch."""
        s = self.settings
        assert epoch.commit
        after = await self._eval(epoch.commit, batch)
        crashpoint("after-eval")
        decision = stats.decide(before.outcomes(), after.outcomes(), rule=s.gate, alpha=s.alpha,
                                min_delta=s.min_delta, seed=s.seed)
        epoch.score_after, epoch.gate, epoch.kept = after.score, decision, decision.kept
        b, a = before.outcomes(), after.outcomes()
        epoch.flipped_up = [t for t in a if a[t] and not b.get(t)]
        epoch.flipped_down = [t for t in b if b[t] and not a.get(t)]
        epoch.usage.add(self.last_spent)
        notes.update_note(self.repo, epoch.commit, epoch=to_json(epoch))
        crashpoint("after-note")
        if decision.kept:
            epoch.val_score = await self._val_score(epoch.commit, after)
        else:
            self._revert(epoch)
            epoch.val_score = self._current_val_score()
        verdict = "kept" if epoch.kept else "reverted"
        self.echo(f"epoch {epoch.epoch}: {before.score:.3f} -> {after.score:.3f} {verdict} ({decision.reason}); "
                  f"{self.run.usage.total_tokens:,} tokens so far")
        self._record_epoch(epoch)

    def _revert(self, epoch: EpochRecord) -> None:
        assert epoch.commit
        self.tree.git_out("revert", "--no-commit", epoch.commit)
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
            run.best_commit, run.best_score = epoch.commit, epoch.score_after
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
            cmp = stats.compare("val", self.val.path, base_val, head_val, rule=s.gate, alpha=s.alpha,
                                min_delta=s.min_delta, seed=s.seed)
            if head == run.base_commit or git.functions_tree(self.repo, head) == git.functions_tree(self.repo, run.base_commit):
                cmp.passed = False
            run.final_gate = cmp
            history.save_run(self.repo, run)
        if self.test is not None and run.test is None:
            base_t = await self._eval(run.base_commit, self.test)
            head_t = await self._eval(head, self.test)
            run.test = stats.compare("test", self.test.path, base_t, head_t, rule=s.gate, alpha=s.alpha,
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


def _settings_json(s: Any) -> dict[str, Any]:
    keys = ("model", "optimizer_model", "epochs", "patience", "max_actions", "gate", "alpha", "min_delta",
            "batch_size", "budget_tokens", "budget_usd", "checker", "agent", "max_turns", "temperature", "seed")
    return {k: getattr(s, k) for k in keys}
