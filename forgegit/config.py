"""Settings: defaults, overridden by `forgegit.toml`, overridden by CLI flags."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import ForgegitError
from .sandbox import Limits

_LIMITS = Limits()  # the sandbox limits' defaults are defined once, in sandbox.Limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "forgegit.toml"


class ConfigError(ForgegitError):
    """forgegit.toml is malformed or holds an unknown key or a value of the wrong type."""


@dataclass
class Settings:
    """Every setting, with its default. Each field's metadata["doc"] documents it in `forgegit init`."""

    model: str = field(default="gpt-4o-mini", metadata={"doc": "Model the agent uses (any OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY)."})
    optimizer_model: str = field(default="", metadata={"doc": "Model that proposes function edits; empty means the same as `model`."})
    tasks: str = field(default="tasks/train.jsonl", metadata={"doc": "Training task file (JSONL, one task a line)."})
    val: str = field(default="", metadata={"doc": "Validation task file for the final gate; empty means the training file."})
    test: str = field(default="", metadata={"doc": "Sealed test file: never shown to the optimizer, scored once at the end of a run."})
    question_field: str = field(default="question", metadata={"doc": "Field of a task line that holds the question."})
    answer_field: str = field(default="answer", metadata={"doc": "Field of a task line that holds the expected answer."})
    checker: str = field(default="default", metadata={"doc": "Answer checker: default, exact, numeric, contains, math, gsm8k, or module:function."})
    agent: str = field(default="builtin", metadata={"doc": "Agent: builtin (OpenAI tool-calling loop) or module:function."})
    system_prompt: str = field(default="", metadata={"doc": "Extra instructions for the built-in agent's system prompt."})
    max_turns: int = field(default=8, metadata={"doc": "Most model turns the built-in agent takes on one task."})
    temperature: float = field(default=0.0, metadata={"doc": "Sampling temperature for the agent (0 makes responses cacheable)."})
    python_tool: bool = field(default=True, metadata={"doc": "Offer the agent a `python` tool that runs code with the functions importable."})
    max_tokens: int = field(default=1024, metadata={"doc": "Most tokens of one agent reply (sent as max_tokens; 0 sends none, the server decides)."})
    optimizer_max_tokens: int = field(default=4096, metadata={"doc": "Most tokens of one optimizer reply (0 sends none)."})
    timeout: float = field(default=300.0, metadata={"doc": "Seconds one model request may take (--timeout); a task whose request times out fails, the run goes on."})
    tool_choice: str = field(default="auto", metadata={"doc": "tool_choice sent with every request that offers tools (some servers ignore tools without it); empty sends none."})
    context_window: int = field(default=0, metadata={"doc": "The model's context window in tokens; 0 asks the server (llama.cpp, vLLM and Ollama report it)."})
    concurrency: int = field(default=8, metadata={"doc": "Most tasks evaluated at once."})
    tool_timeout: float = field(default=_LIMITS.timeout, metadata={"doc": "Seconds one function call may run in the sandbox."})
    memory_mb: int = field(default=_LIMITS.memory_mb, metadata={"doc": "Memory limit of a sandbox worker, in MiB."})
    max_output: int = field(default=_LIMITS.max_output, metadata={"doc": "Most characters of a tool result kept (the rest is cut)."})
    disk_mb: int = field(default=_LIMITS.disk_mb, metadata={"doc": "Most MiB a sandbox worker may write to its private temp dir."})
    sandbox: str = field(default="strict", metadata={"doc": "strict: run function code only when the sandbox is secrets-safe; unsafe: run it anyway (--unsafe-sandbox)."})
    cache: bool = field(default=True, metadata={"doc": "Reuse recorded evaluations and cached model responses (--no-cache turns it off)."})
    epochs: int = field(default=5, metadata={"doc": "Most training epochs."})
    patience: int = field(default=2, metadata={"doc": "Stop after this many epochs in a row without improvement."})
    max_actions: int = field(default=3, metadata={"doc": "Most function edits the optimizer may make in one epoch."})
    gate: str = field(default="mcnemar", metadata={"doc": "Epoch gate: mcnemar (paired exact test), bootstrap (paired bootstrap), delta (plain min_delta) or no-worse (the paper's rule: roll back only when worse)."})
    alpha: float = field(default=0.1, metadata={"doc": "Significance level of the mcnemar/bootstrap gate."})
    min_delta: float = field(default=0.0, metadata={"doc": "Least score gain an epoch must bring to be kept (all gates)."})
    sequential: bool = field(default=True, metadata={"doc": "With batch_size: when an epoch's gain is positive but not significant, evaluate more training tasks (doubling, up to all, within the budget) before deciding; alpha is split across the looks."})
    attribution: bool = field(default=True, metadata={"doc": "When an epoch with several actions is not kept, evaluate each action alone on the same batch (and the passing ones together) and keep the best subset that passes the gate."})
    batch_size: int = field(default=0, metadata={"doc": "Tasks sampled per epoch (0 = all): the gate compares the same sample before and after."})
    budget_tokens: int = field(default=0, metadata={"doc": "Stop training cleanly once this many tokens are spent (0 = no limit)."})
    budget_usd: float = field(default=0.0, metadata={"doc": "Stop training cleanly once this much is spent, in USD (0 = no limit)."})
    conversation_kb: int = field(default=2048, metadata={"doc": "Most KiB of agent conversations stored in git (refs/forgegit/conversations) per evaluation, failed tasks first; 0 stores none."})
    show_expected: bool = field(default=True, metadata={"doc": "Show the optimizer each failed training task's expected answer (it helps, and invites hard-coding that only validation catches); validation and test answers are never shown."})
    optimizer_context_tokens: int = field(default=12000, metadata={"doc": "Token budget of the optimizer's prompt (functions, score history and trajectories)."})
    seed: int = field(default=0, metadata={"doc": "Seed for sampling minibatches and the bootstrap."})
    prices: dict[str, Any] = field(default_factory=dict, metadata={"doc": "USD per 1M tokens by model, e.g. {\"my-model\" = {prompt = 0.5, completion = 1.5}}."})

    @property
    def effective_optimizer_model(self) -> str:
        return self.optimizer_model or self.model

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with the given (non-None) values replaced."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


