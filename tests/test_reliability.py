"""A failing model API during training, and kills at arbitrary moments: nothing is lost, resume finishes the run.

Every test drives `python -m forgegit train` in a subprocess against the scripted demo model, reached
through a small HTTP proxy in this process that can drop connections. Faults are injected in the middle
of an epoch (during the gate's evaluation, or at the optimizer's call):

- transient faults (500, 429 with Retry-After, a body that is not JSON, `{"choices": []}`, a
  content-filter refusal, dropped connections) are retried: the run ends exactly as a clean run does;
- permanent faults make `forgegit train` exit non-zero with one line; the training branch holds only
  whole epochs, the user's branch, working tree and earlier notes are untouched, no worktree or lock is
  left; once the server recovers, `forgegit train --resume` finishes with the clean run's outcome;
- 401/403/404 fail fast, naming the setting to fix.

Each fault test records `fault`, `injected` and `data_lost` as junit properties for bench/faults.py.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import pytest

from conftest import git, run_outcome
from scripted_server import RawResponse

from forgegit import demo, history, notes
from forgegit.scripted import HTTPError, Reply, ScriptedServer, text, tool_calls
from forgegit.trainer import CRASH_ENV

pytestmark = pytest.mark.faults

Request = dict[str, Any]
DROP = "dropped-connection"

# What a failing API sends instead of an answer (DROP: the proxy closes the connection without a reply).
FAULTS: dict[str, Callable[[], Any]] = {
    "http-500": lambda: HTTPError(500, {"error": {"message": "The server had an error", "type": "server_error"}}),
    "http-503": lambda: HTTPError(503, "<html>Service Unavailable</html>"),
    "http-429-retry-after": lambda: HTTPError(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                              {"Retry-After": "0.05"}),
    "not-json": lambda: RawResponse("<html><body>502 Bad Gateway</body></html>", "text/html"),
    "truncated-json": lambda: RawResponse('{"id": "chatcmpl-1", "choices": [{"message": {"conte'),
    "no-choices": lambda: {"id": "chatcmpl-1", "object": "chat.completion", "choices": []},
    "content-filter": lambda: Reply(content="", finish_reason="content_filter"),
    "body-nested-100000-deep": lambda: RawResponse("[" * 100_000 + "]" * 100_000),
    DROP: lambda: None,
}


# ---------------------------------------------------------------- fault injection


def is_agent(r: Request) -> bool:
    return r.get("model") == demo.AGENT_MODEL


def is_optimizer(epoch: int) -> Callable[[Request], bool]:
    def match(r: Request) -> bool:
        return r.get("model") == demo.OPTIMIZER_MODEL and demo.epoch_of(r) == epoch
    return match


@dataclass
class Plan:
    """Requests matching `when` fail (at most `times`, None = until recover()), once a request matching `arm` was answered."""

    when: Callable[[Request], bool]
    arm: Optional[Callable[[Request], bool]] = None
    times: Optional[int] = None
    injected: int = 0
    armed: bool = False
    recovered: bool = False

    def hit(self, r: Request) -> bool:
        if self.recovered:
            return False
        if not self.armed and self.arm is not None:
            self.armed = self.arm(r)
            return False
        if not self.when(r) or (self.times is not None and self.injected >= self.times):
            return False
        self.injected += 1
        return True


@dataclass
class Injector:
    """One kind of fault under several plans; consulted by the script, or by the proxy for dropped connections."""

    kind: str
    plans: list[Plan]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, r: Request) -> bool:
        with self.lock:
            return any(p.hit(r) for p in self.plans)

    @property
    def injected(self) -> int:
        return sum(p.injected for p in self.plans)

    def recover(self) -> None:
        with self.lock:
            for p in self.plans:
                p.recovered = True

    def wrap(self, script: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def faulty(r: Request) -> Any:
            if self.kind != DROP and self.hit(r):
                return FAULTS[self.kind]()
            return script(r)
        return faulty


class Proxy:
    """An HTTP proxy on loopback in front of the scripted server; drops the connections the injector picks."""

    def __init__(self, upstream: str, injector: Optional[Injector]) -> None:
        up = urlsplit(upstream)
        proxy = self
        self.dropped = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    request = json.loads(body)
                except ValueError:
                    request = {}
                if injector is not None and injector.kind == DROP and injector.hit(request):
                    proxy.dropped += 1
                    self.close_connection = True
                    self.connection.close()  # no status line, nothing: the client sees the connection die
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}{up.path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def api(scripted: Any) -> Any:
    """`api(kind, plans)` -> (base_url, injector): the demo model behind a fault injector and a proxy."""
    proxies: list[Proxy] = []

    def start(kind: str = "", plans: Optional[list[Plan]] = None, script: Any = None) -> tuple[str, Injector]:
        injector = Injector(kind, plans or [])
        server = scripted(injector.wrap(script or demo.make_script()))
        proxy = Proxy(server.base_url, injector)
        proxies.append(proxy)
        return proxy.base_url, injector

    yield start
    for p in proxies:
        p.stop()


# ---------------------------------------------------------------- running and checking


def forgegit(repo: Path, base_url: str, *args: str, kill_after: Optional[float] = None,
             crash_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test", "FORGEGIT_RETRY_BACKOFF": "0.01"}
    if crash_at:
        env[CRASH_ENV] = crash_at
    cmd = [sys.executable, "-m", "forgegit", *args]
    if kill_after is None:
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    # A power cut: SIGKILL the whole process group (forgegit and any git it is running) at that moment.
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


outcome = run_outcome


_REFERENCE: dict[str, Any] = {}
_REFERENCE_RUN: list[Any] = []


def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The outcome of an uninterrupted run against a healthy server (computed once per worker)."""
    if not _REFERENCE:
        repo = demo.make_repo(tmp_path_factory.mktemp("reference") / "repo")
        with ScriptedServer(demo.make_script()) as server:
            proc = forgegit(repo, server.base_url, "train", "--run-id", "r")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _REFERENCE.update(outcome(repo, "forgegit/train/r"))
        _REFERENCE_RUN.append(history.load_run(repo, "forgegit/train/r"))
    return _REFERENCE


