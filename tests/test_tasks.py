"""Task files: what a user sees when their JSONL is fine, mapped, or broken."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

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
