"""Figures (the only package that imports matplotlib): functions take arrays and a path.

By concept: :mod:`.common` (class labels and CJK font, colours, cell text, bars, figure
and atomic save), :mod:`.classification`, :mod:`.robustness`, :mod:`.transfer`,
:mod:`.embed`. Every figure function is also importable as ``kmnist_jax.plots.<name>``.
"""

from kmnist_jax.plots.classification import (
                                             confusion_heatmap,
                                             confusion_size,
                                             learning_curves,
                                             mistakes_grid,
                                             mistakes_grid_size,
                                             per_class_accuracy,
                                             per_class_comparison,
                                             per_class_error_over_epochs,
                                             reliability_diagram,
)
from kmnist_jax.plots.common import (
                                             BASE_FONT,
                                             DPI,
                                             MIN_CELL_PT,
                                             OKABE_ITO,
                                             SEQUENTIAL,
                                             Labels,
                                             annotate_cells,
                                             bar_width_in,
                                             cell_fontsize,
                                             class_colors,
                                             class_labels,
                                             covers,
                                             diverging,
                                             figure,
                                             find_cjk_font,
                                             grid_shape,
                                             grouped_bars,
                                             palette,
                                             pct,
                                             percent_colorbar,
                                             png_size,
                                             register_font,
                                             save,
                                             style,
)
from kmnist_jax.plots.embed import (
                                             PANEL_IN,
                                             embedding_grid,
                                             embedding_grid_size,
                                             separability_bars,
                                             separability_height,
)
from kmnist_jax.plots.robustness import (
                                             accuracy_vs_epsilon,
                                             certified_accuracy_vs_radius,
                                             corruption_heatmap,
                                             corruption_heatmap_size,
                                             error_vs_severity,
                                             error_vs_severity_size,
                                             image_mosaic,
                                             robust_per_class,
)
from kmnist_jax.plots.transfer import accuracy_vs_shots, cka_heatmaps, transfer_gain_bars

__all__ = [
    "accuracy_vs_epsilon", "accuracy_vs_shots", "annotate_cells", "bar_width_in",
    "BASE_FONT", "cell_fontsize", "certified_accuracy_vs_radius", "cka_heatmaps",
    "class_colors", "class_labels",
    "confusion_heatmap", "confusion_size", "corruption_heatmap",
    "corruption_heatmap_size", "covers", "diverging", "DPI", "embedding_grid",
    "embedding_grid_size", "error_vs_severity", "error_vs_severity_size", "figure",
    "find_cjk_font", "grid_shape", "grouped_bars", "image_mosaic", "Labels",
    "learning_curves", "MIN_CELL_PT", "mistakes_grid", "mistakes_grid_size",
    "OKABE_ITO", "palette", "PANEL_IN", "pct", "per_class_accuracy",
    "per_class_comparison", "per_class_error_over_epochs", "percent_colorbar",
    "png_size", "register_font", "reliability_diagram", "robust_per_class", "save",
    "separability_bars", "separability_height", "SEQUENTIAL", "style",
    "transfer_gain_bars",
]
