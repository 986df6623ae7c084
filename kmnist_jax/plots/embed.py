"""Embedding figures: 2-D maps coloured by class, class-separability bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kmnist_jax.plots.common import OKABE_ITO, Labels, class_colors, figure, save, style

PANEL_IN = 4.6


def embedding_grid_size(rows: int, cols: int) -> tuple[float, float]:
  return PANEL_IN * cols + 1.4, PANEL_IN * rows + 0.6


def embedding_grid(panels: Sequence[dict], path: str, *, cols: int,
                   title: str = "") -> str:
  """2-D embeddings, one panel each, coloured by class, legend per panel.

  `panels`: ``[{'title', 'xy' [N, 2], 'labels' [N], 'class_labels': Labels}]`` (None
  leaves a panel blank), filled row by row. Size: :func:`embedding_grid_size`.
  """
  rows = max(1, -(-len(panels) // cols))
  all_labels = [p["class_labels"] for p in panels if p is not None]
  with style(*all_labels):
    fig = figure(*embedding_grid_size(rows, cols))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, p in zip(axes, list(panels) + [None] * (len(axes) - len(panels))):
      ax.set_xticks([])
      ax.set_yticks([])
      if p is None:
        ax.axis("off")
        continue
      xy = np.asarray(p["xy"])
      y = np.asarray(p["labels"])
      lab: Labels = p["class_labels"]
      C = len(lab.texts)
      size = float(np.clip(8000 / max(len(xy), 1), 1.5, 12))  # points^2
      colors = class_colors(C)
      for c in range(C):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colors[c], alpha=0.6,
                   label=lab.texts[c], rasterized=True, linewidths=0)
      ax.set_title(p["title"], fontsize=10)
      if C <= 20:
        ax.legend(markerscale=5, fontsize=7, loc="best", framealpha=0.7,
                  ncol=1 if C <= 10 else 2, handletextpad=0.2, borderpad=0.3)
    if title:
      fig.suptitle(title)
    return save(fig, path)


def separability_height(n: int) -> float:
  return max(3.5, 0.32 * n + 1.4)


def separability_bars(rows: Sequence[dict], path: str, *, title: str = "") -> str:
  """kNN accuracy and silhouette score per (dataset, representation, method).

  `rows`: ``[{'name', 'knn_accuracy', 'silhouette'}]``. Size: (10, max(3.5, 0.32 N +
  1.4)) inches for N rows.
  """
  n = len(rows)
  names = [r["name"] for r in rows]
  fig = figure(10, separability_height(n))
  with style():
    a1, a2 = fig.subplots(1, 2)
    y = np.arange(n)
    bars = a1.barh(y, [r["knn_accuracy"] for r in rows], color=OKABE_ITO[0])
    a1.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    a1.set_xlim(0, 1.12)
    a1.set_xlabel("kNN accuracy (5-fold CV)")
    bars = a2.barh(y, [r["silhouette"] for r in rows], color=OKABE_ITO[1])
    a2.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    sil = [r["silhouette"] for r in rows] or [0.0]
    a2.set_xlim(min(0.0, min(sil)) - 0.1, max(0.0, max(sil)) + 0.15)
    a2.axvline(0, color="black", lw=0.8)
    a2.set_xlabel("silhouette score")
    for ax in (a1, a2):
      ax.set_yticks(y, names, fontsize=8)
      ax.invert_yaxis()
      ax.grid(axis="x", alpha=0.3)
    a2.set_yticklabels([])
    fig.suptitle(title or "class separability")
    return save(fig, path)

