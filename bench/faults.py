"""The fault-injection suite: every `@pytest.mark.faults` test, summed up per fault.

Runs pytest on the `faults` marker (tests/test_reliability.py: a failing API, kills at every named step
and at random moments and during `git worktree add`, malformed optimizer replies, notes of the wrong
shape or forged, Ctrl-C; tests/test_hostile_code.py: hostile function code through `forgegit eval`;
tests/test_trainer.py: the trainer's own crash points and its lock; tests/test_notes.py: processes
writing notes at once; tests/test_tasks.py: task lines nested too deeply) with --junitxml, reads the properties each test
records (`fault`, `injected`, `data_lost`) and prints one row per fault:

    fault | tests | times injected | survived | data lost

"data lost" is measured, not assumed: after each fault the test compares the user's branch, HEAD,
index and working tree and every earlier note with a snapshot, and checks that every recorded epoch's
commit is still on the training branch (tests/test_reliability.py `data_lost`). It must be 0.

Run: /work/venv/bin/python bench/faults.py [--kills N] [-n WORKERS] [--markdown]
Exit status: 0 only when every test passed and no data was lost.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    fault: str
    tests: int = 0
    injected: int = 0
    passed: int = 0
    skipped: int = 0
    lost: int = 0
    unmeasured: int = 0  # tests that recorded no data_lost (their own assertions guard the data)
    unknown: int = 0  # failed tests that recorded no data_lost


def _fault_of(case: ET.Element, props: dict[str, str]) -> str:
    if "fault" in props:
        return props["fault"]
    name = case.get("name", "")
    if "[" in name:  # tests/test_trainer.py's crash points: test_killed_...[after-commit]
        return f"SIGKILL at {name.split('[', 1)[1].rstrip(']')} (test_trainer)"
    return name


def collect(junit: Path) -> list[Row]:
    rows: dict[str, Row] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        row = rows.setdefault(_fault_of(case, props), Row(_fault_of(case, props)))
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        row.tests += 1
        if skipped:
            row.skipped += 1
            continue
        row.injected += int(props.get("injected", "1") or 0)
        row.passed += 0 if failed else 1
        if "data_lost" in props:
            row.lost += int(props["data_lost"])
        elif failed:
            row.unknown += 1
        else:
            row.unmeasured += 1
    return sorted(rows.values(), key=lambda r: (_group(r.fault), r.fault))


def _group(fault: str) -> int:
    for i, prefix in enumerate(("transient", "permanent", "HTTP", "cut-off", "SIGKILL", "hostile")):
        if fault.startswith(prefix):
            return i
    return 9


def render(rows: list[Row], markdown: bool) -> str:
    header = ["fault", "tests", "times injected", "survived", "data lost"]
    body = []
    for r in rows:
        lost = str(r.lost) + ("*" if r.unmeasured else "") + (f" (+{r.unknown} unknown)" if r.unknown else "")
        survived = f"{r.passed}/{r.tests - r.skipped}" + (f" ({r.skipped} skipped)" if r.skipped else "")
        body.append([r.fault, str(r.tests), str(r.injected), survived, lost])
    total = Row("total", sum(r.tests for r in rows), sum(r.injected for r in rows), sum(r.passed for r in rows),
                sum(r.skipped for r in rows), sum(r.lost for r in rows), sum(r.unmeasured for r in rows),
                sum(r.unknown for r in rows))
    body.append([f"**{total.fault}**" if markdown else total.fault, str(total.tests), str(total.injected),
                 f"{total.passed}/{total.tests - total.skipped}", str(total.lost) + (f" (+{total.unknown} unknown)" if total.unknown else "")])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * 4) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
    else:
        widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
        fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
        lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(row) for row in body]
    if any(r.unmeasured for r in rows):
        lines.append("")
        lines.append("* tests/test_trainer.py records no count: its assertions (user's branch and tree unchanged, "
                     "branch at an epoch boundary) would fail the test on any loss.")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=6, help="random-moment SIGKILLs to inject (default 6)")
    ap.add_argument("-n", "--workers", default="2", help="pytest-xdist workers (default 2; 0 = none)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k transient)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "faults.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "faults", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}", "-o", "junit_family=xunit1"]
        if args.workers != "0":
            cmd += ["-n", args.workers]
        cmd += args.pytest_args or ["tests"]
        env = {**os.environ, "FORGEGIT_FAULT_KILLS": str(args.kills)}
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if not junit.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            return 2
        rows = collect(junit)
    summary = [line for line in proc.stdout.splitlines() if line.strip()][-1:]
    print(render(rows, args.markdown))
    print(f"\npytest: {summary[0] if summary else '?'} ({elapsed:.0f} s; {' '.join(cmd[1:])})")
    failed = proc.returncode != 0 or any(r.lost or r.unknown for r in rows)
    if failed:
        sys.stderr.write("\n".join(l for l in proc.stdout.splitlines() if l.startswith(("FAILED", "ERROR"))) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
