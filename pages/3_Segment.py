"""Segment page: upload images or scans (DICOM, NIfTI, TIFF stacks), view the lesion per slice, download results."""
from __future__ import annotations

import streamlit as st

from app.charts import lesion_area_figure, probability_figure
from app.checkpoints import pick_checkpoint
from app.guidance import input_differences, level_quality
from app.images import class_legend, enlarge, overlay, shrink
from app.layout import setup_page
from app.segmentation import TYPES, Result, read_uploads, results_table, segment, upload_limit_mb
from app.state import LEVEL, persistent_selectbox
from core.data.io import MAX_IMAGE_PIXELS
from core.scans import MAX_VOXELS
from core.data.intensity import windows_of
from core.inference import label_values
from core.levels import default_level, level_name, model_levels
from core.lesions import csv_text
from core.outputs import image_bytes, slice_masks_zip, unique_stems, zip_bytes
from core.postprocess import rule_of

setup_page("Segment")
st.title("Segment")
loaded = pick_checkpoint()
model, meta = loaded.model, loaded.meta
levels = model_levels(model)
with st.sidebar:
    if st.session_state.get(LEVEL) not in levels:
        st.session_state[LEVEL] = default_level(model)
    level = persistent_selectbox("Level", levels, LEVEL, level_name,
                                 help="L1 is the smallest and fastest head, L4 the deepest; ensemble averages all")
    rule = rule_of(meta, level)  # chosen on validation folds for this level where the checkpoint carries one
    rule_key = f"{loaded.version}:{level}"  # another model or level brings its own rule to both sliders
    threshold = st.slider("Threshold", 0.05, 0.95, float(rule["threshold"]), 0.05, key=f"threshold:{rule_key}",
                          help="Probability from which a pixel counts as lesion (the default is the model's own)")
    components = st.slider("Drop small lesion parts", 0.0, 1.0, float(rule["min_component_fraction"]), 0.05,
                           key=f"components:{rule_key}",
                           help="Remove connected lesion parts (3D in a volume) smaller than this share of the "
                                "largest: 0 keeps all, 1 only the largest (the default is the model's own)")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05)
    names = meta.get("labels") or []
    if len(names) > 2:  # a multi-class model: which colour is which class
        st.caption("Classes: " + class_legend(names))
    quality = level_quality(meta, level)
    if quality is not None:
        (st.warning if quality.weak else st.caption)(quality.sentence())

limits = (f"Up to {upload_limit_mb()} MB per file, {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels per image and "
          f"{MAX_VOXELS / 1e6:.0f} million voxels per volume.")
uploads = st.file_uploader(
    "Images or scans", type=TYPES, accept_multiple_files=True,
    help="PNG, JPG, BMP or TIFF images; multi-page TIFF stacks; DICOM files (.dcm); a zip of one DICOM series or "
         "of images; NIfTI volumes (.nii, .nii.gz); for a model of several channels, a case's channel files "
         f"together (<case>_0000.nii.gz, <case>_0001.nii.gz, ...). {limits}",
)
if not uploads:
    st.info("Upload brain MRI: Kaggle LGG slices (256×256 RGB TIFF: pre-contrast, FLAIR, post-contrast), a NIfTI "
            "volume, a DICOM file or a zip of a DICOM series, a multi-page TIFF, or several images at once. "
            f"{limits}", icon=":material/upload:")
    st.stop()

scans, keys, errors = read_uploads([(u.name, u.getvalue()) for u in uploads], model.in_channels,
                                   windows_of(meta["preprocessing"]), meta["preprocessing"].get("axis", "axial"))
for error in errors:
    st.error(error, icon=":material/error:")
if not scans:
    st.stop()

total = sum(len(s.slices) for s in scans)
bar = st.progress(0.0, text="Segmenting…") if total > 1 else None
results: list[Result] = []
done = 0
for scan, key, stem in zip(scans, keys, unique_stems([s.name for s in scans])):
    def progress(fraction: float, before: int = done, n: int = len(scan.slices)) -> None:
        if bar is not None:
            bar.progress(min(1.0, (before + fraction * n) / total), text=f"Segmenting {scan.name}…")

    results.append(segment(loaded, level, key, scan, stem, threshold, components, progress))
    done += len(scan.slices)
if bar is not None:
    bar.empty()


def input_notes(r: Result) -> None:
    """How this input differs from the training data, and a hint when a weak level finds nothing."""
    differences = input_differences(r.scan, meta)
    if differences:
        st.warning(f"{r.scan.name} differs from the model's training data: " + "; ".join(differences) + ".")
    if quality is not None and quality.weak and r.summary["lesion_voxels"] == 0:
        st.info(f"No lesion found at {level_name(level)} (max probability {r.summary['max_probability']:.2f}). "
                f"{quality.sentence()} Try {level_name(quality.deepest)} before concluding there is none.")


