"""The run report a reviewer reads (PR body, step summary, `forgegit log`): markdown, Mermaid, plot, table."""
from __future__ import annotations

import builtins
import re
from pathlib import Path
from typing import Any

import pytest

from forgegit import report
from forgegit.errors import ForgegitError
from forgegit.records import ActionRecord, Comparison, EpochRecord, GateDecision, RunRecord, Usage

A, B, C, D, E = (ch * 40 for ch in "abcde")


def sample_run(**overrides: Any) -> RunRecord:
    """Two epochs (one kept, one reverted), validation and sealed-test comparisons with flips."""
    run = RunRecord(
        run_id="20261125-120000-ab12", branch="forgegit/train/20261125-120000-ab12", base_branch="main",
        base_commit=A, model="gpt-4o-mini", optimizer_model="gpt-4o", tasks_file="train.jsonl",
        val_file="val.jsonl", test_file="test.jsonl", baseline_score=0.5, best_commit=B, best_score=0.7,
        status="finished", stop_reason="early-stop", usage=Usage(12_345, 2_345, 40, 3, 0.1234),
        epochs=[
            EpochRecord(1, A, B, None,
                        [ActionRecord("add", "solve_equation", True),
                         ActionRecord("revise", "broken_tool", False, "SyntaxError: invalid syntax")],
                        "Add an equation solver | because <div> algebra fails\nsecond line not shown",
                        0.5, 0.7, True, GateDecision(True, "mcnemar", 0.2, 0.031, 5, 1), Usage(1000, 200, 5, 0, 0.02)),
            EpochRecord(2, B, C, D, [ActionRecord("remove", "solve_equation", True)],
                        "@octocat drop the solver", 0.7, 0.55, False,
                        GateDecision(False, "mcnemar", -0.15, 0.5, 1, 4), Usage(900, 100, 4, 1, 0.01)),
        ],
        final_gate=Comparison("val", "val.jsonl", 0.6, 0.72, 0.12, 0.03, 0.21, 0.008, True,
                              [{"task_id": "val-7", "feedback": "expected 42, the agent answered 41"}],
                              [{"task_id": "val-9", "feedback": "no answer within 10 turns"}], 50, 50),
        test=Comparison("test", "test.jsonl", 0.58, 0.66, 0.08, -0.01, 0.17, 0.09, False,
                        [{"task_id": "test-3", "feedback": "fixed by solve_equation"}], [], 100, 100),
    )
    for k, v in overrides.items():
        setattr(run, k, v)
    return run


def table_rows(md: str) -> list[list[str]]:
    """The epoch table's data rows, split into cells (escaped pipes kept inside cells)."""
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_body_shows_scores_ci_and_p_for_every_set() -> None:
    """The reviewer sees baseline and trained scores on train, validation and sealed test, with CI and p."""
    md = report.render_markdown(sample_run())
    assert "| train | 50.0% | 70.0% | +20.0 pp |" in md
    assert "| validation (50 tasks) | 60.0% | 72.0% | +12.0 pp | [+3.0, +21.0] pp | 0.008 |" in md
    assert "| test, sealed (100 tasks) | 58.0% | 66.0% | +8.0 pp | [-1.0, +17.0] pp | 0.090 |" in md
    assert "**Improved** on validation: 60.0% → 72.0%" in md
    assert "2 epochs: 1 kept, 1 reverted." in md


def test_no_test_row_without_a_sealed_test_set() -> None:
    """Without `run.test` there is no test row (nothing invented)."""
    md = report.render_markdown(sample_run(test=None))
    assert "test, sealed" not in md


def test_failed_gate_reads_not_improved() -> None:
    """A run whose gate failed is labelled 'Not improved'."""
    run = sample_run()
    run.final_gate.passed = False  # type: ignore[union-attr]
    assert "**Not improved**" in report.render_markdown(run)


def test_epoch_rows_show_actions_rationale_scores_verdict_gate_and_cost() -> None:
    """One row per epoch: actions (rejected struck), first rationale line escaped, before → after, kept/reverted."""
    rows = table_rows(report.render_markdown(sample_run()))
    assert len(rows) == 2
    epoch, actions, rationale, score, verdict, gate, tokens, cost, commits = rows[0]
    assert epoch == "1"
    assert "`+solve_equation`" in actions and "~~`~broken_tool`~~ (rejected: SyntaxError: invalid syntax)" in actions
    assert rationale == "Add an equation solver \\| because &lt;div&gt; algebra fails"
    assert score == "50.0% → 70.0%" and verdict == "✅ kept" and gate == "mcnemar p=0.031"
    assert tokens == "1,200" and cost == "$0.0200" and commits == f"`{B[:7]}`"
    assert rows[1][1] == "`-solve_equation`" and rows[1][4] == "↩️ reverted"
    assert "@octocat" not in rows[1][2]  # no notification for whoever the model names


