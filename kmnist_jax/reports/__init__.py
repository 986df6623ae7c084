"""Reports: evaluators compute, reports render (big_vision's split).

An evaluator (:mod:`kmnist_jax.evaluators`) returns records and summaries, plain dicts
of numbers; the module of the same name here turns summaries into Markdown, CSV / JSON
tables and figures inside a :class:`kmnist_jax.report.Report` folder:
``render(summary, report, *, name=None, cjk_font="auto")`` for one setting and, where
settings are shown side by side, ``render_many([(name, summary), ...], report, ...)``.
Nothing here computes a number; :mod:`kmnist_jax.reports.common` holds the shared
cells (mean ± std) and file-name-safe names. Only :mod:`kmnist_jax.plots` imports
matplotlib, and the render functions import it when they draw.
"""

from kmnist_jax.reports import (
             attack,
             cka,
             classification,
             corruption,
             embedding,
             smoothing,
)

# Evaluator type (kmnist_jax.evaluators.REGISTRY) -> the module that renders it.
RENDERERS = {"attack": attack, "cka": cka, "classification": classification,
             "corruption": corruption, "embedding": embedding, "smoothing": smoothing}