def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run's whole record (its usage, its baseline)."""
    reference(tmp_path_factory)
    return _REFERENCE_RUN[0]


@dataclass
class UserState:
    """What belongs to the user before training: branch, HEAD, working tree, index, and every note."""

    head: str
    symbolic: str
    main: str
    status: str
    diff: str
    staged: str
    notes: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, repo: Path) -> "UserState":
        sym = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
        return cls(git(repo, "rev-parse", "HEAD"), sym, git(repo, "rev-parse", "main"),
                   git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "diff"),
                   git(repo, "diff", "--cached"), notes.all_notes(repo))


def make_user_repo(path: Path, server_url: str) -> tuple[Path, UserState]:
    """The demo repository with the user's own work in progress and an earlier evaluation in the notes."""
    repo = demo.make_repo(path)
    # An earlier result on the user's own (untracked) smoke set, recorded in the notes; not the training
    # set, so training still has to call the model for its baseline.
    smoke = "".join(json.dumps(t) + "\n" for t in demo.TASKS[:3])
    (repo / "tasks" / "smoke.jsonl").write_text(smoke)
    proc = forgegit(repo, server_url, "eval", "--tasks", "tasks/smoke.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (repo / "functions" / "add.py").write_text((repo / "functions" / "add.py").read_text() + "# work in progress\n")
    (repo / "scratch.txt").write_text("untracked\n")
    return repo, UserState.of(repo)


def data_lost(repo: Path, before: UserState, branch: str) -> list[str]:
    """Concrete losses: the user's branch/HEAD/tree/index changed, an earlier note changed, a recorded epoch missing."""
    lost: list[str] = []
    now = UserState.of(repo)
    for name in ("head", "symbolic", "main", "status", "diff", "staged"):
        if getattr(now, name) != getattr(before, name):
            lost.append(f"user's {name} changed")
    for commit, note in before.notes.items():
        after = now.notes.get(commit, {})
        for key, value in note.get("evals", {}).items():
            if after.get("evals", {}).get(key) != value:
                lost.append(f"earlier evaluation {key[:8]} on {commit[:8]} changed or vanished")
    if git(repo, "branch", "--list", branch):
        run = history.load_run(repo, branch)
        tip = git(repo, "rev-parse", branch)
        for e in run.epochs:
            for c in filter(None, (e.commit, e.revert)):
                if subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=repo).returncode != 0:
                    lost.append(f"recorded epoch {e.epoch} commit {c[:8]} is gone")
                elif subprocess.run(["git", "merge-base", "--is-ancestor", c, tip], cwd=repo).returncode != 0:
                    # Killed between recording the last epoch and moving the branch: resume moves it.
                    if not (e is run.epochs[-1] and tip == e.parent):
                        lost.append(f"recorded epoch {e.epoch} commit {c[:8]} is not on {branch}")
        boundaries = {e.end for e in run.epochs} | {run.base_commit}
        if tip not in boundaries:
            lost.append(f"{branch} tip {tip[:8]} is not at an epoch boundary (half an epoch)")
        recorded = {c for e in run.epochs for c in (e.commit, e.revert) if c}
        for c in git(repo, "rev-list", f"{run.base_commit}..{tip}").split():
            if c not in recorded:
                lost.append(f"commit {c[:8]} on {branch} belongs to no recorded epoch")
    return lost


def leftovers(repo: Path) -> list[str]:
    """Not data loss, but mess: a registered training worktree or a training lock left behind."""
    left = []
    if len(git(repo, "worktree", "list").splitlines()) != 1:
        left.append("a training worktree is still registered")
    state = Path(git(repo, "rev-parse", "--git-common-dir"))
    state = (state if state.is_absolute() else repo / state) / "forgegit"
    if (state / "train.lock").exists():
        left.append("the training lock was left behind")
    return left


