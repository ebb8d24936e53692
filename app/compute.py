"""Sharing the processor between sessions: every model forward pass of the app takes a turn.

Streamlit runs each browser session's script in its own thread of one process. Torch gives every
calling thread a team of ``torch.get_num_threads()`` workers, so eight sessions segmenting at once
would start eight teams on the same cores; teams that wait on each other crawl. Instead each
forward pass (a batch of slices) waits for a free slot: ``cores // torch threads`` slots (one on a
small machine), granted first come, first served, so a single image is not stuck behind a long
volume: they take turns batch by batch.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class FairSlots:
    """A first-come, first-served counting semaphore.

    Example:
        >>> slots = FairSlots(1)
        >>> with slots.turn():
        ...     slots.busy
        1
    """

    def __init__(self, count: int) -> None:
        self.count = max(1, count)
        self.busy = 0
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one slot for the duration of the ``with`` block."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            self._cond.wait_for(lambda: self._queue[0] is ticket and self.busy < self.count)
            self._queue.popleft()
            self.busy += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.busy -= 1
                self._cond.notify_all()


def slot_count() -> int:
    """How many forward passes may run at once without oversubscribing the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, torch.get_num_threads()))


_SLOTS = FairSlots(slot_count())


@contextmanager
def inference_turn() -> Iterator[None]:
    """Wait for this process's turn to run a forward pass (see the module docstring)."""
    with _SLOTS.turn():
        yield
