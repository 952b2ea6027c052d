"""The incident chain's links 1-6 per run and variant, as the report computes them
(chaoslab.stories.incident_chain), with each rolled broker's (shallow ok, health check ok) when its roll
ended: the counts behind docs/findings/2026-11-25-flip-rates-cause-triggers.md ("which links the lab reproduces").

    python bench/chain_counts.py runs/rates-ts3 runs/rates-ts4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaoslab.rates import run_folders  # noqa: E402
from chaoslab.record import read  # noqa: E402
from chaoslab.spec.base import RunView  # noqa: E402
from chaoslab.stories.incident_chain import links, pending_limit  # noqa: E402


def main(folders: list[str]) -> None:
    for rd, res in run_folders(folders):
        records = read(rd / "journal.jsonl")
        limit = pending_limit(RunView(rd, res, records)) or 50
        for v in res["variants"]:
            samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
            rows = links(v, samples, limit)[:6]
            seen = "".join(str(r["link"]) if r["observed"] else ("-" if r["observed"] is False else "?") for r in rows)
            rolls = [(s.get("broker"), s.get("shallow_ok"), s.get("functional_ok"))
                     for s in v.get("steps") or [] if s.get("type") == "roll-broker"]
            print(f"{rd}  {v['name']:10} {v['verdict']:5} links 1-6 [{seen}]  rolls {rolls}")
            for r in rows:
                if r["observed"]:
                    print(f"      link {r['link']}: {r['number'][:160]}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["runs"])
