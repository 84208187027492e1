"""Records that travel between modules and into git notes (all JSON round-trippable)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


def to_json(obj: Any) -> Any:
    """A dataclass (or nest of them) as plain JSON-able values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


@dataclass
class Usage:
    """Model usage: tokens, calls and cost in USD (0 when the model's price is unknown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: "Usage") -> "Usage":
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.cost += other.cost
        return self

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "Usage":
        d = d or {}
        return cls(**{k: d[k] for k in ("prompt_tokens", "completion_tokens", "calls", "cached_calls", "cost") if k in d})


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
        d = dict(d)
        d["usage"] = Usage.from_json(d.get("usage"))
        return cls(**d)


FAILURE_KINDS = ("wrong_answer", "no_answer", "turn_limit", "llm_error", "agent_error")


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
    trajectories: str = ""

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
        d = dict(d)
        d.pop("score", None)
        d.pop("tokens", None)
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

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "GateDecision | None":
        return cls(**d) if d else None


@dataclass
class ActionRecord:
    """One optimizer proposal: add/revise/remove a function, and whether it was applied."""

    kind: str  # "add", "revise" or "remove"
    name: str
    accepted: bool
    reason: str = ""  # why it was rejected, empty when accepted


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

    @property
    def end(self) -> str:
        """Where the branch stands after this epoch: the revert, the kept commit, or the parent."""
        return self.revert or self.commit or self.parent

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EpochRecord":
        d = dict(d)
        d["actions"] = [ActionRecord(**a) for a in d.get("actions", [])]
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
        return cls(**d) if d else None


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

    @property
    def improved(self) -> bool:
        return bool(self.final_gate and self.final_gate.passed)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunRecord":
        d = dict(d)
        d["epochs"] = [EpochRecord.from_json(e) for e in d.get("epochs", [])]
        d["final_gate"] = Comparison.from_json(d.get("final_gate"))
        d["test"] = Comparison.from_json(d.get("test"))
        d["usage"] = Usage.from_json(d.get("usage"))
        return cls(**d)
