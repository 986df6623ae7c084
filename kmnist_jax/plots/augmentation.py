"""Figures of the augmentation study: arrays in, a PNG path out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kmnist_jax.plots.common import (
    Labels,
    annotate_cells,
    diverging,
    figure,
    palette,
    save,
    style,
)


def sample_grid(rows: Sequence[tuple[str, np.ndarray]], labels: Labels, path: str, *,
                title: str = "") -> str:
  """One row per (name, images [N, 28, 28] in [0, 1]); column j is class j's image."""
  n = len(rows[0][1])
  with style(labels):
    fig = figure(0.9 * n + 1.6, 0.95 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for i, (name, imgs) in enumerate(rows):
      for j in range(n):
        ax = axes[i, j]
        ax.imshow(np.asarray(imgs[j]).squeeze(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
          ax.set_title(labels.short[j], fontsize=9)
        if j == 0:
          ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
      fig.suptitle(title)
    return save(fig, path)


def gain_heatmap(gain_pp, row_names: Sequence[str], col_names: Sequence[str], path: str,
                 *, labels: Labels | None = None, title: str = "",
                 colorbar: str = "pp") -> str:
  """Rows x columns of signed changes (percentage points), diverging around 0."""
  g = np.asarray(gain_pp, np.float64)
  lim = max(0.5, float(np.nanmax(np.abs(g))) if g.size else 0.5)
  with style(labels):
    fig = figure(0.7 * len(col_names) + 3.0, 0.5 * len(row_names) + 1.6)
    ax = fig.subplots()
    im = ax.imshow(g, cmap=diverging(), vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(col_names)), col_names, fontsize=8,
                  rotation=45 if max(map(len, col_names)) > 4 else 0, ha="right"
                  if max(map(len, col_names)) > 4 else "center")
    ax.set_yticks(range(len(row_names)), row_names, fontsize=8)
    annotate_cells(fig, ax, g, [[f"{v:+.1f}" for v in row] for row in g], im)
    fig.colorbar(im, ax=ax, label=colorbar)
    if title:
      ax.set_title(title, fontsize=10)
    return save(fig, path)


def accuracy_vs_mce(points: Sequence[dict], path: str, *, title: str = "") -> str:
  """Clean accuracy (x, %) against mCE (y, %) per policy: points [{name, acc, acc_std,
  mce, mce_std, dataset}]; one marker colour per dataset, error bars = std."""
  datasets = list(dict.fromkeys(p["dataset"] for p in points))
  colors = dict(zip(datasets, palette(len(datasets))))
  with style():
    fig = figure(6.4, 4.6)
    ax = fig.subplots()
    for ds in datasets:
      pts = [p for p in points if p["dataset"] == ds]
      ax.errorbar([100 * p["acc"] for p in pts], [p["mce"] for p in pts],
                  xerr=[100 * (p.get("acc_std") or 0.0) for p in pts],
                  yerr=[p.get("mce_std") or 0.0 for p in pts], fmt="o",
                  color=colors[ds], label=ds, capsize=2)
      for p in pts:
        ax.annotate(p["name"], (100 * p["acc"], p["mce"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("clean test accuracy (%)")
    ax.set_ylabel("mCE (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
      ax.set_title(title, fontsize=10)
    return save(fig, path)
