"""What every page shares: page config, the app's own style sheet and the sidebar navigation."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

STATIC = Path(__file__).resolve().parent / "static"
FAVICON = STATIC / "favicon.png"  # served by the app itself: a :material/ page icon is fetched from fonts.gstatic.com
STYLE = STATIC / "studio.css"

PAGES = (  # (script, label, icon); Streamlit's own page list is hidden in .streamlit/config.toml
    ("streamlit_app.py", "Home", ":material/home:"),
    ("pages/1_Train.py", "Train", ":material/model_training:"),
    ("pages/2_Compare.py", "Compare", ":material/compare:"),
    ("pages/3_Segment.py", "Segment", ":material/brush:"),
)


def setup_page(title: str) -> None:
    """Wide layout, the browser tab title, and links to every page in the sidebar."""
    st.set_page_config(page_title=f"{title} · UNet++ Studio", page_icon=str(FAVICON), layout="wide")
    st.html(STYLE)  # style only: takes no space on the page
    with st.sidebar:
        st.markdown("**UNet++ Studio**")
        for script, label, icon in PAGES:
            st.page_link(script, label=label, icon=icon)
        st.divider()
