"""Transfer figures: accuracy against shots, per-class gains over scratch, CKA."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kmnist_jax.plots.common import (
  annotate_cells,
  bar_width_in,
  figure,
  grouped_bars,
  save,
  style,
)


def accuracy_vs_shots(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """One panel per transfer direction: test accuracy against shots per class.

  `panels`: ``[{'title', 'shots': [labels], 'series': [{'name', 'mean' [S], 'std' [S]
  or None}]}]`` (the scratch baseline is one series, drawn dashed). Error bars: std
  over seeds. Size: (4.6 per panel + 0.6, 4.2) inches.
  """
  P = max(1, len(panels))
  with style():
    fig = figure(4.6 * P + 0.6, 4.2)
    axes = fig.subplots(1, P, squeeze=False)[0]
    for ax, panel in zip(axes, panels):
      x = np.arange(len(panel["shots"]))
      for s in panel["series"]:
        mean = np.asarray(s["mean"], np.float64)
        std = None if s.get("std") is None else np.nan_to_num(
            np.asarray(s["std"], np.float64))
        scratch = s["name"] == "scratch"
        ax.errorbar(x, 100 * mean, yerr=None if std is None else 100 * std, capsize=3,
                    marker="o", ms=4, lw=1.5, ls="--" if scratch else "-",
                    color="black" if scratch else None, label=s["name"])
      ax.set_xticks(x, [str(k) for k in panel["shots"]])
      ax.set_xlabel("labelled examples per class (k)")
      ax.set_ylabel("target test accuracy %")
      ax.grid(alpha=0.3)
      ax.set_title(panel["title"])
      if ax.get_legend_handles_labels()[0]:   # a panel with no finished runs stays empty
        ax.legend(fontsize=8, loc="lower right")
    if title:
      fig.suptitle(title)
    return save(fig, path)


def transfer_gain_bars(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """Per-class accuracy gain over scratch (percentage points), one panel per direction.

  `panels`: ``[{'title', 'labels': Labels, 'series': [{'name', 'mean' [C], 'std' [C]
  or None}]}]``. Size: (max(7, 0.35 C S + 2.5), 3.6 per panel + 0.6) inches.
  """
  P = max(1, len(panels))
  C = max((len(p["labels"].texts) for p in panels), default=10)
  S = max((len(p["series"]) for p in panels), default=1)
  with style(*[p["labels"] for p in panels]):
    fig = figure(bar_width_in(C, S), 3.6 * P + 0.6)
    axes = fig.subplots(P, 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
      labels = panel["labels"]
      grouped_bars(ax, [(ser["name"], ser["mean"], ser.get("std"))
                        for ser in panel["series"]], labels, scale=100.0)
      ax.axhline(0, color="black", lw=0.8)
      ax.set_ylabel("gain over scratch (pp)")
      ax.grid(axis="y", alpha=0.3)
      ax.set_title(panel["title"])
      ax.legend(fontsize=8)
    if title:
      fig.suptitle(title)
    return save(fig, path)


def cka_heatmaps(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """Linear CKA between the layers of two models, one heatmap per pair, values in cells.

  `panels`: ``[{'title', 'matrix' [R, K], 'rows': [names], 'cols': [names],
  'ylabel', 'xlabel'}]``. Colour scale fixed to [0, 1]. Size: (3.8 per panel + 1.2,
  3.8) inches, at most 3 panels per row.
  """
  P = max(1, len(panels))
  cols = min(3, P)
  rows = -(-P // cols)
  with style():
    fig = figure(3.8 * cols + 1.2, 3.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    drawn = []
    for ax, panel in zip(axes, panels):
      m = np.asarray(panel["matrix"], np.float64)
      drawn.append((ax, m, ax.imshow(m, cmap="viridis", vmin=0, vmax=1)))
      ax.set_xticks(range(m.shape[1]), panel["cols"], rotation=30, ha="right")
      ax.set_yticks(range(m.shape[0]), panel["rows"])
      ax.set_ylabel(panel.get("ylabel", ""))
      ax.set_xlabel(panel.get("xlabel", ""))
      ax.set_title(panel["title"], fontsize=10)
    for ax in axes[P:]:
      ax.set_visible(False)
    if drawn:
      fig.colorbar(drawn[0][2], ax=list(axes[:P]), fraction=0.03, pad=0.02,
                   label="linear CKA")
    for ax, m, im in drawn:
      annotate_cells(fig, ax, m, [[f"{v:.2f}" for v in row] for row in m], im)
    if title:
      fig.suptitle(title)
    return save(fig, path)

