"""Segment page: upload images, see the lesion overlay and probabilities, download masks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import probability_figure
from app.checkpoints import pick_checkpoint
from app.images import enlarge, foreground, overlay, png_bytes, shrink, zip_bytes
from app.layout import setup_page
from app.segmentation import Result, decode_upload, digest, probabilities, unique_stems, upload_limit_mb
from app.state import LEVEL, persistent_selectbox
from app.theme import level_name
from core.data import DataError
from core.inference import model_levels, probabilities_to_mask

TYPES = ["png", "jpg", "jpeg", "tif", "tiff"]

setup_page("Segment")
st.title("Segment")
checkpoint, model, meta = pick_checkpoint()
levels = model_levels(model)
with st.sidebar:
    if st.session_state.get(LEVEL) not in levels:
        st.session_state[LEVEL] = max(model.levels)
    level = persistent_selectbox("Level", levels, LEVEL, level_name,
                                 help="L1 is the smallest and fastest head, L4 the deepest; ensemble averages all")
    threshold = st.slider("Threshold", 0.05, 0.95, 0.5, 0.05, help="Probability from which a pixel counts as lesion")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05)

uploads = st.file_uploader(
    "Images", type=TYPES, accept_multiple_files=True,
    help=f"PNG, JPG or TIFF, up to {upload_limit_mb()} MB each. LGG slices as they come: 256×256 RGB TIFF.",
)
if not uploads:
    st.info("Upload one or several images: brain MRI slices such as the Kaggle LGG TIFFs (pre-contrast, FLAIR "
            "and post-contrast as RGB), or any image of the kind the model was trained on.", icon=":material/upload:")
    st.stop()

mtime = checkpoint.stat().st_mtime
bar = st.progress(0.0, text="Segmenting…") if len(uploads) > 1 else None
results: list[Result] = []
for i, (upload, stem) in enumerate(zip(uploads, unique_stems([u.name for u in uploads]))):
    data = upload.getvalue()
    try:
        image = decode_upload(upload.name, data, model.in_channels)
        probs = probabilities(str(checkpoint), mtime, str(level), digest(data), image)
    except (DataError, ValueError) as err:
        st.error(str(err), icon=":material/error:")
        continue
    finally:
        if bar is not None:
            bar.progress((i + 1) / len(uploads), text=f"Segmented {i + 1} of {len(uploads)}")
    mask = probabilities_to_mask(probs, threshold)
    results.append(Result(upload.name, stem, probs, mask, overlay(image, mask, opacity)))
if bar is not None:
    bar.empty()
if not results:
    st.stop()

if len(results) > 1:
    st.subheader(f"{len(results)} images")
    st.dataframe(pd.DataFrame([{"file": r.name, "size": f"{r.mask.shape[1]}×{r.mask.shape[0]}",
                                "lesion pixels": r.lesion_pixels, "lesion %": r.lesion_percent} for r in results]),
                 hide_index=True, width="stretch",
                 column_config={"lesion %": st.column_config.NumberColumn(format="%.2f %%")})
    files = {f"{r.stem}_{kind}.png": png_bytes(picture)
             for r in results for kind, picture in (("mask", r.mask), ("overlay", r.picture))}
    st.download_button(f"Download all masks and overlays ({len(results)} images, zip)", zip_bytes(files),
                       "segmentations.zip", "application/zip", icon=":material/folder_zip:", on_click="ignore")

for r in results:
    st.subheader(r.name)
    left, right = st.columns(2)
    left.image(enlarge(r.picture), width="stretch",
               caption=f"{level_name(level)} at threshold {threshold:.2f}, lesion in red")
    right.plotly_chart(probability_figure(shrink(foreground(r.probs), 256)), key=f"heatmap_{r.stem}")
    cols = st.columns(4)
    cols[0].metric("Lesion area", f"{r.lesion_pixels:,} px")
    cols[1].metric("Share of the image", f"{r.lesion_percent:.2f} %")
    for col, kind, picture in ((cols[2], "mask", r.mask), (cols[3], "overlay", r.picture)):
        col.download_button(f"{kind.capitalize()} PNG", png_bytes(picture), f"{r.stem}_{kind}.png", "image/png",
                            icon=":material/download:", on_click="ignore", key=f"{kind}_{r.stem}")
