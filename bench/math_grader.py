"""Hugging Face's math-verify against forgegit's `math` checker (mathequiv.py) on the bundled MATH-500.

    pip install math-verify          # not a forgegit dependency: without it this prints a skip line
    python bench/math_grader.py [--quick] [--problems N]

Both graders judge the same whole replies against the same gold answers (forgegit: check_math(reply,
task); math-verify: verify(parse("$gold$"), parse(reply)), its documented use):
- must pass: every worked solution against its own answer, "So the final answer is $A$.", and every
  restyled answer (\\dfrac, spaces, \\left(, 1,000, 12.0, a/b, 0.25; as tests/test_checkers_on_data.py)
  in "Thus \\boxed{v}." and "So the final answer is $v$.", and the unit tests' hand-picked equal
  spellings both ways (tests/fixtures/math_spellings.json);
- must fail: each solution against another problem's answer (shifts 1 and 7, minus the pairs whose
  answers are the same text), each answer plus 2, minus 1/7 or doubled, the hand-picked look-alike
  wrong answers both ways, and the 16 real wrong replies of SmolLM2-135M
  (tests/fixtures/smollm2_answers.jsonl, every one judged wrong by hand).
It prints each grader's pass rate on must-pass, false-accept rate on must-fail, the disagreements,
time per judgment (median, p99) and the ratio; then the worst case on adversarial replies (each in a
forked child killed after --kill-after seconds; math-verify also with its signal timeouts off, the only
way it runs off the main thread), and what math-verify does in a worker thread.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import multiprocessing as mp
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import machine, table  # noqa: E402  (it also puts tests/ on sys.path)
from math_restyle import restyled  # noqa: E402
from forgegit.checkers import check_gsm8k, check_math, cut_off_verdict, gsm8k_expected  # noqa: E402
from forgegit.tasks import Task, load_tasks  # noqa: E402

DATA = REPO / "examples" / "data"
FIXTURE = REPO / "tests" / "fixtures" / "smollm2_answers.jsonl"
SPELLINGS = REPO / "tests" / "fixtures" / "math_spellings.json"
SHIFTS = (1, 7)
SHOWN = 10  # disagreements printed each way
ADVERSARIAL = {  # reply -> what it tries
    "tower 9^9^9^9": r"\boxed{9^{9^{9^{9}}}}",
    "power 10^10^10": r"The answer is $10^{10^{10}}$.",
    "factorial 10^6!": r"\boxed{1000000!}",
    "10k nested braces": r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "2k nested \\frac": r"\boxed{" + r"\frac{1}{" * 2_000 + "2" + "}" * 2_000 + "}",
    "100k-char answer": r"\boxed{" + "1+" * 50_000 + "1}",
    "100k-char prose": "I think " * 12_500 + r"so \boxed{2}.",
}

QUICK_ADVERSARIAL = ("tower 9^9^9^9", "100k-char answer")


@dataclass(frozen=True)
class Case:
    group: str
    label: str
    reply: str
    gold: str
    must_pass: bool
    checker: str = "math"  # the forgegit checker the reply is judged by (a fixture row may be gsm8k)
    cut_off: bool = False


def same_text(a: str, b: str) -> bool:
    """Two gold answers that are the same spelling (3 and 3, 5 and x=5): a shifted pair that may pass."""
    return re.sub(r"^x\s*=\s*", "", a) == re.sub(r"^x\s*=\s*", "", b)


def cases(n: int) -> list[Case]:
    """Every must-pass and must-fail reply on the first n MATH-500 problems, and the real small-model replies."""
    every = list(load_tasks(DATA / "math500" / "test.jsonl", "problem", "answer").tasks)
    tasks = every[:n]
    out: list[Case] = []
    for t in tasks:
        uid = str(t.fields["unique_id"])
        out.append(Case("solution", uid, str(t.fields["solution"]), t.answer, True))
        out.append(Case("stated", uid, f"So the final answer is ${t.answer}$.", t.answer, True))
        for v in restyled(t.answer, space_thousands=False):
            out += [Case("restyled", uid, f"Thus \\boxed{{{v}}}.", t.answer, True),
                    Case("restyled", uid, f"So the final answer is ${v}$.", t.answer, True)]
        a = t.answer
        for v in (f"{a}+2", f"{a} - \\frac{{1}}{{7}}", f"2\\cdot {a}" if a != "0" else "1"):
            out.append(Case("near miss", uid, f"\\boxed{{{v}}}", a, False))
    for shift in SHIFTS:
        for i, t in enumerate(tasks):
            other = every[(i + shift) % len(every)]
            if not same_text(t.answer, other.answer):
                out.append(Case("other's answer", f"{t.fields['unique_id']} vs {other.fields['unique_id']}",
                                str(t.fields["solution"]), other.answer, False))
    spellings = json.loads(SPELLINGS.read_text(encoding="utf-8"))
    for key, group, must_pass in (("equivalent", "spelling: same", True), ("different", "spelling: different", False)):
        for a, b in spellings[key]:
            out += [Case(group, f"{a} / {b}", f"Hence \\boxed{{{b}}}.", a, must_pass),
                    Case(group, f"{b} / {a}", f"Hence \\boxed{{{a}}}.", b, must_pass)]
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        gold = gsm8k_expected(r["expected"]) if r["checker"] == "gsm8k" else r["expected"]
        out.append(Case("smollm2", r["id"], r["reply"], gold, bool(r["human"]), r["checker"], bool(r["cut_off"])))
    return out


def forgegit_judge(c: Case) -> bool:
    """forgegit's verdict, as evaluation gives it (a cut-off reply first; gsm8k rows by the gsm8k checker)."""
    if c.checker == "gsm8k":
        task = Task(c.label, "", f"#### {c.gold}", 1)
        return ((c.cut_off and cut_off_verdict("gsm8k", c.reply)) or check_gsm8k(c.reply, task)).passed
    task = Task(c.label, "", c.gold, 1)
    return ((c.cut_off and cut_off_verdict("math", c.reply)) or check_math(c.reply, task)).passed


