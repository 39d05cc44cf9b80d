"""The windowed inference engine: window grid, blending, prediction, how blocks are computed, dask cluster."""

from s2mask.engine.blend import Accumulator, taper, window_weight
from s2mask.engine.compute import compute_blocks
from s2mask.engine.predict import Model, class_names, count_windows, predict, predict_array, select_bands
from s2mask.engine.windows import WindowGrid, axis_starts, resolve_window

__all__ = [
    "Accumulator",
    "Model",
    "WindowGrid",
    "axis_starts",
    "class_names",
    "compute_blocks",
    "count_windows",
    "predict",
    "predict_array",
    "resolve_window",
    "select_bands",
    "taper",
    "window_weight",
]
