"""Session-state helpers: choices that survive page switches and reruns."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")

CHECKPOINT = "checkpoint"  # path (str) of the model the pages use
RUN = "run"  # name of the run shown on the Train page
LEVEL = "level"  # pruning level used on the Segment page


def persistent_selectbox(
    label: str, options: Sequence[T], name: str, format_func: Callable[[T], str] = str,
    container: Any = None, **kwargs: Any,
) -> T | None:
    """A selectbox whose choice is kept in ``st.session_state[name]`` across pages.

    Streamlit drops a widget's state when a page without it runs; the choice is mirrored under
    ``name`` (on each change) and handed back to the widget when it reappears. Other pages may
    set ``name`` too (for example "use this model") to preselect an option.
    """
    key = f"_widget_{name}"
    if st.session_state.get(name) in options:
        st.session_state[key] = st.session_state[name]
    elif st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    value = (container or st).selectbox(label, options, key=key, format_func=format_func,
                                        on_change=_mirror, args=(key, name), **kwargs)
    st.session_state[name] = value
    return value


def _mirror(key: str, name: str) -> None:
    st.session_state[name] = st.session_state[key]


def session_cache(name: str) -> dict[Any, Any]:
    """A per-session dict under ``st.session_state[name]`` for results worth keeping (evaluations)."""
    return st.session_state.setdefault(name, {})