def math_verify_judge(c: Case) -> bool:
    """math-verify's verdict: verify(parse("$gold$"), parse(reply)) with its default configs and timeouts."""
    from math_verify import parse, verify

    return bool(verify(parse(f"${c.gold}$"), parse(c.reply)))


def math_verify_untimed(c: Case) -> bool:
    """math-verify with its signal timeouts off: the only way it runs off the main thread."""
    from math_verify import parse, verify

    gold, pred = parse(f"${c.gold}$", parsing_timeout=None), parse(c.reply, parsing_timeout=None)
    return bool(verify(gold, pred, timeout_seconds=None))


Judge = Callable[[Case], bool]


def run(judge: Judge, all_cases: list[Case]) -> tuple[list[bool], list[float]]:
    """Each case's verdict and seconds."""
    verdicts, times = [], []
    for c in all_cases:
        t0 = time.perf_counter()
        verdicts.append(judge(c))
        times.append(time.perf_counter() - t0)
    return verdicts, times


def interleave(lists: list[list[int]]) -> list[int]:
    """The first of each list, then the second of each...: examples from every group."""
    longest = max((len(xs) for xs in lists), default=0)
    return [xs[k] for k in range(longest) for xs in lists if k < len(xs)]


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(0.99 * len(xs)))]


def _child(judge: Judge, c: Case, q: "mp.Queue[tuple[bool, float]]") -> None:
    t0 = time.perf_counter()
    try:
        v = judge(c)
    except BaseException:  # noqa: BLE001 - report the crash as a failed judgment
        v = False
    q.put((v, time.perf_counter() - t0))


def worst_case(judge: Judge, reply: str, kill_after: float) -> tuple[str, str]:
    """(seconds, verdict) for one adversarial reply against gold 1, in a forked child killed after kill_after s."""
    ctx = mp.get_context("fork")
    q: "mp.Queue[tuple[bool, float]]" = ctx.Queue()
    p = ctx.Process(target=_child, args=(judge, Case("adversarial", "", reply, "1", False), q))
    t0 = time.perf_counter()
    p.start()
    p.join(kill_after)
    if p.is_alive():
        p.kill()
        p.join()
        return f"> {kill_after:.0f} (killed)", "hung"
    if p.exitcode != 0 or q.empty():
        return f"{time.perf_counter() - t0:.3f}", f"crashed (exit {p.exitcode})"
    v, s = q.get()
    return f"{s:.3f}", "pass" if v else "fail"


def off_main_thread() -> str:
    """What math-verify does when called from a worker thread (its timeouts use signal.alarm)."""
    from math_verify import parse, verify

    box: dict[str, object] = {}

    def call() -> None:
        try:
            box["parsed"] = parse("So the answer is $0.5$.")
            box["verdict"] = verify(parse("$\\frac{1}{2}$"), box["parsed"])
        except Exception as e:  # noqa: BLE001
            box["error"] = f"{type(e).__name__}: {e}"

    th = threading.Thread(target=call)
    th.start()
    th.join()
    if "error" in box:
        return f"raises {box['error']}"
    return f"parse -> {box.get('parsed')!r}, verify(1/2, 0.5) -> {box.get('verdict')} (main thread: True)"


