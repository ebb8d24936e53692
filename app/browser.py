"""The app in a real browser, as the browser test and ``bench/load_test.py`` drive it: Debian's Chromium,
its launch flags, a free local port and the hosts a page may reach."""
from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (apt-get install -y chromium), never a downloaded one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # no GPU, no background requests
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outside(urls: Iterable[str]) -> list[str]:
    """The URLs that would leave the machine: any network scheme to a host other than the app's own."""
    return [u for u in urls if urllib.parse.urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urllib.parse.urlsplit(u).hostname not in LOCAL_HOSTS]