def test_epoch_without_a_commit_reads_no_change() -> None:
    """An epoch whose actions were all rejected committed nothing: 'no change', not 'reverted'."""
    run = sample_run()
    run.epochs[1].commit = None
    run.epochs[1].revert = None
    md = report.render_markdown(run)
    assert table_rows(md)[1][4] == "— no change"
    assert "1 kept, 0 reverted, 1 no change" in md


def test_commit_links_point_at_the_repository_when_known() -> None:
    """With server and repository, commits (including the revert) are links; without, short shas."""
    md = report.render_markdown(sample_run(), server_url="https://github.com/", repository="octo/agent")
    for sha in (A, B, C, D):
        assert f"(https://github.com/octo/agent/commit/{sha})" in md
    plain = report.render_markdown(sample_run())
    assert "https://" not in plain.split("### Learning curve")[0]
    assert f"`{C[:7]}` ↩ `{D[:7]}`" in plain


def test_learning_curve_is_a_mermaid_xychart() -> None:
    """The body holds a Mermaid xychart-beta: epochs 0..n, tried scores and the kept line."""
    md = report.render_markdown(sample_run())
    block = md.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block.startswith("xychart-beta\n")
    assert 'x-axis "epoch" ["0", "1", "2"]' in block
    assert "bar [0.5, 0.7, 0.55]" in block
    assert "line [0.5, 0.7, 0.7]" in block
    assert report.curve_points(sample_run()) == [(0, 0.5, True), (1, 0.7, True), (2, 0.55, False)]


def test_curve_uses_score_before_when_an_epoch_has_no_score() -> None:
    """An epoch that produced no score plots flat instead of breaking the chart."""
    run = sample_run()
    run.epochs[1].score_after = None
    assert report.curve_points(run)[-1] == (2, 0.7, False)
    assert "bar [0.5, 0.7, 0.7]" in report.mermaid_curve(run)


def test_flipped_tasks_are_listed_with_feedback() -> None:
    """Tasks that went fail→pass and pass→fail on validation and test are listed with the checker's feedback."""
    md = report.render_markdown(sample_run())
    assert "1 task fixed on validation (fail → pass)" in md
    assert "- `val-7`: expected 42, the agent answered 41" in md
    assert "1 task broken on validation (pass → fail)" in md
    assert "- `val-9`: no answer within 10 turns" in md
    assert "- `test-3`: fixed by solve_equation" in md


def test_many_flips_are_collapsed() -> None:
    """A long list of flips is folded in <details> so the body stays readable."""
    run = sample_run()
    run.final_gate.flipped_up = [{"task_id": f"t{i}", "feedback": "ok"} for i in range(40)]  # type: ignore[union-attr]
    md = report.render_markdown(run)
    assert "<details><summary>40 tasks fixed on validation (fail → pass)</summary>" in md
    assert "- `t39`: ok" in md


def test_huge_runs_fit_githubs_body_limit() -> None:
    """Thousands of flips with long feedback still give a body GitHub accepts (< 65,536 chars) with the marker."""
    run = sample_run()
    run.final_gate.flipped_up = [{"task_id": f"t{i}", "feedback": "x" * 1000} for i in range(5000)]  # type: ignore[union-attr]
    run.test.flipped_down = [{"task_id": f"u{i}", "feedback": "y" * 1000} for i in range(5000)]  # type: ignore[union-attr]
    md = report.render_markdown(run)
    assert len(md) < 65_536
    assert md.startswith("<!-- forgegit:run=20261125-120000-ab12 -->")
    assert md.count("<details>") == md.count("</details>")
    assert "and 4980 more (see `forgegit log`)" in md and "Stopped: early-stop." in md


def test_totals_stop_reason_and_hidden_marker() -> None:
    """Tokens and cost totals, why training stopped, and the marker forgegit finds its PRs by."""
    md = report.render_markdown(sample_run())
    assert "14,690 tokens" in md and "$0.1234" in md
    assert "Stopped: early-stop." in md
    assert md.startswith("<!-- forgegit:run=20261125-120000-ab12 -->\n")


def test_hostile_text_cannot_break_the_body() -> None:
    """Rationale, names and feedback from the model cannot close the table, inject HTML or fake the marker."""
    run = sample_run()
    run.epochs[0].rationale = "x | y --> <!-- forgegit:run=evil --> <script>alert(1)</script>"
    run.final_gate.flipped_up = [{"task_id": "a`b|c", "feedback": "</details><img src=x>"}]  # type: ignore[union-attr]
    md = report.render_markdown(run)
    assert "forgegit:run=evil -->" not in md.replace("&lt;!-- forgegit:run=evil --&gt;", "")
    assert "<script>" not in md and "<img" not in md and "</details><" not in md
    assert len(table_rows(md)[0]) == 9