def show_image(r: Result) -> None:
    """A 2D upload: overlay, probability map, lesion area, downloads."""
    st.subheader(r.scan.name)
    picture = overlay(r.scan.slices[0], r.masks[0], opacity)
    colours = "classes as in the legend" if len(names) > 2 else "lesion in red"
    left, right = st.columns(2)
    left.image(enlarge(picture), width="stretch", caption=f"{level_name(level)} at threshold {threshold:.2f}, {colours}")
    right.plotly_chart(probability_figure(shrink(r.lesion[0], 256), shrink(r.scan.slices[0], 256)),
                       key=f"heatmap_{r.stem}")
    cols = st.columns(4)
    pixels = int((r.masks[0] > 0).sum())
    cols[0].metric("Lesion area", f"{pixels:,} px")
    cols[1].metric("Share of the image", f"{100 * pixels / r.masks[0].size:.2f} %")
    for col, kind, image in ((cols[2], "mask", r.masks[0]), (cols[3], "overlay", picture)):
        col.download_button(f"{kind.capitalize()} PNG", image_bytes(image), f"{r.stem}_{kind}.png", "image/png",
                            icon=":material/download:", on_click="ignore", key=f"{kind}_{r.stem}")
    input_notes(r)


@st.fragment
def show_volume(r: Result) -> None:
    """A volume: slice viewer with overlay and outline, lesion statistics, area chart, downloads."""
    scan, summary, rows = r.scan, r.summary, r.rows
    st.subheader(scan.name)
    spacing = " × ".join(f"{v:g}" for v in scan.spacing) + " mm" if scan.spacing else "spacing unknown"
    h, w = scan.slices.shape[1:3]
    st.caption(f"{scan.kind}, {len(scan.slices)} slices of {w}×{h}, voxel {spacing}. Intensity: "
               f"{scan.intensity_note}.")  # channels: in input_notes' warning
    input_notes(r)
    cols = st.columns(4)
    cols[0].metric("Lesion voxels", f"{summary['lesion_voxels']:,}")
    cols[1].metric("Lesion volume", f"{summary['lesion_ml']:.2f} mL" if summary["lesion_ml"] is not None else "n/a",
                   help=None if scan.voxel_ml else "The scan has no voxel spacing, so no volume in mL")
    cols[2].metric("Slices with lesion", f"{summary['slices_with_lesion']} of {len(scan.slices)}")
    cols[3].metric("Max probability", f"{summary['max_probability']:.2f}")
    largest = max(range(len(rows)), key=lambda i: rows[i]["lesion_pixels"]) + 1
    index = st.slider("Slice", 1, len(scan.slices), largest, key=f"slice_{r.stem}",
                      help="Starts at the slice with the largest lesion area")
    left, right = st.columns(2)
    row = rows[index - 1]
    area = f"{row['lesion_mm2']:,.1f} mm²" if row["lesion_mm2"] is not None else f"{row['lesion_pixels']:,} px"
    left.image(enlarge(overlay(scan.slices[index - 1], r.masks[index - 1], opacity)), width="stretch",
               caption=f"Slice {index} of {len(scan.slices)}: lesion {area}, {level_name(level)} at threshold {threshold:.2f}")
    right.plotly_chart(lesion_area_figure(rows, index), key=f"area_{r.stem}")
    cols = st.columns(3)
    cols[0].download_button("Mask (NIfTI)", scan.mask_nifti_bytes(label_values(r.masks)), f"{r.stem}_mask.nii.gz",
                            "application/gzip", icon=":material/download:", on_click="ignore", key=f"nii_{r.stem}",
                            help="uint8 label map (0 background, 1.. the classes) with the input's shape and affine "
                                 "(DICOM: affine from its geometry)")
    cols[1].download_button("Masks (PNG per slice, zip)", slice_masks_zip(r.masks, r.stem), f"{r.stem}_masks.zip",
                            "application/zip", icon=":material/folder_zip:", on_click="ignore", key=f"zip_{r.stem}")
    cols[2].download_button("Per-slice statistics (CSV)", csv_text(rows), f"{r.stem}_slices.csv", "text/csv",
                            icon=":material/table:", on_click="ignore", key=f"csv_{r.stem}")


if len(results) > 1:
    st.subheader(f"{len(results)} files")
    table = results_table(results)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "lesion pixels / voxels": st.column_config.NumberColumn(format="%d"),
        "lesion mL": st.column_config.NumberColumn(format="%.2f", help="Empty where the file has no voxel spacing"),
        "max probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
    })
    files: dict[str, bytes] = {"summary.csv": csv_text([r.summary for r in results]).encode()}
    for r in results:
        if r.scan.is_volume:
            files[f"{r.stem}_mask.nii.gz"] = r.scan.mask_nifti_bytes(label_values(r.masks))
            files[f"{r.stem}_slices.csv"] = csv_text(r.rows).encode()
        else:
            files[f"{r.stem}_mask.png"] = image_bytes(r.masks[0])
    st.download_button(f"Download all masks ({len(results)} files, zip)", zip_bytes(files), "segmentations.zip",
                       "application/zip", icon=":material/folder_zip:", on_click="ignore")

for r in results:
    (show_volume if r.scan.is_volume else show_image)(r)
