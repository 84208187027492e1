"""Settings: defaults, overridden by `forgegit.toml`, overridden by CLI flags."""
from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

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
    prices: dict[str, Any] = field(default_factory=dict, metadata={"doc": "USD per 1M tokens by model: prompt, completion, and cached (a prompt token served from the provider's prompt cache)."})

    @property
    def effective_optimizer_model(self) -> str:
        return self.optimizer_model or self.model

    def with_overrides(self, **overrides: Any) -> "Settings":  # Any: each field has its own type
        """A copy with the given (non-None) values replaced."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


_TYPES = {f.name: f for f in dataclasses.fields(Settings)}
_TABLES = ("agent", "train", "limits", "data")  # tables whose keys are settings, like top-level ones
_KEY = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")

LineOf = Callable[[str], Optional[int]]


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) where each setting is set in forgegit.toml text: keys at top level or in
    the [agent], [train], [limits], [data] tables, and `prices` (its table or its key)."""
    found: dict[str, int] = {}
    table = ""
    for n, line in enumerate(text.splitlines(), 1):
        header = _TABLE.match(line)
        if header:
            table = header.group(1)
            if table == "prices":
                found.setdefault("prices", n)
            continue
        m = _KEY.match(line)
        if m and (table == "" or table in _TABLES):
            found.setdefault(next(g for g in m.groups() if g is not None), n)
    return found


def _set_twice(text: str, line: int) -> Optional[str]:
    """"key is set twice ..." when the TOML error at line is a key already set in the same table."""
    table, seen = "", dict[tuple[str, str], int]()
    for n, raw in enumerate(text.splitlines()[:line], 1):
        header = _TABLE.match(raw)
        if header:
            table = header.group(1)
            continue
        m = _KEY.match(raw)
        if m:
            key = (table, next(g for g in m.groups() if g is not None))
            if n == line and key in seen:
                return f"{key[1]} is set twice (first on line {seen[key]}): keep one"
            seen.setdefault(key, n)
    return None


