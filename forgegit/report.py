"""A training run rendered for people: markdown (PR body, step summary), Mermaid, plots, terminal table."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import ForgegitError
from .records import ActionRecord, Comparison, EpochRecord, RunRecord, Usage
from .workflow_commands import safe_text

if TYPE_CHECKING:  # matplotlib is the optional `plot` extra: imported when a plot is drawn
    from matplotlib.figure import Figure

MARKER_PREFIX = "<!-- forgegit:run="
FLIPS_OPEN_LIMIT = 5  # more flips than this are collapsed in <details>
FLIPS_SHOWN_LIMIT = 100  # never list more than this many flips per direction
FEEDBACK_LIMIT = 300
MAX_BODY = 60_000  # GitHub rejects issue/PR bodies over 65,536 characters

PLOT_SUFFIXES = (".png", ".svg")

_ACTION_SIGNS = {"add": "+", "revise": "~", "remove": "-"}


def marker(run_id: str) -> str:
    """The hidden marker that identifies forgegit's pull requests and their run."""
    return f"{MARKER_PREFIX}{run_id} -->"


# --- formatting helpers ---------------------------------------------------------------


def pct(score: Optional[float]) -> str:
    """A score in [0, 1] as a percentage, '—' when unknown."""
    return "—" if score is None else f"{score * 100:.1f}%"


def pp(delta: Optional[float]) -> str:
    """A score difference in percentage points, signed."""
    return "—" if delta is None else f"{delta * 100:+.1f} pp"


def ci(low: Optional[float], high: Optional[float]) -> str:
    """A confidence interval in percentage points."""
    if low is None or high is None:
        return "—"
    return f"[{low * 100:+.1f}, {high * 100:+.1f}] pp"