def single_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode not in (0, None) and proc.returncode > 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # notes (e.g. "no separate validation set") and retry lines may come before; the error itself is one line
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not line.startswith(("forgegit: retrying in ", "forgegit: note: "))]
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: "), proc.stderr
    return lines[0]


# ---------------------------------------------------------------- (a) transient faults are retried


@pytest.mark.parametrize("kind", list(FAULTS))
def test_transient_faults_mid_epoch_are_retried_and_the_run_ends_as_a_clean_one(
        kind: str, api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    expected = reference(tmp_path_factory)
    # Three agent calls fail during epoch 1's gate evaluation, two optimizer calls in epoch 2
    # (fewer than the 5 retries each call gets, whichever calls they hit).
    url, injector = api(kind, [Plan(when=is_agent, arm=is_optimizer(1), times=3),
                               Plan(when=is_optimizer(2), times=2)])
    repo, before = make_user_repo(tmp_path / "repo", url)
    proc = forgegit(repo, url, "train", "--run-id", "r")
    lost = data_lost(repo, before, "forgegit/train/r")
    record_property("fault", f"transient {kind}")
    record_property("injected", injector.injected)
    record_property("data_lost", len(lost))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert injector.injected == 5
    assert not lost and not leftovers(repo)
    assert outcome(repo, "forgegit/train/r") == expected


# ---------------------------------------------------------------- (b) permanent faults: fail cleanly, resume


PHASES: dict[str, Callable[[], list[Plan]]] = {
    # every agent call fails from the start: the baseline evaluation cannot finish
    "baseline": lambda: [Plan(when=is_agent)],
    # epoch 1 is recorded; the optimizer of epoch 2 never answers
    "optimizer": lambda: [Plan(when=lambda r: r.get("model") == demo.OPTIMIZER_MODEL and demo.epoch_of(r) >= 2)],
    # epoch 2 is committed in the worktree, then its gate evaluation fails half way
    "gate": lambda: [Plan(when=is_agent, arm=is_optimizer(2))],
}


@pytest.mark.parametrize("phase, kind", [("baseline", "http-500"), ("optimizer", "http-429-retry-after"),
                                         ("gate", "http-503"), ("gate", DROP), ("gate", "not-json")])
def test_when_retries_run_out_nothing_is_half_committed_and_resume_finishes(
        phase: str, kind: str, api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        record_property: Any) -> None:
    expected = reference(tmp_path_factory)
    url, injector = api(kind, PHASES[phase]())
    plans = injector.plans
    injector.plans = []  # healthy while the user's earlier evaluation is made
    repo, before = make_user_repo(tmp_path / "repo", url)
    injector.plans = plans
    t0 = time.monotonic()
    failed = forgegit(repo, url, "train", "--run-id", "r")
    elapsed = time.monotonic() - t0
    lost = data_lost(repo, before, "forgegit/train/r")
    mess = leftovers(repo)
    run_after_failure = history.load_run(repo, "forgegit/train/r")
    injector.recover()
    resumed = forgegit(repo, url, "train", "--resume")
    lost += data_lost(repo, before, "forgegit/train/r")
    record_property("fault", f"permanent {kind} at {phase}")
    record_property("injected", injector.injected)
    record_property("data_lost", len(lost))

    line = single_error_line(failed)
    assert "gave up after 5 retries" in line and "127.0.0.1" in line, line
    assert elapsed < 120
    assert not lost, lost
    assert not mess, mess
    assert run_after_failure.status == "running"
    assert len(run_after_failure.epochs) == {"baseline": 0, "optimizer": 1, "gate": 1}[phase]
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not leftovers(repo), leftovers(repo)
    assert outcome(repo, "forgegit/train/r") == expected


def test_a_failing_api_leaves_no_worktree_or_lock_even_mid_gate(api: Any, tmp_path: Path, record_property: Any) -> None:
    url, injector = api("http-500", [Plan(when=is_agent, arm=is_optimizer(1))])
    repo = demo.make_repo(tmp_path / "repo")
    before = UserState.of(repo)
    single_error_line(forgegit(repo, url, "train", "--run-id", "w"))
    lost = data_lost(repo, before, "forgegit/train/w")
    record_property("fault", "permanent http-500 at epoch 1 gate (no resume)")
    record_property("injected", injector.injected)
    record_property("data_lost", len(lost))
    assert not lost, lost
    assert not leftovers(repo)
    state = Path(git(repo, "rev-parse", "--absolute-git-dir")) / "forgegit" / "worktrees"
    assert not state.exists() or not any(state.iterdir())
    # the epoch-1 commit made in the worktree never reached the branch
    assert git(repo, "rev-parse", "forgegit/train/w") == git(repo, "rev-parse", "main")


# ---------------------------------------------------------------- (c) fail fast on settings


@pytest.mark.parametrize("status, needles", [
    (401, ["401", "OPENAI_API_KEY"]),
    (403, ["403", "scripted-agent"]),
    (404, ["404", "'scripted-agent' not found", "--model", "OPENAI_BASE_URL"]),
    (400, ["400", "context length"]),
])
@pytest.mark.parametrize("command", ["eval", "train"])
def test_auth_and_not_found_fail_fast_naming_the_setting(status: int, needles: list[str], command: str,
                                                         scripted: Any, tmp_path: Path, record_property: Any) -> None:
    body = {"error": {"message": "maximum context length exceeded" if status == 400 else f"error {status}",
                      "type": "invalid_request_error"}}
    server = scripted(lambda r: HTTPError(status, body))
    repo = demo.make_repo(tmp_path / "repo")
    before = UserState.of(repo)
    t0 = time.monotonic()
    proc = forgegit(repo, server.base_url, command)
    lost = data_lost(repo, before, "")
    record_property("fault", f"HTTP {status} (fail fast) in {command}")
    record_property("injected", server.calls)
    record_property("data_lost", len(lost))
    line = single_error_line(proc)
    for needle in needles:
        assert needle in line, (needle, line)
    assert "retries" not in line
    # only the tasks already started (concurrency 4, and one more racing the cancellation), none retried
    questions = [json.dumps(r["messages"]) for r in server.requests]
    assert len(questions) <= 5 and len(set(questions)) == len(questions)
    assert time.monotonic() - t0 < 30
    assert not lost and not leftovers(repo)


def test_the_optimizer_model_missing_fails_fast_mid_training(scripted: Any, tmp_path: Path, record_property: Any) -> None:
    script = demo.make_script()
    server = scripted(lambda r: HTTPError(404, {"error": {"message": "no such model"}})
                      if r["model"] == demo.OPTIMIZER_MODEL else script(r))
    repo = demo.make_repo(tmp_path / "repo")
    before = UserState.of(repo)
    proc = forgegit(repo, server.base_url, "train", "--run-id", "o")
    lost = data_lost(repo, before, "forgegit/train/o")
    record_property("fault", "HTTP 404 for the optimizer model mid-training")
    record_property("injected", sum(r["model"] == demo.OPTIMIZER_MODEL for r in server.requests))
    record_property("data_lost", len(lost))
    assert not lost, lost
    line = single_error_line(proc)
    assert "'scripted-optimizer' not found" in line
    assert sum(r["model"] == demo.OPTIMIZER_MODEL for r in server.requests) == 1
    assert not leftovers(repo)


# ---------------------------------------------------------------- replies that are not failures of the API


def test_a_cut_off_reply_and_a_permanent_refusal_fail_only_their_task(scripted: Any, tmp_path: Path,
                                                                      record_property: Any) -> None:
    """finish_reason "length" is an answer (flagged); a content-filter refusal after retries fails that task only."""
    script = demo.make_script()
    cut, refused = demo.TASKS[0], demo.TASKS[1]

    def faulty(r: Request) -> Any:
        question = next((m["content"] for m in r["messages"] if m.get("role") == "user"), "")
        if question == cut["question"]:
            return text("The digits add up to", finish_reason="length")
        if question == refused["question"]:
            return Reply(content=None, finish_reason="content_filter")
        return script(r)

    server = scripted(faulty)
    repo = demo.make_repo(tmp_path / "repo")
    proc = forgegit(repo, server.base_url, "eval", "--json")
    record_property("fault", "cut-off reply + permanent content filter (one task each)")
    record_property("injected", 1 + 6)
    record_property("data_lost", 0)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    by_id = {r["task_id"]: r for r in result["results"]}
    assert result["total"] == len(demo.TASKS)
    assert not by_id[cut["id"]]["passed"] and "cut off" in by_id[cut["id"]]["feedback"]
    assert by_id[refused["id"]]["failure"] == "llm_error" and "content filter" in by_id[refused["id"]]["feedback"]
    assert sum(r["passed"] for r in result["results"]) == result["passed"]
    # the other tasks were all scored (the scripted agent guesses digital roots without digit_sum)
    assert all(r["failure"] in ("wrong_answer", None) for r in result["results"] if r["task_id"] not in (cut["id"], refused["id"]))


# ---------------------------------------------------------------- killed at an arbitrary moment


KILL_SEEDS = range(int(os.environ.get("FORGEGIT_FAULT_KILLS", "6")))  # bench/faults.py may ask for more
CRASH_POINTS = ["after-optimizer", "after-write", "after-commit", "after-eval", "after-note",
                "during-revert", "after-record"]


@pytest.mark.parametrize("moment", [f"at {p}" for p in CRASH_POINTS] + [f"random {seed}" for seed in KILL_SEEDS])
def test_killed_at_any_moment_nothing_is_lost_and_resume_finishes_with_the_clean_outcome(
        moment: str, api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    """SIGKILL at each named step of an epoch, or of the whole process group (git included) at a random
    time, as a power cut would; then --resume (or a fresh start when the run had not begun)."""
    expected = reference(tmp_path_factory)
    url, _ = api()
    repo, before = make_user_repo(tmp_path / "repo", url)
    how, _, which = moment.partition(" ")
    if how == "at":
        delay = 0.0
        killed = forgegit(repo, url, "train", "--run-id", "r", crash_at=which)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    else:
        delay = random.Random(int(which)).uniform(0.5, 4.5)
        killed = forgegit(repo, url, "train", "--run-id", "r", kill_after=delay)
    was_killed = killed.returncode == -signal.SIGKILL
    lost = data_lost(repo, before, "forgegit/train/r") if was_killed else []
    if not was_killed:  # it finished before the kill
        resumed = killed
    elif not git(repo, "branch", "--list", "forgegit/train/r"):  # killed before the run began: start it again
        resumed = forgegit(repo, url, "train", "--run-id", "r")
    else:
        resumed = forgegit(repo, url, "train", "--resume")
        if resumed.returncode == 1 and "is already finished" in resumed.stderr:  # killed while tidying up
            resumed.returncode = 0
    lost += data_lost(repo, before, "forgegit/train/r")
    record_property("fault", f"SIGKILL {'at ' + which if how == 'at' else 'at a random moment'}")
    record_property("injected", int(was_killed))
    record_property("data_lost", len(lost))
    assert not lost, lost
    assert resumed.returncode == 0, f"killed after {delay:.2f}s\n" + resumed.stdout + resumed.stderr
    assert not leftovers(repo), f"killed after {delay:.2f}s"
    assert outcome(repo, "forgegit/train/r") == expected


def test_killed_while_tidying_up_a_finished_run_resume_cleans_up(api: Any, tmp_path: Path, record_property: Any) -> None:
    """The window between recording `finished` and removing the worktree and lock: resume says it is done and tidies."""
    url, _ = api()
    repo, before = make_user_repo(tmp_path / "repo", url)
    assert forgegit(repo, url, "train", "--run-id", "t").returncode == 0
    # What a kill inside Trainer.close() leaves: the run's worktree still registered, the lock of a dead pid.
    state = Path(git(repo, "rev-parse", "--absolute-git-dir")) / "forgegit"
    git(repo, "worktree", "add", "--quiet", "--detach", str(state / "worktrees" / "t"), "forgegit/train/t")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (state / "train.lock").write_text(f"{dead.pid} t\n")
    assert leftovers(repo)
    resumed = forgegit(repo, url, "train", "--resume", "--run-id", "t")
    lost = data_lost(repo, before, "forgegit/train/t")
    record_property("fault", "SIGKILL while tidying up a finished run")
    record_property("injected", 1)
    record_property("data_lost", len(lost))
    assert "is already finished" in single_error_line(resumed)
    assert not leftovers(repo) and not lost


# ---------------------------------------------------------------- state a kill leaves behind


def test_killed_during_git_worktree_add_resume_cleans_the_locked_worktree(
        api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    """A SIGKILL while `git worktree add` checks out the training worktree leaves it registered and
    locked ("initializing"); `--resume` unlocks and removes it, and the run ends as a clean one."""
    expected = reference(tmp_path_factory)
    url, _ = api()
    repo, before = make_user_repo(tmp_path / "repo", url)
    # A smudge filter that stops git in the middle of the worktree's checkout until it is killed.
    marker = tmp_path / "checking-out"
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    (common / "info").mkdir(exist_ok=True)
    (common / "info" / "attributes").write_text("*.py filter=pause\n")
    git(repo, "config", "filter.pause.smudge", f"sh -c 'touch {marker}; sleep 120; cat'")
    env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-test", "FORGEGIT_RETRY_BACKOFF": "0.01"}
    proc = subprocess.Popen([sys.executable, "-m", "forgegit", "train", "--run-id", "r"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # forgegit, git worktree add and the filter, at once
    proc.communicate()
    assert marker.exists(), "git worktree add never reached the checkout"
    (common / "info" / "attributes").unlink()
    git(repo, "config", "--unset", "filter.pause.smudge")
    assert (common / "worktrees" / "r" / "locked").exists()  # what git leaves: a locked, half-made worktree
    resumed = forgegit(repo, url, "train", "--resume")
    lost = data_lost(repo, before, "forgegit/train/r")
    record_property("fault", "SIGKILL during `git worktree add`, then `--resume`")
    record_property("injected", 1)
    record_property("data_lost", len(lost))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "cleaning the worktree left by an interrupted run" in resumed.stdout
    assert not lost and not leftovers(repo)
    fsck = subprocess.run(["git", "fsck"], cwd=repo, capture_output=True, text=True)
    assert "worktrees/" not in fsck.stdout + fsck.stderr, fsck.stdout + fsck.stderr
    assert not (common / "worktrees").exists() or not any((common / "worktrees").iterdir())
    assert outcome(repo, "forgegit/train/r") == expected


# ---------------------------------------------------------------- a malformed optimizer reply


def _long_expression_file() -> str:
    terms = "+".join(["1"] * 20_000)  # ast.parse raises RecursionError on it; the file is under 64 KiB
    return demo.DIGIT_SUM.replace("return sum(int(d) for d in str(abs(n)))", f"return {terms}")


MALFORMED: dict[str, tuple[Callable[[], Any], str]] = {
    # name: (the optimizer's first reply in epoch 1, what its rejection says)
    "arguments nested 100,000 deep": (
        lambda: tool_calls(("add_function", "[" * 100_000 + "]" * 100_000), content="Deep."), "nested too deeply"),
    "code holding a 20,000-term expression": (
        lambda: tool_calls(("add_function", {"name": "digit_sum", "description": "d", "code": _long_expression_file()}),
                           content="Long."), "too deeply nested to parse"),
    "a 6 MB reply": (
        lambda: tool_calls(("add_function", {"name": "digit_sum", "code": demo.DIGIT_SUM}), content="why " * 1_500_000),
        "too large to read"),
    "tool calls that are not objects": (
        lambda: {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": {"not": "text"}, "tool_calls": ["add_function", 7]}}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 5}},
        "could not be read"),
}


def malformed_script(reply: Callable[[], Any]) -> tuple[Callable[[Request], Any], list[Request]]:
    """The demo model, except that the optimizer's first answer in epoch 1 is reply(); the requests it got."""
    inner = demo.make_script()
    seen: list[Request] = []

    def script(r: Request) -> Any:
        first = r.get("model") == demo.OPTIMIZER_MODEL and demo.epoch_of(r) == 1 and not any(
            m.get("role") == "tool" or "were rejected" in str(m.get("content")) for m in r["messages"])
        if first:
            seen.append(r)
            return reply()
        return inner(r)

    return script, seen


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_optimizer_reply_is_rejected_and_a_cached_one_does_not_brick_resume(
        kind: str, api: Any, tmp_path: Path, record_property: Any) -> None:
    """The reply becomes a rejected action with a reason and the epoch goes on; killed right after, the
    resumed run reads the same reply from the response cache (temperature 0) and rejects it again."""
    reply, reason = MALFORMED[kind]
    script, seen = malformed_script(reply)
    url, _ = api(script=script)
    repo, before = make_user_repo(tmp_path / "repo", url)
    killed = forgegit(repo, url, "train", "--run-id", "r", crash_at="after-optimizer")
    resumed = forgegit(repo, url, "train", "--resume")
    lost = data_lost(repo, before, "forgegit/train/r")
    record_property("fault", f"optimizer reply: {kind} (then kill and --resume)")
    record_property("injected", len(seen) + 1)
    record_property("data_lost", len(lost))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr  # it got past reading the reply
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert len(seen) == 1  # the resumed run's copy came from the cache
    run = history.load_run(repo, "forgegit/train/r")
    first = run.epochs[0]
    assert not first.kept and first.commit is None
    assert [a for a in first.actions if not a.accepted and reason in a.reason], first.actions
    assert len(first.rationale) < 25_000
    assert run.status == "finished" and not lost and not leftovers(repo)


# ---------------------------------------------------------------- notes that are not forgegit's


BAD_NOTES = {
    "evals is a list": '{"evals": []}',
    "a run of the wrong shape": '{"runs": {"r": {"run_id": "r", "epochs": "many"}}}',
    "an evaluation of the wrong shape": '{"evals": {"k": {"key": "k", "passed": "all"}}}',
    "an epoch that is a number": '{"epoch": 5}',
    "JSON nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
}


def _put_note(repo: Path, commit: str, text: str) -> None:
    subprocess.run(["git", "notes", "--ref", notes.NOTES_REF, "add", "-f", "-F", "-", commit], cwd=repo,
                   input=text, text=True, check=True, capture_output=True)


def _warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("forgegit: warning:")]


@pytest.mark.parametrize("kind", list(BAD_NOTES))
def test_a_note_of_the_wrong_shape_is_reported_once_and_eval_log_train_and_resume_go_on(
        kind: str, api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    expected = reference(tmp_path_factory)
    url, _ = api()
    repo = demo.make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD")
    _put_note(repo, base, BAD_NOTES[kind])
    commands: list[tuple[str, subprocess.CompletedProcess[str], str]] = []
    commands.append(("eval", forgegit(repo, url, "eval"), base))
    _put_note(repo, base, BAD_NOTES[kind])  # again: eval replaced it with its own valid note
    commands.append(("train", forgegit(repo, url, "train", "--run-id", "r", crash_at="after-record"), base))
    # Epoch 1's commit: `log` and a bare --resume read every note to find the latest run, and the
    # resumed run evaluates this commit again.
    end = history.load_run(repo, "forgegit/train/r").epochs[0].end
    _put_note(repo, end, BAD_NOTES[kind])
    commands.append(("log", forgegit(repo, url, "log"), end))
    commands.append(("train --resume", forgegit(repo, url, "train", "--resume"), end))
    record_property("fault", f"a note of the wrong shape: {kind}")
    record_property("injected", 2)
    record_property("data_lost", 0 if outcome(repo, "forgegit/train/r") == expected else 1)
    for name, proc, commit in commands:
        assert "Traceback" not in proc.stderr, (name, proc.stderr)
        assert proc.returncode == (-signal.SIGKILL if name == "train" else 0), (name, proc.stdout + proc.stderr)
        lines = _warnings(proc)
        assert len(lines) == 1 and f"on commit {commit[:12]}" in lines[0], (name, proc.stderr)
    assert "run r:" in commands[2][1].stdout  # `log` shows the run
    assert outcome(repo, "forgegit/train/r") == expected


def test_a_forged_evaluation_in_the_notes_is_not_reused(api: Any, tmp_path: Path, record_property: Any) -> None:
    """A result filed under the key being looked up must recompute to it (tree, task hash, settings) and
    agree with itself (counts and tasks); else it is reported and the evaluation runs."""
    url, _ = api()
    repo = demo.make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD")
    real = json.loads(forgegit(repo, url, "eval", "--json").stdout)
    note = json.loads(git(repo, "notes", "--ref", notes.NOTES_REF, "show", base))
    perfect = [dict(r, passed=True, failure=None) for r in real["results"]]
    forgeries = {
        "another tree": dict(real, tree="0" * 40, passed=real["total"], results=perfect),
        "inflated counts": dict(real, passed=real["total"]),
        "other tasks": dict(real, results=[dict(r, task_id=f"x{i}") for i, r in enumerate(real["results"])]),
    }
    reused = []
    for name, forged in forgeries.items():
        _put_note(repo, base, json.dumps({**note, "evals": {real["key"]: forged}}))
        again = forgegit(repo, url, "eval", "--json")
        assert again.returncode == 0, again.stderr
        got = json.loads(again.stdout)
        if got["passed"] != real["passed"]:
            reused.append(name)
        lines = _warnings(again)
        assert len(lines) == 1 and real["key"] in lines[0] and base[:12] in lines[0], (name, again.stderr)
    record_property("fault", "a forged evaluation in the notes (3 forgeries)")
    record_property("injected", len(forgeries))
    record_property("data_lost", len(reused))
    assert not reused, reused


# ---------------------------------------------------------------- interrupted evaluations and runs


def test_an_evaluation_that_fails_midway_keeps_its_finished_tasks_and_a_rerun_pays_only_for_the_rest(
        api: Any, tmp_path: Path, record_property: Any) -> None:
    """At temperature 0.5 (no response cache), task 7 of 12 fails for good: the 6 finished tasks are
    checkpointed, and once the server is back the rerun asks the model only about the others."""
    broken = demo.TASKS[6]["question"]
    url, injector = api("http-500", [Plan(when=lambda r: is_agent(r) and any(
        m.get("content") == broken for m in r["messages"]))])
    repo = demo.make_repo(tmp_path / "repo")
    config = (repo / "forgegit.toml").read_text().replace("concurrency = 4", "concurrency = 1")
    (repo / "forgegit.toml").write_text(config + "temperature = 0.5\n")
    git(repo, "commit", "-q", "-am", "no response cache at temperature 0.5")
    before = UserState.of(repo)
    failed = forgegit(repo, url, "eval")
    line = single_error_line(failed)
    assert "gave up after 5 retries" in line
    injector.recover()
    server_requests: list[Request] = []
    inner = demo.make_script()
    url2, _ = api(script=lambda r: server_requests.append(r) or inner(r))
    rerun = forgegit(repo, url2, "eval", "--json")
    lost = data_lost(repo, before, "")
    record_property("fault", "permanent http-500 on task 7 of 12 in eval, then a rerun")
    record_property("injected", injector.injected)
    record_property("data_lost", len(lost))
    assert rerun.returncode == 0, rerun.stderr
    asked = {m["content"] for r in server_requests for m in r["messages"] if m.get("role") == "user"}
    done_before = {t["question"] for t in demo.TASKS[:6]}
    assert not asked & done_before, "a finished task was paid for again"
    assert asked == {t["question"] for t in demo.TASKS[6:]}
    result = json.loads(rerun.stdout)
    assert result["total"] == 12 and len(result["results"]) == 12
    head = git(repo, "rev-parse", "HEAD")
    assert result["key"] in json.loads(git(repo, "notes", "--ref", notes.NOTES_REF, "show", head))["evals"]
    state = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "forgegit"
    assert not list((state / "checkpoints").glob("*.jsonl"))  # the note holds it all now
    assert not lost


def test_ctrl_c_prints_the_resume_command_and_keeps_the_baseline_and_what_was_spent(
        api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    """SIGINT while the optimizer thinks: forgegit prints the exact command to resume; `log` shows the
    baseline already computed; the resumed run's usage equals an uninterrupted run's."""
    expected, ref = reference(tmp_path_factory), reference_run(tmp_path_factory)
    asked = threading.Event()
    inner = demo.make_script()

    def slow_optimizer(r: Request) -> Any:
        if r.get("model") == demo.OPTIMIZER_MODEL and demo.epoch_of(r) == 1 and not asked.is_set():
            asked.set()
            time.sleep(3)
        return inner(r)

    url, _ = api(script=slow_optimizer)
    repo = demo.make_repo(tmp_path / "repo")  # no earlier evaluation: the reference run had none to reuse
    before = UserState.of(repo)
    env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-test", "FORGEGIT_RETRY_BACKOFF": "0.01"}
    proc = subprocess.Popen([sys.executable, "-m", "forgegit", "train", "--run-id", "r"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert asked.wait(120), "the optimizer was never asked"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    logged = json.loads(forgegit(repo, url, "log", "--json").stdout)
    hint = [line for line in (out + err).splitlines() if "forgegit train --resume" in line]
    command = hint[0].split("`")[1].split() if hint else []
    resumed = forgegit(repo, url, *command[1:]) if command else None
    lost = data_lost(repo, before, "forgegit/train/r")
    record_property("fault", "Ctrl-C while the optimizer thinks, then the printed `--resume`")
    record_property("injected", 1)
    record_property("data_lost", len(lost))
    assert proc.returncode == 130, out + err
    assert command == ["forgegit", "train", "--resume", "--run-id", "r"], out + err
    assert logged["baseline_score"] == ref.baseline_score > 0
    assert resumed is not None and resumed.returncode == 0, resumed and resumed.stdout + resumed.stderr
    run = history.load_run(repo, "forgegit/train/r")
    spent = (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.calls)
    assert spent == (ref.usage.prompt_tokens, ref.usage.completion_tokens, ref.usage.calls)
    assert outcome(repo, "forgegit/train/r") == expected and not lost and not leftovers(repo)


@pytest.mark.parametrize("point", ["after-optimizer", "after-eval", "after-note"])
def test_a_resumed_run_counts_what_was_spent_before_the_kill(
        point: str, api: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, record_property: Any) -> None:
    """--budget must not undercount across a resume: the resumed run's tokens and calls are an uninterrupted run's."""
    ref = reference_run(tmp_path_factory)
    url, _ = api()
    repo = demo.make_repo(tmp_path / "repo")  # no earlier evaluation: the reference run had none to reuse
    before = UserState.of(repo)
    killed = forgegit(repo, url, "train", "--run-id", "r", crash_at=point)
    resumed = forgegit(repo, url, "train", "--resume")
    lost = data_lost(repo, before, "forgegit/train/r")
    record_property("fault", f"SIGKILL at {point}: the resumed run's usage")
    record_property("injected", 1)
    record_property("data_lost", len(lost))
    assert killed.returncode == -signal.SIGKILL and resumed.returncode == 0, resumed.stderr
    run = history.load_run(repo, "forgegit/train/r")
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.calls) == (
        ref.usage.prompt_tokens, ref.usage.completion_tokens, ref.usage.calls)
    assert not lost


def test_the_latest_run_is_the_most_recent_one_not_the_alphabetically_last(
        api: Any, tmp_path: Path, record_property: Any) -> None:
    """After a run named `sigint`, a newer timestamped run is what a bare --resume, log and pr pick."""
    url, _ = api()
    repo, before = make_user_repo(tmp_path / "repo", url)
    first = forgegit(repo, url, "train", "--run-id", "sigint", "--epochs", "0")
    assert first.returncode == 0, first.stderr
    killed = forgegit(repo, url, "train", crash_at="after-record")
    assert killed.returncode == -signal.SIGKILL
    newer = [b for b in git(repo, "branch", "--list", "--format=%(refname:short)", "forgegit/train/*").split()
             if b != "forgegit/train/sigint"]
    assert len(newer) == 1 and newer[0] < "forgegit/train/sigint"  # a timestamp sorts before "sigint"
    logged = forgegit(repo, url, "log")
    resumed = forgegit(repo, url, "train", "--resume")
    lost = data_lost(repo, before, newer[0])
    record_property("fault", "bare --resume after a run named `sigint`")
    record_property("injected", 1)
    record_property("data_lost", len(lost))
    assert f"run {newer[0].split('/')[-1]}:" in logged.stdout, logged.stdout + logged.stderr
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert history.load_run(repo, newer[0]).status == "finished"
    assert history.latest_run_branch(repo) == newer[0]
    assert not lost and not leftovers(repo)
