"""`forgegit log --plot`: the learning curve shows what a reviewer needs (issue 14, item 16): the
validation curve, a legend entry for every kind of marker, a reverted score of 0 drawn whole, and no
two markers on the same spot."""
from __future__ import annotations

from pathlib import Path

import pytest

from forgegit import report
from forgegit.records import ActionRecord, EpochRecord, GateDecision, RunRecord

matplotlib = pytest.importorskip("matplotlib")

A, B, C, D, E = (ch * 40 for ch in "abcde")


def run_with(val_file: str = "val.jsonl") -> RunRecord:
    """Baseline 0.25; epoch 1 kept (0.5), epoch 2 reverted at 0.0, epoch 3 kept (0.75), epoch 4 no edit."""
    add = [ActionRecord("add", "f", True)]
    return RunRecord(
        run_id="plot", branch="forgegit/train/plot", base_branch="main", base_commit=A, model="m",
        optimizer_model="m", tasks_file="train.jsonl", val_file=val_file, test_file="", baseline_score=0.25,
        baseline_val_score=0.2,
        epochs=[
            EpochRecord(1, A, B, None, add, "", 0.25, 0.5, True, GateDecision(True, "delta", 0.25), val_score=0.4),
            EpochRecord(2, B, C, D, add, "", 0.5, 0.0, False, GateDecision(False, "delta", -0.5), val_score=0.4),
            EpochRecord(3, D, E, None, add, "", 0.5, 0.75, True, GateDecision(True, "delta", 0.25), val_score=0.6),
            EpochRecord(4, E, None, None, [], "", 0.75, None, False, val_score=0.6),
        ])


def legend_texts(ax: object) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]  # type: ignore[attr-defined]


def test_the_plot_shows_the_validation_curve_and_a_legend_entry_per_marker(tmp_path: Path) -> None:
    """The PNG has the training line, the validation line (one point per epoch and the baseline) and
    legend entries for the baseline, kept, reverted and no-edit markers."""
    fig = report.figure(run_with())
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "score"
    labels = legend_texts(ax)
    assert sorted(labels) == sorted(["training score (kept)", "validation (val.jsonl)", "baseline", "kept epoch",
                                     "reverted epoch", "no edit"])
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["training score (kept)"].get_ydata()) == [0.25, 0.5, 0.5, 0.75, 0.75]
    assert list(lines["validation (val.jsonl)"].get_ydata()) == [0.2, 0.4, 0.4, 0.6, 0.6]
    scatters = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert scatters["kept epoch"] == [[1, 0.5], [3, 0.75]]
    assert scatters["reverted epoch"] == [[2, 0.0]]
    assert scatters["no edit"] == [[4, 0.75]]
    matplotlib.pyplot.close(fig)
    png = report.plot(run_with(), tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reverted_score_of_zero_is_drawn_whole_and_no_markers_share_a_spot() -> None:
    """Scores of 0 and 1 sit inside the axes (not clipped at the frame), and no two markers of
    different series are drawn at the same point."""
    fig = report.figure(run_with())
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low < 0 and high > 1
    assert all(not c.get_clip_on() for c in ax.collections)
    spots: list[tuple[float, float]] = []
    for c in ax.collections:
        spots += [(round(x, 3), round(y, 3)) for x, y in c.get_offsets().tolist()]
    for line in ax.get_lines():
        if line.get_marker() not in (None, "None", ""):
            spots += [(round(float(x), 3), round(float(y), 3)) for x, y in zip(line.get_xdata(), line.get_ydata())]
    assert len(spots) == len(set(spots)), spots
    matplotlib.pyplot.close(fig)


def test_without_a_validation_set_the_plot_says_so_instead_of_drawing_the_line_twice() -> None:
    """When validation is the training set the title says so, and no second identical line is drawn."""
    fig = report.figure(run_with(val_file="train.jsonl"))
    ax = fig.axes[0]
    assert "validation = training set" in ax.get_title()
    assert not any(t.startswith("validation") for t in legend_texts(ax))
    matplotlib.pyplot.close(fig)
