"""Per-event delivery accounting: every generated sequence number lands in exactly one bucket."""

from __future__ import annotations

import io
import tarfile

import pytest

from chaoslab.workload.accounting import AgentLedger, _seq_and_host, close_books, ranges, read_agent_files


def ledger(generated, text=""):
    return AgentLedger.parse(generated.to_bytes(8, "little") if generated is not None else None, text)


def test_every_missing_event_is_dropped_failed_held_or_lost():
    books = close_books(ledger(20, "dropped 10 12\nfailed 13 14\nheld 18 19\nfailed 3 3\n"),
                        delivered={0, 1, 2, 3, 4, 5, 6, 7, 15, 16}, duplicates=4)
    assert books["generated"] == 20
    assert books["delivered"] == 10
    assert books["dropped_by_policy"] == 3
    assert books["failed_sends"] == 2          # 13, 14; 3 failed but the broker had it
    assert books["failed_but_delivered"] == 1
    assert books["held_at_stop"] == 2
    assert books["lost"] == 3                  # 8, 9, 17: nobody accounted for them
    assert books["lost_ranges"] == [[8, 9], [17, 17]]
    assert books["duplicates"] == 4 and books["unexpected"] == 0
    parts = ("delivered", "dropped_by_policy", "failed_sends", "held_at_stop", "lost")
    assert sum(books[k] for k in parts) == books["generated"]


def test_no_clamping_delivered_beyond_generated_is_reported():
    books = close_books(ledger(5), delivered={0, 1, 2, 3, 4, 5, 6})
    assert books["delivered"] == 5 and books["unexpected"] == 2 and books["lost"] == 0


def test_without_the_agent_counter_the_highest_delivered_number_is_only_a_lower_bound():
    # the tail beyond the highest delivered number cannot be seen: the books stay open, the gap is unknown
    books = close_books(ledger(None), delivered={0, 2})
    assert books["generated_from"].startswith("highest delivered")
    assert (books["generated"], books["lost"], books["unknown"], books["books_closed"]) == (3, 0, 1, False)


def test_ranges_and_event_parsing():
    assert ranges({5, 1, 2, 3}) == [[1, 3], [5, 5]]
    assert _seq_and_host(b'{"message":"42 GET /x 200","timestamp":"t","host":"vm-a-3","source_type":"demo_logs"}') == (42, "vm-a-3")
    assert _seq_and_host(b'{"host":"vm-b-1","message":"7 line"}') == (7, "vm-b-1")  # other field order
    assert _seq_and_host(b'{"message":"no-number here","host":"h"}') is None


class FakeContainer:
    def __init__(self, files: dict[str, bytes] | None):
        self.files = files

    def get_archive(self, path):
        if self.files is None:
            raise RuntimeError("no such path")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(f"accounting/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return [buf.getvalue()], {}


def test_agent_files_are_read_from_the_container():
    c = FakeContainer({"app_logs.generated": (9).to_bytes(8, "little"), "app_logs.ledger": b"dropped 4 6\nheld 8 8\n"})
    got = read_agent_files(c)
    assert got.generated == 9 and got.seqs["dropped"] == {4, 5, 6} and got.seqs["held"] == {8}
    assert read_agent_files(FakeContainer(None)).generated is None


@pytest.mark.parametrize("generated", [0, 1, 1000])
def test_books_close_for_any_size(generated):
    books = close_books(ledger(generated), delivered=set(range(0, generated, 2)))
    assert books["delivered"] + books["lost"] == generated
