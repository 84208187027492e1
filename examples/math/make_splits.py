"""Regenerate train/val/test.jsonl: a fixed-seed sample of MATH-500, stratified by subject (run: python make_splits.py)."""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "data" / "math500" / "test.jsonl"
SEED = 2024
SIZES = {"train": 40, "val": 40, "test": 100}


def load(path: Path) -> list[dict[str, object]]:
    """The source problems, each with an `id` (its MATH unique_id)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"id": r["unique_id"], **r} for r in rows]


def stratified(rows: list[dict[str, object]], k: int, rng: random.Random) -> list[dict[str, object]]:
    """k problems spread evenly over a subject-sorted, shuffled order (each subject in proportion)."""
    keyed = sorted(rows, key=lambda r: (str(r["subject"]), rng.random()))
    return [keyed[(j * len(keyed)) // k] for j in range(k)]


def splits(rows: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    """Deal the stratified sample into the splits in turn, so every split covers every subject."""
    total = sum(SIZES.values())
    rng = random.Random(SEED)
    sample = stratified(rows, total, rng)
    pattern = [name for name, size in SIZES.items() for _ in range(size * 9 // total)]  # 2 train, 2 val, 5 test
    assert len(pattern) == 9 and total % 9 == 0
    out: dict[str, list[dict[str, object]]] = {name: [] for name in SIZES}
    for j, row in enumerate(sample):
        out[pattern[j % 9]].append(row)
    for part in out.values():
        rng.shuffle(part)
    return out


def write(name: str, rows: list[dict[str, object]]) -> None:
    """One JSONL file beside this script."""
    (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    for name, rows in splits(load(SOURCE)).items():
        write(name, rows)
        subjects = sorted({str(r["subject"]) for r in rows})
        print(f"{name}.jsonl: {len(rows)} problems, {len(subjects)} subjects")


if __name__ == "__main__":
    main()
