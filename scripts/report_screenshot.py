"""Render the first screen of a run's report (title, verdict, Why, key times) as an SVG.

    python scripts/report_screenshot.py RUN_DIR OUT.svg [--lines 40]

Reads RUN_DIR/report.md only (nothing is written into the run folder) and draws its first lines
with rich's Markdown renderer on a 110-column console. The README's image
(docs/images/report-first-screen.svg) is made this way from a transfer-shedder run.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown


def first_screen(report: str, lines: int) -> str:
    """The report's first `lines` lines, cut at a section boundary when one is near, so a table
    is never cut in half."""
    every = report.splitlines()
    cut = min(lines, len(every))
    while 0 < cut < len(every) and every[cut].startswith("|") and every[cut - 1].startswith("|"):
        cut -= 1            # do not end inside a table: leave that table out whole
    head = every[:cut]
    while head and (not head[-1].strip() or head[-1].startswith("#")):
        head.pop()          # nor on a heading or a blank line
    return "\n".join(head).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder (with report.md)")
    p.add_argument("out", type=Path, help="the SVG to write")
    p.add_argument("--lines", type=int, default=40, help="how many lines of report.md (default 40)")
    args = p.parse_args(argv)
    report = args.run / "report.md"
    if not report.is_file():
        print(f"report_screenshot: {report}: no such file", file=sys.stderr)
        return 2
    console = Console(record=True, width=110, file=io.StringIO(), force_terminal=True)
    console.print(Markdown(first_screen(report.read_text(), args.lines)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(args.out), title=f"{args.run.name}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
