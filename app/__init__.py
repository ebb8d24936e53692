"""Streamlit UI helpers shared by the UNet++ Studio pages; the work itself is done by ``core``."""
