"""Training events: appended to ``RUN/history.jsonl`` and handed to callbacks."""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.files import atomic_write
Event = dict[str, Any]
Callback = Callable[[Event], None]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, dict keys become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_history(path: Path) -> list[Event]:
    """All events of a ``history.jsonl``; a torn last line (crash mid-write) is skipped."""
    events = []
    if not Path(path).exists():
        return events
    for line in Path(path).read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class History:
    """Appends each event as one JSON line (flushed at once) and calls every callback.

    ``write = False`` (distributed ranks other than 0) keeps the callbacks and skips the file.
    """

    def __init__(self, path: Path, callbacks: Iterable[Callback] = (), write: bool = True) -> None:
        self.path, self.callbacks, self.write = Path(path), list(callbacks), write
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, epoch: int) -> None:
        """Keep only events of epochs ``<= epoch`` (resume: drop a partial epoch's steps)."""
        kept = [e for e in read_history(self.path) if e.get("epoch", 0) <= epoch]
        atomic_write(self.path, "".join(json.dumps(e) + "\n" for e in kept))

    def emit(self, event: Event) -> None:
        event = _clean(event)
        if self.write:
            with self.path.open("a") as f:
                f.write(json.dumps(event) + "\n")
        for callback in self.callbacks:
            callback(event)