def version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="20 problems, 2 adversarial replies killed after 12 s")
    ap.add_argument("--problems", type=int, default=500, help="MATH-500 problems used")
    ap.add_argument("--kill-after", type=float, default=60.0, help="seconds before an adversarial judgment is killed")
    args = ap.parse_args(argv)
    n, kill_after = (20, 12.0) if args.quick else (args.problems, args.kill_after)
    adversarial = {k: ADVERSARIAL[k] for k in QUICK_ADVERSARIAL} if args.quick else ADVERSARIAL
    try:
        import math_verify  # noqa: F401
    except ImportError:
        print("math_grader: skipped: math-verify is not installed (pip install math-verify)")
        return 0
    import logging

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs each timeout and parse failure
    all_cases = cases(n)
    print(f"# math_grader: {n} MATH-500 problems, {len(all_cases)} replies; {machine(server=False)}; "
          f"math-verify {version('math-verify')}, latex2sympy2_extended {version('latex2sympy2_extended')}, "
          f"sympy {version('sympy')}, antlr4 {version('antlr4-python3-runtime')}")
    graders: dict[str, Judge] = {"forgegit": forgegit_judge, "math-verify": math_verify_judge}
    results = {name: run(judge, all_cases) for name, judge in graders.items()}
    groups = list(dict.fromkeys(c.group for c in all_cases))
    rows = []
    for g in groups:
        idx = [i for i, c in enumerate(all_cases) if c.group == g]
        must = "pass" if all_cases[idx[0]].must_pass else "fail"
        row: list[object] = [g, must, len(idx)]
        for name in graders:
            row.append(sum(results[name][0][i] for i in idx))
        rows.append(row)
    print(table(["replies", "must", "n", "forgegit passed", "math-verify passed"], rows))
    print()
    must_pass = [i for i, c in enumerate(all_cases) if c.must_pass]
    must_fail = [i for i, c in enumerate(all_cases) if not c.must_pass]
    summary = []
    for name in graders:
        verdicts, times = results[name]
        right = sum(verdicts[i] for i in must_pass)
        false = sum(verdicts[i] for i in must_fail)
        summary.append([name, f"{right}/{len(must_pass)}", f"{100 * right / len(must_pass):.1f}%",
                        f"{false}/{len(must_fail)}", f"{100 * false / len(must_fail):.2f}%",
                        1000 * statistics.median(times), 1000 * p99(times), 1000 * max(times)])
    print(table(["grader", "must-pass passed", "rate", "must-fail accepted", "false-accept rate",
                 "median ms", "p99 ms", "max ms"], summary))
    fg_t, mv_t = results["forgegit"][1], results["math-verify"][1]
    print(f"ratio math-verify / forgegit time per judgment: median {statistics.median(mv_t) / statistics.median(fg_t):.1f}x, "
          f"p99 {p99(mv_t) / p99(fg_t):.1f}x, total {sum(mv_t) / sum(fg_t):.1f}x ({sum(mv_t):.1f} s vs {sum(fg_t):.1f} s)")
    fg_v, mv_v = results["forgegit"][0], results["math-verify"][0]
    picks: list[tuple[str, Callable[[int], bool]]] = [
        ("forgegit right, math-verify wrong", lambda i: fg_v[i] == all_cases[i].must_pass != mv_v[i]),
        ("math-verify right, forgegit wrong", lambda i: mv_v[i] == all_cases[i].must_pass != fg_v[i])]
    for title, pick in picks:
        hits = [i for i in range(len(all_cases)) if pick(i)]
        by_group = {g: [i for i in hits if all_cases[i].group == g] for g in groups}
        counts = ", ".join(f"{g} {len(ix)}" for g, ix in by_group.items() if ix)
        print(f"\n{title}: {len(hits)}" + (f" ({counts})" if counts else ""))
        for i in interleave(list(by_group.values()))[:SHOWN]:
            c = all_cases[i]
            reply = c.reply if len(c.reply) <= 90 else "..." + c.reply[-87:].replace("\n", " ")
            print(f"  [{c.group}, must {'pass' if c.must_pass else 'fail'}] {c.label}: gold {c.gold!r}; reply {reply!r}")
    judges_as_well = (sum(mv_v[i] for i in must_pass) >= sum(fg_v[i] for i in must_pass)
                      and sum(mv_v[i] for i in must_fail) <= sum(fg_v[i] for i in must_fail))
    print(f"\n## adversarial replies (gold 1; each in a forked child, killed after {kill_after:.0f} s)")
    adv_rows = []
    worst: dict[str, float] = {}
    adversaries = {**graders, "math-verify untimed": math_verify_untimed}
    for label, reply in adversarial.items():
        row = [label, len(reply)]
        for name, judge in adversaries.items():
            secs, v = worst_case(judge, reply, kill_after)
            row += [secs, v]
            worst[name] = max(worst.get(name, 0.0), kill_after if secs.startswith(">") else float(secs))
        adv_rows.append(row)
        print(f"  {label}: done", flush=True)
    print(table(["reply", "chars", "forgegit s", "verdict", "math-verify s", "verdict", "untimed s", "verdict"], adv_rows))
    print("worst case: " + ", ".join(f"{name} {'> ' if w >= kill_after else ''}{w:.3f} s" for name, w in worst.items()))
    print(f"\nmath-verify off the main thread: {off_main_thread()}")
    bounded = worst["math-verify"] < kill_after
    print(f"math-verify judges at least as well: {'yes' if judges_as_well else 'NO'}; "
          f"its worst case bounded under {kill_after:.0f} s: {'yes' if bounded else 'NO'}")
    print(f"rule (adopt if both): {'adopt math-verify' if judges_as_well and bounded else 'keep mathequiv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
