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

from forgegit import demo, evalstore, history
from forgegit.scripted import HTTPError, RawResponse, Reply, ScriptedServer, text
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


def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The outcome of an uninterrupted run against a healthy server (computed once per worker)."""
    if not _REFERENCE:
        repo = demo.make_repo(tmp_path_factory.mktemp("reference") / "repo")
        with ScriptedServer(demo.make_script()) as server:
            proc = forgegit(repo, server.base_url, "train", "--run-id", "r")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _REFERENCE.update(outcome(repo, "forgegit/train/r"))
    return _REFERENCE


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
                   git(repo, "diff", "--cached"), evalstore.all_notes(repo))


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
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
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