def pval(p: Optional[float]) -> str:
    """A p-value, compact."""
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: Optional[float]) -> str:
    """'p=0.012', 'p<0.001' or 'p=—'."""
    text = pval(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def money(cost: float) -> str:
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


def tokens(usage: Usage) -> str:
    return f"{usage.total_tokens:,}"


def cached_text(usage: Usage, lead: str = "") -> str:
    """' (1,234 prompt tokens cached by the provider)' when a provider's prompt cache served any."""
    if not usage.cached_tokens:
        return ""
    share = usage.cached_tokens / usage.prompt_tokens if usage.prompt_tokens else 0.0
    return f"{lead} ({usage.cached_tokens:,} prompt tokens cached by the provider, {share:.0%})"


def short(sha: Optional[str]) -> str:
    return (sha or "")[:7]


_ZWSP = "\u200b"
_MD_PUNCTUATION = re.compile(r"([\\`\[\]()!|])")  # the ASCII marks that make links, images, code spans, cells
_URL_START = re.compile(r"(?i)(://|\bwww(?=\.)|\b(?:mailto|xmpp)(?=:))")
_REFERENCE = re.compile(r"(?i)(#|\bgh-|@)(?=\w)")


def _unlink(m: re.Match[str]) -> str:
    return _ZWSP + m.group(1) if m.group(1) == "://" else m.group(1) + _ZWSP


def escape_md(text: str) -> str:
    """Model or function text as plain markdown text, safe inside a table cell or a list item.

    One line; no HTML (`<` `>` `&` become entities, so no tag, comment or `<autolink>`); the ASCII
    marks that make links, images, code spans and cell breaks (`[` `]` `(` `)` `!` `` ` `` `|` `\\`)
    are backslash-escaped; bare URLs (`https://`, `www.`), @mentions and `#123`
    / `GH-123` references are split with a zero-width space, so GitHub does not link them either."""
    one_line = " ".join(str(text).split())
    unlinked = _REFERENCE.sub(lambda m: m.group(1) + _ZWSP, _URL_START.sub(_unlink, one_line))
    return _MD_PUNCTUATION.sub(r"\\\1", html.escape(unlinked, quote=False))


def code(text: str) -> str:
    """Text as an inline code span that also survives a table cell: nothing in it renders as markdown.

    The fence is one backtick longer than the longest run of backticks inside, so the text cannot
    close it; `|` is escaped for tables (GitHub unescapes it inside code spans in a cell)."""
    body = " ".join(str(text).split()).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def first_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of text, shortened to limit characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def commit_link(sha: Optional[str], server_url: Optional[str], repository: Optional[str]) -> str:
    """A markdown link to a commit when the server is known, else its short sha in code."""
    if not sha:
        return "—"
    if server_url and repository:
        return f"[`{short(sha)}`]({server_url.rstrip('/')}/{repository}/commit/{sha})"
    return f"`{short(sha)}`"


# --- the learning curve ---------------------------------------------------------------


def curve_points(run: RunRecord) -> list[tuple[int, float, bool]]:
    """(epoch, score after that epoch, kept) from epoch 0 (the baseline) on; a failed epoch scores as before."""
    points = [(0, run.baseline_score, True)]
    for e in run.epochs:
        after = e.score_after if e.score_after is not None else e.score_before
        points.append((e.epoch, after, e.kept))
    return points


def kept_curve(run: RunRecord) -> list[float]:
    """The score of the kept functions after each epoch (what the branch holds)."""
    current = run.baseline_score
    out = [current]
    for epoch, score, kept in curve_points(run)[1:]:
        if kept:
            current = score
        out.append(current)
    return out


def _num(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".") or "0"


def mermaid_curve(run: RunRecord) -> str:
    """The learning curve as a Mermaid `xychart-beta`: tried score per epoch (bars) and the kept line."""
    points = curve_points(run)
    xs = ", ".join(f'"{e}"' for e, _, _ in points)
    tried = ", ".join(_num(s) for _, s, _ in points)
    kept = ", ".join(_num(s) for s in kept_curve(run))
    return "\n".join([
        "```mermaid",
        "xychart-beta",
        '    title "Training score per epoch (bars: tried, line: kept)"',
        f'    x-axis "epoch" [{xs}]',
        '    y-axis "score" 0 --> 1',
        f"    bar [{tried}]",
        f"    line [{kept}]",
        "```",
    ])


def val_curve(run: RunRecord) -> list[tuple[int, float]]:
    """(epoch, validation score of the branch after it) where known, from the baseline on."""
    points = [(0, run.baseline_val_score)] + [(e.epoch, e.val_score) for e in run.epochs]
    return [(x, y) for x, y in points if y is not None]


def figure(run: RunRecord) -> Figure:
    """The learning curve as a matplotlib Figure: the training score the branch holds (a line), each
    epoch's tried score (a green dot kept, a red cross reverted, a grey dot for no edit), and the
    branch's validation score (a dashed line) when validation is a set of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve_points(run)
    xs = [e for e, _, _ in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, kept_curve(run), color="tab:blue", linewidth=2, label="training score (kept)", zorder=2)
    ax.scatter([0], [run.baseline_score], marker="s", s=40, color="tab:blue", label="baseline", zorder=4, clip_on=False)
    groups = {"kept epoch": ("o", "tab:green", 48), "reverted epoch": ("X", "tab:red", 60), "no edit": ("o", "none", 56)}
    by_kind: dict[str, list[tuple[int, float]]] = {k: [] for k in groups}
    for e in run.epochs:
        score = e.score_after if e.score_after is not None else e.score_before
        by_kind[{"kept": "kept epoch", "reverted": "reverted epoch"}.get(verdict(e), "no edit")].append((e.epoch, score))
    for label, pts in by_kind.items():
        if pts:
            marker, color, size = groups[label]
            hollow = color == "none"  # no edit: an open circle around the line's point
            ax.scatter([x for x, _ in pts], [y for _, y in pts], marker=marker, facecolors=color, s=size, label=label,
                       zorder=5, clip_on=False, edgecolors="tab:gray" if hollow else "white", linewidths=1.5 if hollow else 0.8)
    val = val_curve(run)
    separate = bool(run.val_file) and run.val_file != run.tasks_file
    if val and separate:  # the same set would draw the training line again
        ax.plot([x + 0.06 for x, _ in val], [y for _, y in val], linestyle="--", marker="D", markersize=4,
                color="tab:purple", label=f"validation ({run.val_file})", zorder=3, clip_on=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(-0.05, 1.05)  # a score of 0 or 1 is drawn whole, not clipped at the frame
    ax.set_xlim(-0.3, max(xs) + 0.3)
    ax.set_xticks(xs)
    title = f"forgegit run {run.run_id}"
    ax.set_title(title + ("" if separate else "  (validation = training set)"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return fig


def plot(run: RunRecord, path: str | Path) -> Path:
    """Write the learning curve to a PNG or SVG file with matplotlib."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ForgegitError(f"cannot plot to {path.name}: use a .png or .svg file name")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ForgegitError("plotting needs matplotlib: pip install 'forgegit[plot]'") from exc
    fig = figure(run)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=path.suffix.lower().lstrip("."), bbox_inches="tight", dpi=120)
    finally:
        plt.close(fig)
    return path


