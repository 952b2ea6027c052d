"""Pulsar topic names and HTTP topic lookups, read the same way by the probes (who owns a
topic?) and the steps (did a topic come back after a roll?)."""

from __future__ import annotations

from chaoslab import http


def topic_path(fqn: str) -> str:
    domain, rest = fqn.split("://", 1)
    return f"{domain}/{rest}"


def lookup(url: str, fqn: str, timeout: float = 5) -> http.Response:
    """An HTTP topic lookup that is not followed (a 307 names the owner: the topic is owned)."""
    return http.get(f"{url}/lookup/v2/topic/{topic_path(fqn)}", timeout=timeout, follow_redirects=False)


def owner_host(resp: http.Response) -> str | None:
    """The owner's host name from a lookup answer (200 with brokerUrl, or a redirect)."""
    if resp.status == 200:
        data = resp.json(default={}) or {}
        owner = data.get("brokerUrl") or data.get("httpUrl") if isinstance(data, dict) else None
    elif resp.status in (301, 302, 307):
        owner = resp.headers.get("Location")
    else:
        owner = None
    return owner.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] if owner else None


def lookup_outcome(resp: http.Response) -> str:
    """owned | rejected (the broker refused: too many pending lookups) | no-answer (timeout,
    refused connection) | unowned (an answer that names no owner)."""
    if resp.status in (200, 301, 302, 307) and owner_host(resp):
        return "owned"
    if resp.status == 0:
        return "no-answer"
    if resp.status == 429 or "too many" in resp.text.lower():
        return "rejected"
    return "unowned"


def owner_of(url: str, fqn: str, timeout: float = 5) -> str | None:
    """The broker that owns a topic's bundle (host name), from a lookup that is not followed."""
    return owner_host(lookup(url, fqn, timeout))


def base_topic(fqn: str) -> str:
    """persistent://t/n/x-partition-0 -> persistent://t/n/x (what clients name)."""
    head, sep, tail = fqn.rpartition("-partition-")
    return head if sep and tail.isdigit() else fqn