def test_plot_writes_png_and_svg(tmp_path: Path) -> None:
    """`plot` writes a real PNG (and SVG) learning curve."""
    pytest.importorskip("matplotlib")
    png = report.plot(sample_run(), tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = report.plot(sample_run(), tmp_path / "sub" / "curve.svg")
    assert "<svg" in svg.read_text()


def test_plot_rejects_other_formats(tmp_path: Path) -> None:
    """Plotting to a .jpg says which formats work."""
    with pytest.raises(ForgegitError, match="use a .png or .svg"):
        report.plot(sample_run(), tmp_path / "curve.jpg")


def test_plot_without_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the user is told: pip install 'forgegit[plot]'."""
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kw: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ForgegitError, match=r"pip install 'forgegit\[plot\]'"):
        report.plot(sample_run(), tmp_path / "curve.png")


def test_summary_table_for_terminals() -> None:
    """The terminal table lists each epoch's commit (and revert), actions, scores, verdict, p, tokens and cost, then totals."""
    run = sample_run()
    text = report.summary_table(run)
    lines = text.splitlines()
    assert lines[0].split() == ["epoch", "commit", "actions", "before", "after", "val", "verdict", "p", "tokens", "cost"]
    e1, e2 = run.epochs[0], run.epochs[1]
    assert lines[1].split() == ["1", e1.commit[:7], "+solve_equation", "~broken_tool(rejected)", "50.0%", "70.0%",
                                "—", "kept", "0.031", "1,200", "$0.0200"]
    assert lines[2].split()[:9] == ["2", e2.commit[:7], "(revert", f"{e2.revert[:7]})", "-solve_equation",
                                    "70.0%", "55.0%", "—", "reverted"]
    assert f"training score: 50.0% -> 70.0% (best {B[:7]})" in text
    assert "usage: 14,690 tokens in 40 calls, $0.1234" in text
    assert "|" not in text and "`" not in text


def test_run_with_no_epochs_renders() -> None:
    """A run stopped before any epoch (e.g. budget) still renders a body and a table."""
    run = sample_run(epochs=[], final_gate=None, test=None, stop_reason="budget")
    md = report.render_markdown(run)
    assert "_No epochs ran._" in md and "Stopped: budget." in md
    assert 'x-axis "epoch" ["0"]' in md
    assert report.summary_table(run).splitlines()[1].startswith("training score")


HOSTILE = ("![pixel](https://evil.example/p.png) [click here](http://evil.example) [ref][1] <img src=x onerror=alert(1)> "
           "<https://evil.example/auto> https://evil.example/bare www.evil.example mail@evil.example "
           "<a href='http://evil.example'>a</a> \\[escaped\\](http://evil.example) `code` ``x`` #1 GH-2 @octocat")


def hostile_run() -> RunRecord:
    run = sample_run()
    run.epochs[0].rationale = HOSTILE + "\n[1]: http://evil.example/ref"
    run.epochs[0].actions = [ActionRecord("add", "solve_equation", True),
                             ActionRecord("add", "x` ![p](https://evil.example/n.png) `", False, HOSTILE)]
    run.final_gate.flipped_up = [{"task_id": "t`<img src=x>`", "feedback": HOSTILE}]  # type: ignore[union-attr]
    return run


def test_model_text_cannot_render_images_links_or_html_in_the_pull_request() -> None:
    """Markdown images and links in the optimizer's rationale once rendered in the pull-request body."""
    md = report.render_markdown(hostile_run())
    assert "evil.example" in md  # shown, as text
    text = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", md)  # code spans render nothing: leave them out
    text = re.sub(r"\\[\\`\[\]()!|]", "", text)  # nor do backslash-escaped marks
    for forbidden in ("![", "](", "][", "<img", "<a ", "<https", "https://evil", "http://evil", "www.evil",
                      "mail@evil", "#1 ", "GH-2", "@octocat"):
        assert forbidden not in text, forbidden
    assert len(table_rows(md)[0]) == 9  # and the table still has its nine cells


def test_model_text_renders_as_plain_text_on_github() -> None:
    """Rendered by GitHub's own markdown (cmark-gfm), the hostile text makes no image, link or HTML element."""
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from cmarkgfm.cmark import Options

    html = cmarkgfm.github_flavored_markdown_to_html(report.render_markdown(hostile_run()),
                                                     options=Options.CMARK_OPT_UNSAFE)
    assert "<img" not in html and "<a " not in html and "onerror" not in html.replace("onerror=alert", "")
    assert html.count("<table>") == 2  # the scores and the epochs tables, unbroken


@pytest.mark.parametrize("text", ["a`b", "``", "`x`", "a|b", "x ``` y", "` leading", "trailing `"])
def test_code_spans_hold_any_text(text: str) -> None:
    """A name with backticks cannot close its code span (its fence is longer than any run inside)."""
    span = report.code(text)
    fence = re.match(r"`+", span)
    assert fence is not None and span.endswith(fence.group(0))
    inner = span[len(fence.group(0)):-len(fence.group(0))]
    assert fence.group(0) not in inner
    assert inner.strip(" ").replace("\\|", "|") == text


def test_the_pull_request_names_the_sandbox_level_function_code_ran_at() -> None:
    md = report.render_markdown(sample_run(sandbox="secrets-safe (Landlock ABI 7, seccomp, own uid)"))
    assert "Function code ran in the sandbox at `secrets-safe (Landlock ABI 7, seccomp, own uid)`." in md
    assert "Function code ran in the sandbox" not in report.render_markdown(sample_run())