# --- markdown ------------------------------------------------------------------------


def action_text(a: ActionRecord) -> str:
    """One optimizer action for a table cell: `+name` added, `~name` revised, `-name` removed."""
    text = code(f"{_ACTION_SIGNS.get(a.kind, '?')}{a.name}")
    if a.accepted:
        return text + (" (dropped)" if a.kept is False else "")
    reason = f": {escape_md(first_line(a.reason, 80))}" if a.reason else ""
    return f"~~{text}~~ (rejected{reason})"


def gate_text(e: EpochRecord) -> str:
    if e.gate is None:
        return "—"
    return f"{escape_md(e.gate.test)} {p_is(e.gate.p_value)}"


def epoch_row(e: EpochRecord, server_url: Optional[str], repository: Optional[str]) -> str:
    """One row of the epochs table."""
    actions = ", ".join(action_text(a) for a in e.actions) or "—"
    shown = {"kept": "✅ kept", "reverted": "↩️ reverted", "no change": "— no change"}[verdict(e)]
    if e.attribution and e.kept:
        shown = "✅ " + partial(e)
    commits = commit_link(e.commit, server_url, repository)
    for revert in e.reverts or ([e.revert] if e.revert else []):
        commits += f" ↩ {commit_link(revert, server_url, repository)}"
    cells = [
        str(e.epoch), actions, escape_md(first_line(e.rationale)) or "—",
        f"{pct(e.score_before)} → {pct(e.score_after)}", shown, gate_text(e),
        tokens(e.usage), money(e.usage.cost), commits,
    ]
    return "| " + " | ".join(cells) + " |"


def epochs_table(run: RunRecord, server_url: Optional[str], repository: Optional[str]) -> str:
    head = [
        "| epoch | actions | rationale | score | verdict | gate | tokens | cost | commits |",
        "|---:|---|---|---|---|---|---:|---:|---|",
    ]
    return "\n".join(head + [epoch_row(e, server_url, repository) for e in run.epochs])


def _comparison_row(label: str, c: Comparison) -> str:
    n = f" ({c.head_total} tasks)" if c.head_total else ""
    return (
        f"| {label}{n} | {pct(c.base_score)} | {pct(c.head_score)} | {pp(c.delta)} "
        f"| {ci(c.ci_low, c.ci_high)} | {pval(c.p_value)} |"
    )


def scores_table(run: RunRecord) -> str:
    """Baseline vs trained on the training, validation and (when sealed) test sets."""
    rows = [
        "| set | baseline | trained | difference | 95% CI | p |",
        "|---|---:|---:|---:|---|---:|",
        f"| train | {pct(run.baseline_score)} | {pct(run.trained_score)} "
        f"| {pp(run.trained_score - run.baseline_score)} | — | — |",
    ]
    if run.final_gate:
        rows.append(_comparison_row("validation", run.final_gate))
    if run.test:
        rows.append(_comparison_row("test, sealed", run.test))
    return "\n".join(rows)


def headline(run: RunRecord) -> str:
    """One sentence: did training improve the functions on validation?"""
    g = run.final_gate
    if g is None:
        return f"Training score {pct(run.baseline_score)} → {pct(run.trained_score)} (no validation result)."
    if run.val_file == run.tasks_file:
        return _headline(g) + (" Validation is the training set: the gate measured fit to these tasks, "
                               "not generalization (train with `--val` to measure that).")
    return _headline(g)