_TYPES = {f.name: f for f in dataclasses.fields(Settings)}


def _check_type(name: str, value: Any, where: str) -> Any:
    default = getattr(Settings(), name)
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {name} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def parse_config(text: str, where: str = CONFIG_FILE) -> Settings:
    """Settings from TOML text. Keys may sit at top level or in [agent], [train], [limits] tables."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("agent", "train", "limits", "data"):
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in _TYPES:
            close = [k for k in _TYPES if k.startswith(key[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        values[key] = _check_type(key, value, where)
    settings = Settings(**values)
    validate(settings, where)
    return settings


def validate(s: Settings, where: str = "settings") -> None:
    """Range checks that apply however a value was set."""
    positive = {"max_turns": s.max_turns, "concurrency": s.concurrency, "memory_mb": s.memory_mb, "max_output": s.max_output,
                "disk_mb": s.disk_mb}
    for name, v in positive.items():
        if v < 1:
            raise ConfigError(f"{where}: {name} must be at least 1, got {v}")
    if s.max_tokens < 0 or s.optimizer_max_tokens < 0 or s.context_window < 0:
        raise ConfigError(f"{where}: max_tokens, optimizer_max_tokens and context_window must be >= 0 (0: not set)")
    if s.conversation_kb < 0:
        raise ConfigError(f"{where}: conversation_kb must be >= 0 (0 stores no conversation), got {s.conversation_kb}")
    if s.timeout <= 0:
        raise ConfigError(f"{where}: timeout must be positive, got {s.timeout}")
    if s.tool_choice not in ("", "auto", "required", "none"):
        raise ConfigError(f"{where}: tool_choice must be auto, required, none or empty (send none), got {s.tool_choice!r}")
    if s.tool_timeout <= 0:
        raise ConfigError(f"{where}: tool_timeout must be positive, got {s.tool_timeout}")
    if s.epochs < 0 or s.patience < 1 or s.max_actions < 1:
        raise ConfigError(f"{where}: epochs must be >= 0, patience and max_actions >= 1")
    if s.sandbox not in ("strict", "unsafe"):
        raise ConfigError(f"{where}: sandbox must be strict or unsafe, got {s.sandbox!r}")
    if s.gate not in ("mcnemar", "bootstrap", "delta", "no-worse"):
        raise ConfigError(f"{where}: gate must be mcnemar, bootstrap, delta or no-worse, got {s.gate!r}")
    if not 0 < s.alpha < 1:
        raise ConfigError(f"{where}: alpha must be between 0 and 1, got {s.alpha}")
    from .cost import _override_prices
    try:  # a malformed [prices] entry would otherwise fail only after the first paid model call
        _override_prices(s.prices)
    except ForgegitError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_settings(root: str | Path, path: Optional[str | Path] = None) -> Settings:
    """Settings from forgegit.toml in root (defaults when there is none)."""
    p = Path(path) if path else Path(root) / CONFIG_FILE
    if not p.exists():
        if path:
            raise ConfigError(f"{p}: config file not found")
        return Settings()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from None
    return parse_config(text, str(p))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{}" if not v else "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def render_config(settings: Optional[Settings] = None) -> str:
    """A forgegit.toml with every key documented (what `forgegit init` writes)."""
    s = settings or Settings()
    lines = [
        "# forgegit configuration. Every key is optional; CLI flags override these values.",
        "# The endpoint comes from the OpenAI SDK's own variables: OPENAI_BASE_URL and OPENAI_API_KEY",
        "# (OpenAI, Azure, vLLM, Ollama, llama.cpp server all work).",
        "",
    ]
    for f in dataclasses.fields(Settings):
        if f.name == "prices":
            continue
        lines.append(f"# {f.metadata['doc']}")
        lines.append(f"{f.name} = {_toml_value(getattr(s, f.name))}")
        lines.append("")
    lines.append("# " + _TYPES["prices"].metadata["doc"])
    lines.append("[prices]")
    for k, v in s.prices.items():
        lines.append(f"{_toml_value(k)} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
