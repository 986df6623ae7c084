"""Reports: evaluators compute, reports render (big_vision's split).

:mod:`kmnist_jax.reports.base` is the report folder itself (:class:`Report`: Markdown,
tables as .md / .csv / .json, figures, metrics.json) and the cell helpers
(:func:`pct`, :func:`pct_pm`, :func:`markdown_table`), re-exported here. An evaluator
(:mod:`kmnist_jax.evaluators`) returns records and summaries, plain dicts of numbers;
the module of the same name here turns summaries into Markdown, CSV / JSON tables and
figures inside a :class:`Report`: ``render(summary, report, *, name=None,
cjk_font="auto")`` for one setting and, where settings are shown side by side,
``render_many([(name, summary), ...], report, ...)``. Nothing here computes a number;
:mod:`kmnist_jax.reports.common` holds the shared cells (mean ± std) and
file-name-safe names. Only :mod:`kmnist_jax.plots` imports matplotlib, and the render
functions import it when they draw.

The renderers (and through them the evaluators and JAX) are imported on first use
(``reports.classification``, ``reports.RENDERERS``), so that :class:`Report` is as cheap
to import as :mod:`kmnist_jax.io` for the code that only writes tables.
"""

import importlib

from kmnist_jax.reports.base import (  # noqa: F401  (re-exported)
  Report,
  cell,
  markdown_table,
  pct,
  pct_pm,
)

# Evaluator types (kmnist_jax.evaluators.REGISTRY), each rendered by the module of its
# name here.
RENDERER_TYPES = ("attack", "cka", "classification", "corruption", "embedding",
                  "smoothing")


def __getattr__(name: str):
  """``RENDERERS`` ({evaluator type: its renderer module}) and the renderer modules,
  imported when first asked for."""
  if name in RENDERER_TYPES:
    return importlib.import_module(f"{__name__}.{name}")
  if name == "RENDERERS":
    return {t: importlib.import_module(f"{__name__}.{t}") for t in RENDERER_TYPES}
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