def _headline(g: Comparison) -> str:
    if g.passed:
        return (f"**Improved** on validation: {pct(g.base_score)} → {pct(g.head_score)} "
                f"({pp(g.delta)}, {p_is(g.p_value)}).")
    return (f"**Not improved** on validation: {pct(g.base_score)} → {pct(g.head_score)} "
            f"({pp(g.delta)}, {p_is(g.p_value)}); the gate did not pass.")


def epochs_line(run: RunRecord) -> str:
    """How many epochs ran and how many were kept."""
    n = len(run.epochs)
    counts = {v: sum(verdict(e) == v for e in run.epochs) for v in ("kept", "reverted", "no change")}
    return f"{n} epoch{'s' if n != 1 else ''}: " + ", ".join(f"{c} {v}" for v, c in counts.items() if c or v != "no change") + "."


def verdict(e: EpochRecord) -> str:
    """kept, reverted, or no change (nothing was committed)."""
    return "kept" if e.kept else ("reverted" if e.commit else "no change")


def partial(e: EpochRecord) -> str:
    """"kept 1 of 2 actions" (attribution kept a subset of the epoch's actions)."""
    kept, total = e.kept_actions
    return f"kept {kept} of {total} actions"


def _flip_items(flips: list[dict[str, str]], limit: int = FLIPS_SHOWN_LIMIT) -> list[str]:
    items = []
    for f in flips[:limit]:
        task = code(str(f.get("task_id", "?")))
        feedback = escape_md(first_line(str(f.get("feedback", "")), FEEDBACK_LIMIT))
        items.append(f"- {task}" + (f": {feedback}" if feedback else ""))
    if len(flips) > limit:
        items.append(f"- … and {len(flips) - limit} more (see `forgegit log`)")
    return items


def flips_section(label: str, c: Comparison, limit: int = FLIPS_SHOWN_LIMIT) -> str:
    """The tasks that flipped fail→pass and pass→fail on one set, with the checker's feedback."""
    parts = []
    for title, flips in ((f"fixed on {label} (fail → pass)", c.flipped_up),
                         (f"broken on {label} (pass → fail)", c.flipped_down)):
        if not flips:
            continue
        heading = f"{len(flips)} task{'s' if len(flips) != 1 else ''} {title}"
        items = "\n".join(_flip_items(flips, limit))
        if len(flips) > FLIPS_OPEN_LIMIT:
            parts.append(f"<details><summary>{heading}</summary>\n\n{items}\n\n</details>")
        else:
            parts.append(f"**{heading}**\n\n{items}")
    return "\n\n".join(parts)


def settings_line(run: RunRecord) -> str:
    files = [f"train {code(run.tasks_file)}"]
    if run.val_file:
        files.append(f"validation {code(run.val_file)}")
    if run.test_file:
        files.append(f"test {code(run.test_file)}")
    line = (f"Model {code(run.model)}, optimizer {code(run.optimizer_model or run.model)}; "
            f"{', '.join(files)}.")
    if run.sandbox:  # forgegit's own text, but from a note that anyone who can push notes may have edited
        line += f" Function code ran in the sandbox at {code(run.sandbox)}."
    return line


def render_markdown(run: RunRecord, *, server_url: Optional[str] = None, repository: Optional[str] = None) -> str:
    """The run for a reviewer: scores, CI and p, per-epoch table, curve, commits, flips, cost."""
    for limit in (FLIPS_SHOWN_LIMIT, 20, 0):  # GitHub's body limit: list fewer flips until it fits
        body = _render(run, server_url, repository, limit)
        if len(body) <= MAX_BODY:
            return body
    return _shorten(body)


def _render(run: RunRecord, server_url: Optional[str], repository: Optional[str], flip_limit: int) -> str:
    sections = [
        marker(run.run_id),
        f"## forgegit run {code(run.run_id)}",
        headline(run),
        epochs_line(run),
        scores_table(run),
        settings_line(run),
        "### Epochs",
        epochs_table(run, server_url, repository) if run.epochs else "_No epochs ran._",
        "Actions: `+` added, `~` revised, `-` removed; struck-through actions were rejected.",
        *([review_section(run)] if run.reviews else []),
        "### Learning curve",
        mermaid_curve(run),
        "### Commits",
        commits_list(run, server_url, repository),
    ]
    flips = [flips_section(label, c, flip_limit) for label, c in (("validation", run.final_gate), ("test", run.test)) if c]
    flips = [f for f in flips if f]
    if flips:
        sections += ["### Tasks that changed", *flips]
    sections += ["### Cost", totals_line(run)]
    return "\n\n".join(sections) + "\n"


