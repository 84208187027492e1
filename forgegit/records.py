"""Records that travel between modules and into git notes (all JSON round-trippable)."""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar, Union

T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """A dataclass (or nest of them) as plain JSON-able values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


class RecordError(ValueError):
    """JSON that does not have a record's shape; the message names the field, e.g. `results[3].passed`."""


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
                "list": "a list", "dict": "an object"}.get(tp.__name__, f"a {tp.__name__} object")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return _type_name(origin) if origin is not None else str(tp)


def _check(tp: Any, value: Any, where: str) -> None:
    """Raise RecordError unless value (parsed JSON) fits the type tp."""
    if tp is Any:
        return
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                _check(option, value, where)
                return
            except RecordError as exc:
                errors.append(exc)
        if value is not None:  # Optional[X] with a wrong X: say what X wanted
            raise next((e for e in errors if "expected null" not in str(e)), errors[-1])
        raise errors[-1]
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected {_type_name(tp)}, got {_json_type(value)}")
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            _check(item, v, f"{where}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected {_type_name(tp)}, got {_json_type(value)}")
        _, item = typing.get_args(tp) or (str, Any)
        for k, v in value.items():
            _check(item, v, f"{where}.{k}")
        return
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        check(tp, value, where)
        return
    ok = {
        type(None): value is None,
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp, True)
    if not ok:
        raise RecordError(f"{where}: expected {_type_name(tp)}, got {_json_type(value)}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def check(cls: type, data: Any, where: str = "") -> None:
    """Raise RecordError unless data (parsed JSON) can be read as the record class cls: an object with
    every required field, each of the declared JSON type (unknown fields are allowed and ignored)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected {_type_name(cls)}, got {_json_type(data)}")
    missing = [name for name in _required(cls) if name not in data]
    if missing:
        raise RecordError(f"{where}: missing field {missing[0]!r}")
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data:
            _check(hints[f.name], data[f.name], f"{where}.{f.name}")


def parse(cls: type[T], data: Any, where: str = "") -> T:
    """The record cls read from JSON data, or RecordError saying which field is wrong."""
    check(cls, data, where)
    result: T = getattr(cls, "from_json")(data)
    return result


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """d without the keys cls has no field for (a newer forgegit's additions)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass
class ModelTokens:
    """The tokens one model was sent and returned (the cost is computed from them when shown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those the provider served from its prompt cache

    def add(self, other: "ModelTokens") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens


@dataclass
class Usage:
    """Model usage: tokens, calls and cost in USD (0 when the model's price is unknown).

    `cached_calls` are calls answered from forgegit's own response cache (free); `cached_tokens` are
    prompt tokens the provider served from its prompt cache (billed at its cached rate). `models`
    keeps the tokens per model, so `cost.reprice` can cost a record at today's `[prices]`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    cost: float = 0.0
    cached_tokens: int = 0
    models: dict[str, ModelTokens] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "Usage") -> "Usage":
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.cost += other.cost
        self.cached_tokens += other.cached_tokens
        for model, tokens in other.models.items():
            self.models.setdefault(model, ModelTokens()).add(tokens)
        return self

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "Usage":
        d = _known(cls, d or {})
        d["models"] = {str(m): ModelTokens(**_known(ModelTokens, t)) for m, t in (d.get("models") or {}).items()
                       if isinstance(t, dict)}
        return cls(**d)


@dataclass
class TaskResult:
    """One task's outcome. `failure` is None when passed, else one of FAILURE_KINDS."""

    task_id: str
    passed: bool
    answer: str
    expected: str
    feedback: str = ""
    failure: Optional[str] = None
    tool_calls: int = 0
    tool_errors: int = 0
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TaskResult":
        d = _known(cls, d)
        d["usage"] = Usage.from_json(d.get("usage"))
        return cls(**d)


# timeout: a model request took over `timeout` (the task is run again under a larger one)
FAILURE_KINDS = ("wrong_answer", "no_answer", "turn_limit", "llm_error", "timeout", "agent_error")


@dataclass
class EvalResult:
    """The result of evaluating the functions at one revision on one task file."""

    key: str
    revision: str
    tree: str
    tasks_file: str
    tasks_hash: str
    model: str
    passed: int
    total: int
    usage: Usage
    results: list[TaskResult]
    created: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    trajectories: str = ""  # written by forgegit before conversations were stored in git (a local path, unused)
    conversations: str = ""  # the git tree of the agent's conversations (see conversations.py), "" when none

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def outcomes(self) -> dict[str, bool]:
        return {r.task_id: r.passed for r in self.results}

    def failures_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            if r.failure:
                counts[r.failure] = counts.get(r.failure, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = to_json(self)
        d["score"] = self.score
        d["tokens"] = self.usage.total_tokens
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalResult":
        d = _known(cls, d)  # drops the derived "score" and "tokens"
        d["usage"] = Usage.from_json(d.get("usage"))
        d["results"] = [TaskResult.from_json(r) for r in d.get("results", [])]
        return cls(**d)


@dataclass
class GateDecision:
    """Whether a candidate beats a baseline on paired per-task outcomes, and by which test."""

    kept: bool
    test: str  # "mcnemar", "bootstrap" or "delta"
    delta: float
    p_value: Optional[float] = None
    up: int = 0  # tasks that went fail -> pass
    down: int = 0  # tasks that went pass -> fail
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    reason: str = ""
    tasks: int = 0  # tasks compared (more than the batch when sequential looks added some)
    alpha: Optional[float] = None  # the level this decision was tested at (alpha spent at its look)
    looks: int = 1  # sequential looks taken before deciding

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "GateDecision | None":
        return cls(**_known(cls, d)) if d else None


@dataclass
class ActionRecord:
    """One optimizer proposal: add/revise/remove a function, and whether it was applied."""

    kind: str  # "add", "revise" or "remove"
    name: str
    accepted: bool
    reason: str = ""  # why it was rejected, empty when accepted
    commit: Optional[str] = None  # an accepted action's own commit inside the epoch
    kept: Optional[bool] = None  # after attribution: whether this action stayed (None: judged with its epoch)


@dataclass
class Trial:
    """One subset of an epoch's actions judged alone on the epoch's tasks (attribution)."""

    actions: list[int]  # indices into the epoch's accepted actions
    commit: str  # a commit of the parent plus these actions only (not on the branch; its result is in the notes)
    score: float
    kept: bool  # whether it passed the gate
    reason: str = ""
    p_value: Optional[float] = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Trial":
        return cls(**_known(cls, d))


@dataclass
class ReviewComment:
    """A reviewer's comment on a pull request (untrusted text, already cut to a bounded size)."""

    id: str  # "line-<id>", "review-<id>" or "comment-<id>": unique within the PR
    kind: str  # "line" (on a file and line), "review" (a review's body) or "comment" (the conversation)
    author: str
    body: str
    created: str  # GitHub's ISO time
    path: str = ""  # for a line comment: the file and line it is on
    line: Optional[int] = None
    url: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ReviewComment":
        return cls(**_known(cls, d))


@dataclass
class ReviewRound:
    """Review feedback a run was continued with (`train --from-pr N`): the comments, from epoch first_epoch on."""

    pr: int
    branch: str
    fetched: str  # when the comments were read (UTC ISO)
    comments: list[ReviewComment] = field(default_factory=list)
    first_epoch: int = 0  # the first epoch whose optimizer saw these comments (0: not started yet)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ReviewRound":
        d = _known(cls, d)
        d["comments"] = [ReviewComment.from_json(c) for c in d.get("comments", [])]
        return cls(**d)


@dataclass
class EpochRecord:
    """One training epoch: what the optimizer proposed, the commit, and the gate's verdict."""

    epoch: int
    parent: str
    commit: Optional[str]
    revert: Optional[str]
    actions: list[ActionRecord]
    rationale: str
    score_before: float
    score_after: Optional[float]
    kept: bool
    gate: Optional[GateDecision] = None
    usage: Usage = field(default_factory=Usage)
    flipped_up: list[str] = field(default_factory=list)
    flipped_down: list[str] = field(default_factory=list)
    val_score: Optional[float] = None  # validation score of the branch after this epoch (not used by the gate)
    answers: list[str] = field(default_factory=list)  # ids of the review comments its optimizer was shown
    attribution: list[Trial] = field(default_factory=list)  # subsets tried when the whole epoch was not kept
    reverts: list[str] = field(default_factory=list)  # the revert commits of dropped actions (revert is the last)

    @property
    def kept_actions(self) -> tuple[int, int]:
        """(kept, accepted) action counts: (1, 2) reads "kept 1 of 2 actions"."""
        accepted = [a for a in self.actions if a.accepted]
        kept = sum(1 for a in accepted if (a.kept if a.kept is not None else self.kept))
        return kept, len(accepted)

    @property
    def end(self) -> str:
        """Where the branch stands after this epoch: the revert, the kept commit, or the parent."""
        return self.revert or self.commit or self.parent

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EpochRecord":
        d = _known(cls, d)
        d["actions"] = [ActionRecord(**_known(ActionRecord, a)) for a in d.get("actions", [])]
        d["attribution"] = [Trial.from_json(t) for t in d.get("attribution", [])]
        d["gate"] = GateDecision.from_json(d.get("gate"))
        d["usage"] = Usage.from_json(d.get("usage"))
        return cls(**d)


@dataclass
class Comparison:
    """Base vs trained on one task set (validation or test): scores, difference, CI, flips."""

    split: str  # "train", "val" or "test"
    tasks_file: str
    base_score: float
    head_score: float
    delta: float
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_value: Optional[float]
    passed: bool  # the gate's verdict (always False for "test": it gates nothing)
    flipped_up: list[dict[str, str]] = field(default_factory=list)  # {"task_id", "feedback"}
    flipped_down: list[dict[str, str]] = field(default_factory=list)
    base_total: int = 0
    head_total: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "Comparison | None":
        return cls(**_known(cls, d)) if d else None


@dataclass
class RunRecord:
    """A training run as `forgegit log` and `forgegit pr` see it."""

    run_id: str
    branch: str
    base_branch: str
    base_commit: str
    model: str
    optimizer_model: str
    tasks_file: str
    val_file: str
    test_file: str
    baseline_score: float
    epochs: list[EpochRecord] = field(default_factory=list)
    baseline_val_score: Optional[float] = None
    best_commit: str = ""
    best_score: float = 0.0
    final_gate: Optional[Comparison] = None
    test: Optional[Comparison] = None
    status: str = "running"  # running | finished
    stop_reason: str = ""  # epochs | early-stop | budget | ...
    usage: Usage = field(default_factory=Usage)
    settings: dict[str, Any] = field(default_factory=dict)
    sandbox: str = ""  # the isolation level the run's sandbox reached, e.g. "secrets-safe (landlock abi 7, seccomp, ...)"
    started: str = ""  # UTC ISO times: when the run began, and when its record was last saved
    updated: str = ""
    reviews: list[ReviewRound] = field(default_factory=list)  # review feedback it was continued with, in order

    @property
    def improved(self) -> bool:
        return bool(self.final_gate and self.final_gate.passed)

    def _last_kept(self) -> Optional[EpochRecord]:
        return next((e for e in reversed(self.epochs) if e.kept and e.commit and e.score_after is not None), None)

    @property
    def trained_score(self) -> float:
        """The training score of the functions the branch holds: the last kept epoch's, else the
        baseline (a run that kept nothing scores what it started with, never 0)."""
        kept = self._last_kept()
        return kept.score_after if kept is not None and kept.score_after is not None else self.baseline_score

    @property
    def trained_commit(self) -> str:
        """Where the last kept epoch ends, else the base commit: its own commit, or for a partly kept epoch the
        revert of its dropped actions (which holds the kept tree); never the revert of a whole epoch."""
        kept = self._last_kept()
        return kept.end if kept is not None else self.base_commit

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunRecord":
        d = _known(cls, d)
        d["epochs"] = [EpochRecord.from_json(e) for e in d.get("epochs", [])]
        d["final_gate"] = Comparison.from_json(d.get("final_gate"))
        d["test"] = Comparison.from_json(d.get("test"))
        d["usage"] = Usage.from_json(d.get("usage"))
        d["reviews"] = [ReviewRound.from_json(r) for r in d.get("reviews", [])]
        return cls(**d)
