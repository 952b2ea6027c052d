"""The one HTTP helper: every admin, health, lookup and /metrics request the lab makes goes
through `request`, which never raises for HTTP or network errors. It returns a `Response` with the
status (0 when no answer came), the body, and — when there was no answer — what went wrong
(`timeout`, `refused`, ...), so that evidence can say *why* a call failed, not only that it did.

Every request is also counted per target (host:port) and path family, so a run can report how
much load the lab itself put on each broker (the observer effect).
"""

from __future__ import annotations

import collections
import json
import socket
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int                 # HTTP status; 0 = no answer (see error)
    text: str = ""
    headers: dict = field(default_factory=dict)
    error: str | None = None    # timeout | refused | reset | unreachable | <other>, when status == 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self, default=None):
        try:
            return json.loads(self.text)
        except ValueError:
            return default

    def describe(self) -> str:
        """One line for evidence: 'HTTP 503: ...' or 'no answer (timeout after 5.0 s)'. An HTML
        error page is reduced to its title; white space is folded (a report line stays a line)."""
        if self.status:
            return f"HTTP {self.status}" + (f": {one_line(self.text)[:160]}" if self.text.strip() else "")
        return f"no answer ({self.error} after {self.seconds:.1f} s)"


def one_line(text: str) -> str:
    """The text as one line: an HTML page's <title>, else the text with its white space folded."""
    m = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    return " ".join((m.group(1) if m else text).split())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_follow = urllib.request.build_opener()
_no_follow = urllib.request.build_opener(_NoRedirect)

# requests sent, per "host:port" and per path family (the first two path segments)
_counts: collections.Counter = collections.Counter()
_counts_lock = threading.Lock()


def _count(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    family = "/".join(parts.path.split("/")[:3]) or "/"
    with _counts_lock:
        _counts[(parts.netloc, family)] += 1


def request_counts() -> dict[tuple[str, str], int]:
    with _counts_lock:
        return dict(_counts)


def _classify(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        return "timeout"
    if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
        return "refused"
    if isinstance(reason, ConnectionResetError) or "reset" in str(reason).lower():
        return "reset"
    if "unreachable" in str(reason).lower() or "Name or service not known" in str(reason):
        return "unreachable"
    return f"{type(reason).__name__}: {reason}"[:120]


def request(method: str, url: str, body=None, timeout: float = 10, follow_redirects: bool = True,
            headers: dict | None = None) -> Response:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    opener = _follow if follow_redirects else _no_follow
    _count(url)
    started = time.monotonic()
    try:
        with opener.open(req, timeout=timeout) as resp:
            text = resp.read().decode(errors="replace")
            return Response(resp.status, text, dict(resp.headers), None, time.monotonic() - started)
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read().decode(errors="replace") if exc.fp else ""
        except Exception:
            text = ""
        return Response(exc.code, text, dict(exc.headers or {}), None, time.monotonic() - started)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        return Response(0, "", {}, _classify(exc), time.monotonic() - started)


def get(url: str, timeout: float = 10, follow_redirects: bool = True) -> Response:
    return request("GET", url, timeout=timeout, follow_redirects=follow_redirects)


def get_json(url: str, timeout: float = 10):
    """The decoded JSON body of a 200 answer (or the plain text if it is not JSON); None otherwise."""
    resp = get(url, timeout)
    if resp.status != 200:
        return None
    return resp.json(default=resp.text.strip())
