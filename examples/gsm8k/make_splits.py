"""Regenerate train/val/test.jsonl: a fixed-seed sample of the bundled GSM8K test set (run: python make_splits.py)."""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "data" / "gsm8k" / "test.jsonl"
SEED = 2024
SIZES = {"train": 40, "val": 40, "test": 100}


def load(path: Path) -> list[dict[str, object]]:
    """The source problems, each with an `id` naming its line in the source file."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rows.append({"id": f"gsm8k-test-{lineno:04d}", **json.loads(line)})
    return rows


def splits(rows: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    """Disjoint random samples of SIZES, drawn with random.Random(SEED)."""
    picked = random.Random(SEED).sample(rows, sum(SIZES.values()))
    out, start = {}, 0
    for name, size in SIZES.items():
        out[name] = picked[start:start + size]
        start += size
    return out


def write(name: str, rows: list[dict[str, object]]) -> None:
    """One JSONL file beside this script."""
    (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    for name, rows in splits(load(SOURCE)).items():
        write(name, rows)
        print(f"{name}.jsonl: {len(rows)} problems")


if __name__ == "__main__":
    main()
