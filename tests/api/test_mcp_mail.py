"""An SSE stream's answers go out by number, whatever order their calls finish in.

Answers of the stream's own process are ordered without the store (what this file
checks); answers from other processes come through it (``test_mcp_nodes.py``).
"""

from __future__ import annotations

from typing import Any

from nocturnus.api.mcp_mail import SKIPPED, Box, MailPoller


class Received:
    """A stream that keeps what it is sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.is_closing = False
        self.pending = 0

    def push(self, message: Any) -> None:
        self.messages.append(message)


def poller_with(stream: Received) -> MailPoller:
    def unused() -> Any:
        raise AssertionError("answers of this process never touch the store")

    poller = MailPoller("here", unused, unused, max_pending=64)
    poller.attach("s", Box(stream, "db", "t"))
    return poller


def test_an_answer_waits_for_those_numbered_before_it() -> None:
    stream = Received()
    poller = poller_with(stream)
    for seq in (1, 2, 3):
        poller.expect("s", seq)
    poller.arrive("s", 3, "third")
    poller.arrive("s", 2, "second")
    assert stream.messages == []
    poller.arrive("s", 1, "first")
    assert stream.messages == ["first", "second", "third"]


def test_a_call_without_an_answer_gives_its_turn_away() -> None:
    stream = Received()
    poller = poller_with(stream)
    poller.expect("s", 1)
    poller.expect("s", 2)
    poller.arrive("s", 2, "second")
    poller.arrive("s", 1, SKIPPED)
    assert stream.messages == ["second"]


def test_a_slow_reader_holds_answers_back_until_it_reads() -> None:
    stream = Received()
    poller = poller_with(stream)
    stream.pending = 64
    poller.expect("s", 1)
    poller.arrive("s", 1, "first")
    assert stream.messages == []
    box = poller.boxes["s"]
    assert box.waiting() == 65  # counted against new POSTs