def _check_type(name: str, value: Any, where: str) -> Any:
    default = getattr(Settings(), name)
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {name} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def parse_config(text: str, where: str = CONFIG_FILE) -> Settings:
    """Settings from TOML text. Keys may sit at top level or in [agent], [train], [limits], [data]
    tables. An error names the file and the line of the key: `forgegit.toml:12: patience must be >= 1, got 0`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if message.endswith("(at end of document)"):
            message = message.replace("(at end of document)", f"(at line {max(1, len(text.splitlines()))}, column {len((text.splitlines() or [''])[-1]) + 1})")
        at = _TOML_AT.search(message)
        twice = _set_twice(text, int(at.group(1))) if at else None
        if twice:
            raise ConfigError(f"{where}:{at.group(1) if at else ''}: {twice}") from None
        if at:
            raise ConfigError(f"{where}:{at.group(1)}: {message[:at.start()]} (column {at.group(2)})") from None
        raise ConfigError(f"{where}: {message}") from None
    lines = key_lines(text)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in _TABLES:
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, value in flat.items():
        place = f"{where}:{lines[key]}" if key in lines else where
        if key not in _TYPES:
            close = [k for k in _TYPES if k.startswith(key[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{place}: unknown key {key!r}{hint}")
        values[key] = _check_type(key, value, place)
    settings = Settings(**values)
    validate(settings, where, lines.get)
    return settings


def validate(s: Settings, where: str = "settings", line_of: Optional[LineOf] = None) -> None:
    """Range checks that apply however a value was set; the message names the key (and its line)."""

    def fail(key: str, message: str) -> None:
        line = line_of(key) if line_of else None
        raise ConfigError(f"{where}{f':{line}' if line else ''}: {message}")

    positive = {"max_turns": s.max_turns, "concurrency": s.concurrency, "memory_mb": s.memory_mb, "max_output": s.max_output,
                "disk_mb": s.disk_mb}
    for name, v in positive.items():
        if v < 1:
            fail(name, f"{name} must be at least 1, got {v}")
    for name in ("max_tokens", "optimizer_max_tokens", "context_window", "epochs", "batch_size", "budget_tokens",
                 "optimizer_context_tokens"):
        if getattr(s, name) < 0:
            fail(name, f"{name} must be >= 0{' (0: not set)' if 'tokens' in name or name == 'context_window' else ''}, "
                       f"got {getattr(s, name)}")
    for name in ("patience", "max_actions"):
        if getattr(s, name) < 1:
            fail(name, f"{name} must be >= 1, got {getattr(s, name)}")
    if s.budget_usd < 0:
        fail("budget_usd", f"budget_usd must be >= 0 (0: no limit), got {s.budget_usd}")
    if s.conversation_kb < 0:
        fail("conversation_kb", f"conversation_kb must be >= 0 (0 stores no conversation), got {s.conversation_kb}")
    if s.timeout <= 0:
        fail("timeout", f"timeout must be positive, got {s.timeout}")
    if s.tool_choice not in ("", "auto", "required", "none"):
        fail("tool_choice", f"tool_choice must be auto, required, none or empty (send none), got {s.tool_choice!r}")
    if s.tool_timeout <= 0:
        fail("tool_timeout", f"tool_timeout must be positive, got {s.tool_timeout}")
    if s.sandbox not in ("strict", "unsafe"):
        fail("sandbox", f"sandbox must be strict or unsafe, got {s.sandbox!r}")
    if s.gate not in ("mcnemar", "bootstrap", "delta", "no-worse"):
        fail("gate", f"gate must be mcnemar, bootstrap, delta or no-worse, got {s.gate!r}")
    if not 0 < s.alpha < 1:
        fail("alpha", f"alpha must be between 0 and 1, got {s.alpha}")
    from .cost import _override_prices
    try:  # a malformed [prices] entry would otherwise fail only after the first paid model call
        _override_prices(s.prices)
    except ForgegitError as exc:
        fail("prices", str(exc))


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
    return parse_config(text, _display(p))


def _display(p: Path) -> str:
    """p as the user would type it: relative to the current directory when inside it."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _inline(value: dict[str, Any]) -> Any:
    """A dict as a TOML inline table (nested dicts too), so it never opens a [table] that later keys fall into."""
    import tomlkit
    table = tomlkit.inline_table()
    for k, v in value.items():
        table[k] = _inline(v) if isinstance(v, dict) else v
    return table


PRICES_EXAMPLE = 'prices = { "my-model" = { prompt = 0.5, completion = 1.5, cached = 0.25 } }'


def render_config(settings: Optional[Settings] = None) -> str:
    """A forgegit.toml with every key documented (what `forgegit init` writes), written with tomlkit.

    A key at its default is written commented out (`# epochs = 5`), so a key a user appends or
    uncomments is never set twice; every key is top-level (`prices` an inline table), so nothing
    appended at the end lands inside a table; each commented line is valid TOML once uncommented."""
    import tomlkit
    s = settings or Settings()
    defaults = Settings()
    doc = tomlkit.document()
    for line in ("forgegit configuration. Every key is optional: each is shown at its default, commented out;",
                 "uncomment a line (or add one anywhere) to change it. CLI flags override these values.",
                 "The endpoint comes from the OpenAI SDK's own variables: OPENAI_BASE_URL and OPENAI_API_KEY",
                 "(OpenAI, Azure, vLLM, Ollama, llama.cpp server all work)."):
        doc.add(tomlkit.comment(line))
    for f in dataclasses.fields(Settings):
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(f.metadata["doc"]))
        value = getattr(s, f.name)
        if f.name == "prices":
            doc.add(tomlkit.comment("For example (cached is optional; without it a cached token costs the prompt rate):"))
            if not value:
                doc.add(tomlkit.comment(PRICES_EXAMPLE))
                continue
            doc.add(f.name, _inline(value))
        elif value == getattr(defaults, f.name):
            doc.add(tomlkit.comment(tomlkit.dumps({f.name: value}).strip()))
        else:
            doc.add(f.name, value)
    return tomlkit.dumps(doc)
