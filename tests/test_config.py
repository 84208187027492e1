"""forgegit.toml: defaults, documented template, and clear errors for bad files."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from forgegit.config import ConfigError, Settings, parse_config, render_config


def test_rendered_config_documents_every_key_and_parses_back() -> None:
    text = render_config()
    assert parse_config(text) == Settings()
    for name in Settings.__dataclass_fields__:
        assert f"{name} =" in text or name == "prices"


def test_tables_and_top_level_keys_both_work() -> None:
    s = parse_config('model = "m"\n[train]\nepochs = 3\nmin_delta = 1\n[limits]\ntool_timeout = 2\n')
    assert (s.model, s.epochs, s.min_delta, s.tool_timeout) == ("m", 3, 1.0, 2.0)


@pytest.mark.parametrize("text,message", [
    ("model = ", "forgegit.toml:1: Invalid value"),
    ("modle = 'x'", "unknown key 'modle' (did you mean 'model'?)"),
    ("epochs = 'three'", "epochs must be int, got str"),
    ("python_tool = 1", "python_tool must be bool"),
    ("gate = 'vibes'", "gate must be mcnemar, bootstrap, delta or no-worse"),
    ("concurrency = 0", "concurrency must be at least 1"),
    ("timeout = 0", "timeout must be positive"),
    ("max_tokens = -1", "forgegit.toml:1: max_tokens must be >= 0 (0: not set), got -1"),
    ("tool_choice = 'always'", "tool_choice must be auto, required, none or empty"),
])
def test_bad_config_is_one_line_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_ignore_unset_flags() -> None:
    s = Settings(model="a").with_overrides(model=None, epochs=9)
    assert (s.model, s.epochs) == ("a", 9)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError:
        pass


def test_model_requests_are_bounded_by_default_with_room_for_the_optimizer(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forgegit.workspace import Workspace
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    s = Settings()
    assert (s.max_tokens, s.optimizer_max_tokens, s.tool_choice, s.context_window) == (1024, 4096, "auto", 0)
    assert s.timeout == 300.0
    ws = Workspace(repo, repo, parse_config("max_tokens = 256\ntimeout = 30\ncontext_window = 8192"))
    agent, optimizer = ws.llm(), ws.llm(optimizer=True)
    assert (agent.max_tokens, agent.timeout, agent.context_window, agent.role) == (256, 30.0, 8192, "agent")
    assert (optimizer.max_tokens, optimizer.role) == (4096, "optimizer")


def test_sandbox_limits_of_default_settings_are_the_sandboxs_defaults() -> None:
    """A default forgegit.toml gives the sandbox exactly `Limits()`, and `render_config` documents those values."""
    from forgegit.evaluation import sandbox_limits
    from forgegit.sandbox import Limits

    assert sandbox_limits(Settings()) == Limits()
    text = render_config()
    limits = Limits()
    for key, value in (("tool_timeout", limits.timeout), ("memory_mb", limits.memory_mb),
                       ("max_output", limits.max_output), ("disk_mb", limits.disk_mb)):
        assert f"{key} = {value}" in text


@pytest.mark.parametrize("text,message", [
    ("# a comment\nmodel = 'm'\n\n[train]\nepochs = 3\npatience = 0\n", "forgegit.toml:6: patience must be >= 1, got 0"),
    ("max_actions = 0\n", "forgegit.toml:1: max_actions must be >= 1, got 0"),
    ("model = 'm'\nepochs = -1\n", "forgegit.toml:2: epochs must be >= 0, got -1"),
    ("\n\nalpha = 1.5\n", "forgegit.toml:3: alpha must be between 0 and 1, got 1.5"),
    ("model = 'm'\n[limits]\ntool_timeout = 'soon'\n", "forgegit.toml:3: tool_timeout must be float, got str 'soon'"),
    ("model = 'm'\nmodle = 'x'\n", "forgegit.toml:2: unknown key 'modle'"),
    ("model = 'm'\n[prices]\nx = 5\n", "forgegit.toml:2: [prices] 'x' must be"),
    ("epochs = 2\nmodel = 'm'\nepochs = 3\n", "forgegit.toml:3: epochs is set twice (first on line 1)"),
    ("model = 'm'\n[train\n", "forgegit.toml:2: "),
])
def test_a_bad_value_names_the_file_line_and_key(text: str, message: str) -> None:
    """A bad forgegit.toml value says `forgegit.toml:LINE: KEY must be ..., got VALUE`, not a list of keys."""
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert str(err.value).startswith(message), str(err.value)


def test_scaffold_config_takes_a_key_appended_at_its_end_and_its_examples_uncomment_to_valid_toml() -> None:
    """`forgegit init`'s forgegit.toml: a key appended at the end is a setting (not a [prices] entry), and
    uncommenting any example line, the [prices] one too, gives valid TOML that sets that key."""
    text = render_config()
    assert parse_config(text) == Settings()
    assert "[prices]" not in text.replace("# ", "")  # no table that later keys would fall into
    appended = parse_config(text + "epochs = 1\npatience = 1\n")
    assert (appended.epochs, appended.patience) == (1, 1)
    examples = [line for line in text.splitlines() if re.match(r"# [a-z_]+ = ", line)]
    assert len(examples) >= len(Settings.__dataclass_fields__)
    for line in examples:
        uncommented = text.replace(line + "\n", line[2:] + "\n", 1)
        parse_config(uncommented)  # valid TOML, a known key, a valid value
    priced = parse_config(text.replace("# prices = ", "prices = "))
    assert priced.prices == {"my-model": {"prompt": 0.5, "completion": 1.5, "cached": 0.25}}
    changed = render_config(Settings(epochs=9, prices={"m": {"prompt": 1, "completion": 2}}))
    assert parse_config(changed).epochs == 9 and parse_config(changed + "seed = 3\n").seed == 3
