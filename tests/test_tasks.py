"""Task files: what a user sees when their JSONL is fine, mapped, or broken."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from forgegit import demo
from forgegit.tasks import TaskFileError, load_tasks, parse_tasks


def write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "tasks.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_tasks_load_with_ids_and_extra_fields_kept(tmp_path: Path) -> None:
    p = write(tmp_path, [json.dumps({"id": "a", "question": "1+1?", "answer": 2, "subject": "arith"}),
                         "", json.dumps({"question": "2+2?", "answer": "4"})])
    ts = load_tasks(p)
    assert [t.id for t in ts.tasks] == ["a", "line-3"]
    assert ts.tasks[0].answer == "2" and ts.tasks[0].fields == {"subject": "arith"}
    assert len(ts.sha256) == 64


def test_field_mapping_reads_other_field_names(tmp_path: Path) -> None:
    p = write(tmp_path, [json.dumps({"problem": "x?", "solution": "42", "level": 3})])
    ts = load_tasks(p, "problem", "solution")
    assert ts.tasks[0].question == "x?" and ts.tasks[0].answer == "42" and ts.tasks[0].fields == {"level": 3}
    assert ts.sha256 != load_tasks(p, "problem", "level").sha256  # the mapping is part of the identity


@pytest.mark.parametrize("lines,message", [
    (['{"question": "q", "answer": "a"}', "{not json"], "tasks.jsonl:2: not valid JSON"),
    (['["a list"]'], "tasks.jsonl:1: expected a JSON object"),
    (['{"question": "q"}'], "tasks.jsonl:1: missing field 'answer'"),
    (['{"id": 1, "question": "q", "answer": "a"}', '{"id": 1, "question": "q", "answer": "a"}'],
     "tasks.jsonl:2: duplicate task id '1' (first on line 1)"),
    ([""], "no tasks"),
])
def test_malformed_task_file_names_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(TaskFileError) as err:
        load_tasks(write(tmp_path, lines))
    assert message in str(err.value)


def test_missing_task_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="task file not found"):
        load_tasks(tmp_path / "nope.jsonl")


def test_shards_partition_the_tasks_deterministically(tmp_path: Path) -> None:
    p = write(tmp_path, [json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(10)])
    ts = load_tasks(p)
    shards = [ts.shard(k, 3) for k in (1, 2, 3)]
    ids = [t.id for s in shards for t in s.tasks]
    assert sorted(ids) == sorted(t.id for t in ts.tasks) and len(ids) == 10
    assert len({s.sha256 for s in shards}) == 3
    assert ts.sample(4, seed=1).tasks == ts.sample(4, seed=1).tasks


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_either_parse_or_raise_a_task_file_error(data: bytes) -> None:
    """Property: garbage never escapes as a traceback-worthy exception."""
    try:
        ts = parse_tasks(data, "f.jsonl")
    except TaskFileError as exc:
        assert str(exc).startswith("f.jsonl")
    else:
        assert len(ts) >= 1


# --------------------------------------------------------------------------- checked before any model call


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"more": value}
    return value


@pytest.mark.parametrize("line, message", [
    (json.dumps({"question": "q", "answer": "a", "meta": nested(600)}), "tasks.jsonl:2: not valid JSON (nested too deeply"),
    ('{"question": "q", "answer": "a", "meta": ' + "[" * 100000 + "]" * 100000 + "}", "tasks.jsonl:2: not valid JSON (nested too deeply"),
    (json.dumps({"question": "q", "answer": "a", "notes": "x" * (2 << 20)}), "tasks.jsonl:2: the line is 2,097,197 bytes long (a task line may have at most 1,048,576)"),
    (json.dumps({"question": ["q"], "answer": "a"}), "tasks.jsonl:2: field 'question' must be a string or a number, got a list"),
    (json.dumps({"question": "q", "answer": {"value": 1}}), "tasks.jsonl:2: field 'answer' must be a string, a number or true/false, got an object"),
    (json.dumps({"id": {"x": 1}, "question": "q", "answer": "a"}), "tasks.jsonl:2: field 'id' must be a string or an integer, got an object"),
])
def test_a_task_line_too_deep_too_big_or_of_the_wrong_type_is_refused_at_loading(
        tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(TaskFileError) as err:
        load_tasks(write(tmp_path, ['{"question": "q0", "answer": "a0"}', line]))
    assert message in str(err.value)


@pytest.mark.faults
def test_a_deeply_nested_task_line_fails_before_any_model_call_is_paid_for(
        tmp_path: Path, scripted: Any, record_property: Any) -> None:
    """A task 600 levels deep used to load, cost every model call of the evaluation, then break the note."""
    repo = demo.make_repo(tmp_path / "repo")
    tasks = [dict(t) for t in demo.TASKS]
    tasks[3]["meta"] = nested(600)
    (repo / "tasks" / "deep.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    server = scripted(demo.make_script())
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run([sys.executable, "-m", "forgegit", "eval", "--tasks", "tasks/deep.jsonl"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    record_property("fault", "a task line nested 600 deep")
    record_property("injected", 1)
    record_property("data_lost", 0)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("forgegit: error: "), lines
    assert lines[0].endswith("tasks/deep.jsonl:4: not valid JSON (nested too deeply: 601 levels, at most 32)"), lines
    assert server.calls == 0
