"""A report as a list of blocks, rendered to Markdown and to HTML from the same data."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from chaoslab.errors import LabError
from chaoslab.record import read


def md(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "verdict":
            out.append(f"**{block[2]}**")
        elif kind == "list":
            out.append("\n".join(f"- {' '.join(str(item).split())}" for item in block[1]))   # one item, one line
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(headers) + " |")
            out.append("|" + "---|" * len(headers))
            out.extend("| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in row) + " |" for row in rows)
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
        elif kind == "links":
            out.append("\n".join(f"- [{text}]({href})" for text, href in block[1]))
        out.append("")
    return "\n".join(out)


def _data_uri(src: str, base: Path | None) -> str:
    """Images embedded, so that report.html is one file that can be attached to a ticket."""
    if base is None:
        return src
    try:
        return "data:image/png;base64," + base64.b64encode((Path(base) / src).read_bytes()).decode()
    except OSError:
        return src


def to_html(blocks: list[tuple], title: str, base: Path | None = None) -> str:
    e = html.escape
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(block[1])}</p>")
        elif kind == "verdict":
            body.append(f'<p class="verdict {e(block[1])}">{e(block[2])}</p>')
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif kind == "img":
            body.append(f'<figure><img src="{_data_uri(block[1], base)}" alt="{e(block[2])}"><figcaption>{e(block[2])}</figcaption></figure>')
        elif kind == "links":
            body.append("<ul>" + "".join(f'<li><a href="{e(href)}">{e(text)}</a></li>' for text, href in block[1]) + "</ul>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}img{max-width:100%}.verdict{font-size:1.4em;font-weight:bold;padding:.4em .6em;"
             "border-radius:4px}.verdict.PASS{background:#e6f4e6;color:#060}.verdict.FAIL{background:#fbe5e5;color:#a00}"
             ".verdict.ERROR,.verdict.INTERRUPTED,.verdict.INCOMPLETE{background:#fff3d6;color:#850}"
             "td:first-child{white-space:nowrap}.scroll{overflow-x:auto}h2{margin-top:1.6em}"
             "figure{margin:1em 0}figcaption{color:#555;font-size:.9em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


class RunFolderError(LabError):
    """A run folder whose files are not what chaoslab writes (corrupt, truncated, edited)."""


def read_results(run_dir: Path) -> dict:
    """results.json as the runner writes it ({} when there is none); a file that is not UTF-8
    JSON, or whose variants lack their name, role or verdict, is one RunFolderError line."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RunFolderError(f"{path}: not UTF-8 (byte {exc.start}): not a results file chaoslab wrote") from None
    except (ValueError, RecursionError) as exc:
        raise RunFolderError(f"{path}: not JSON ({' '.join(str(exc).split())[:120]})") from None
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path}: not a results object (a JSON {type(data).__name__})")
    variants = data.get("variants", [])
    if not isinstance(variants, list):
        raise RunFolderError(f"{path}: variants is not a list")
    for i, v in enumerate(variants):
        if not isinstance(v, dict):
            raise RunFolderError(f"{path}: variants[{i}] is not an object")
        for key in ("name", "role", "verdict"):
            if not isinstance(v.get(key), str):
                raise RunFolderError(f"{path}: variants[{i}].{key} is missing or not text")
    return data


def open_run(run_dir: Path) -> tuple[list[dict], dict, str, list[tuple]]:
    """A run folder's journal records and results, its title, and the report's opening blocks
    (title, verdict — INCOMPLETE when the runner never wrote run-end — and run facts)."""
    run_dir = Path(run_dir)
    records = read(run_dir / "journal.jsonl")
    results = read_results(run_dir)
    end = next((r for r in reversed(records) if r["type"] == "run-end" and isinstance(r.get("verdict"), str)
                and r["verdict"].strip()), None)
    start = next((r for r in records if r["type"] == "run-start"), {})
    start = {k: v for k, v in start.items() if k not in ("versions", "host") or isinstance(v, dict)}
    verdict = end["verdict"] if end else "INCOMPLETE (the runner stopped before the end)"
    title = f"chaoslab: {results.get('title') or start.get('experiment', run_dir.name)}"
    opening = [("h1", title), ("verdict", verdict.split()[0], f"Verdict: {verdict}" + (f" (exit {end.get('exit_code')})" if end else "")),
               ("p", f"Run {start.get('run_id', run_dir.name)}, seed {start.get('seed')}, "
                     + ("releases " + ", ".join(f"{k} {v}" for k, v in start["versions"].items()) + "; "
                        if start.get("versions") else "")
                     + "host: " + host_words(start.get("host") or {}) + ".")]
    builds = next((r.get("builds") for r in records if r["type"] == "supplied-builds"), None) or {}
    for release, b in builds.items():
        opening.append(("p", f"Release {release} is a build supplied with {b.get('env')}, not a published release: "
                             f"{b.get('kind', 'path')} {b.get('path')}"
                             + (f", sha256 {b['sha256'][:16]}" if b.get("sha256") else "")
                             + (f", its jars say version {b['pulsar_version']}" if b.get("pulsar_version") else "") + "."))
    return records, results, title, opening


def host_words(host: dict) -> str:
    """'2 cores, 23.5 GiB, kernel 6.1, Python 3.11.7, x86_64' from the run-start record's host facts."""
    known = [("cores", "{} cores"), ("memory_gib", "{} GiB"), ("kernel", "kernel {}"), ("python", "Python {}"), ("machine", "{}")]
    parts = [fmt.format(host[k]) for k, fmt in known if host.get(k) is not None]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in host.items() if k not in dict(known)]
    return ", ".join(parts) or "unknown"


def write(run_dir: Path, blocks: list[tuple], title: str) -> Path:
    (Path(run_dir) / "report.md").write_text(md(blocks))
    (Path(run_dir) / "report.html").write_text(to_html(blocks, title, Path(run_dir)))
    return Path(run_dir) / "report.md"