def review_section(run: RunRecord, limit: int = 160) -> str:
    """The PR body's list of review comments and the epochs that answered them (the ones whose optimizer saw
    them; 'kept' when the epoch was kept)."""
    if not run.reviews:
        return ""
    lines = ["### Review feedback", ""]
    for r in run.reviews:
        lines.append(f"Continued from PR #{r.pr} with {len(r.comments)} comment(s) read {escape_md(r.fetched)}:")
        lines.append("")
        for c in r.comments:
            epochs = [e for e in run.epochs if c.id in e.answers]
            if epochs:
                answer = ", ".join(f"epoch {e.epoch} ({'kept' if e.kept else 'reverted'})" for e in epochs)
                status = ("answered by " if any(e.kept for e in epochs) else "tried, not kept: ") + answer
            else:
                status = "not answered yet"
            where = f" on {code(c.path)}" + (f" line {c.line}" if c.line is not None else "") if c.path else ""
            body = escape_md(c.body if len(c.body) <= limit else c.body[: limit - 1] + "…")
            lines.append(f"- {escape_md(c.kind)} by {escape_md(c.author)}{where}: {body} — {status}")
        lines.append("")
    return "\n".join(lines)


def _shorten(body: str) -> str:
    """Cut an over-long body (GitHub's limit) keeping the top and the marker."""
    note = "\n\n_… truncated: the full report is in `forgegit log` and the step summary._\n"
    return body[: MAX_BODY - len(note)] + note


def commits_list(run: RunRecord, server_url: Optional[str], repository: Optional[str]) -> str:
    lines = [f"- base {code(run.base_branch)}: {commit_link(run.base_commit, server_url, repository)}"]
    if run.epochs:
        lines.append(f"- best: {commit_link(run.trained_commit, server_url, repository)} "
                     f"(training score {pct(run.trained_score)})")
    lines.append(f"- branch: {code(run.branch)}")
    return "\n".join(lines)


def totals_line(run: RunRecord) -> str:
    u = run.usage
    stop = escape_md(run.stop_reason) if run.stop_reason else run.status
    return (f"{tokens(u)} tokens ({u.prompt_tokens:,} prompt{cached_text(u, ' of them')} + {u.completion_tokens:,} completion) "
            f"in {u.calls:,} calls ({u.cached_calls:,} cached), {money(u.cost)}. "
            f"Stopped: {stop}.")


# --- terminal ------------------------------------------------------------------------


def _plain_actions(e: EpochRecord) -> str:
    """The epoch's actions for a terminal: a rejected name is the optimizer's raw text, so it is defused."""
    parts = [f"{_ACTION_SIGNS.get(a.kind, '?')}{safe_text(a.name, 64)}"
             f"{('(dropped)' if a.kept is False else '') if a.accepted else '(rejected)'}" for a in e.actions]
    return " ".join(parts) or "-"


def summary_table(run: RunRecord) -> str:
    """A plain-text table of the epochs for terminals, then the training score and usage (callers print the gates)."""
    header = ["epoch", "commit", "actions", "before", "after", "val", "verdict", "p", "tokens", "cost"]
    rows = [header]
    for e in run.epochs:
        commit = short(e.commit) + (f" (revert {short(e.revert)})" if e.revert else "") if e.commit else "-"
        rows.append([
            str(e.epoch), commit, _plain_actions(e), pct(e.score_before), pct(e.score_after), pct(e.val_score),
            partial(e) if e.attribution and e.kept else verdict(e), pval(e.gate.p_value) if e.gate else "-",
            tokens(e.usage), money(e.usage.cost),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    best = f" (best {short(run.trained_commit)})" if any(e.kept for e in run.epochs) else " (no epoch kept)"
    lines.append(f"training score: {pct(run.baseline_score)} -> {pct(run.trained_score)}{best}")
    lines.append(f"usage: {tokens(run.usage)} tokens{cached_text(run.usage)} in {run.usage.calls:,} calls, "
                 f"{money(run.usage.cost)}")
    return "\n".join(lines)
