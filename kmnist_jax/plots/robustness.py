"""Robustness figures: per-class x corruption heatmaps, error against severity,
accuracy against epsilon, per-class robust accuracy, the corruption grid mosaic,
certified accuracy against the radius, clean against robust accuracy per method."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from kmnist_jax.plots.common import (
  SEQUENTIAL,
  Labels,
  annotate_cells,
  bar_width_in,
  diverging,
  figure,
  grid_shape,
  grouped_bars,
  palette,
  percent_colorbar,
  save,
  style,
)

MARKS = "osD^v<>ph"  # marker per series, so lines differ by more than colour

def corruption_heatmap_size(num_classes: int, columns: int) -> tuple[float, float]:
  return max(8.0, 0.45 * columns + 3.0), max(4.5, 0.38 * num_classes + 2.6)


def corruption_heatmap(accuracy, labels: Labels, columns: Sequence[str], path: str, *,
                       title: str = "", gain: bool = False) -> str:
  """Per-class x corruption accuracy in %: rows classes, columns 'clean' and each
  corruption (pooled over severities), values written in the cells when they fit.

  `accuracy`: fractions [C, K]. With `gain`, the values are signed accuracy differences
  (fractions) drawn in percentage points on the blue-orange diverging map, symmetric
  around 0. Size: :func:`corruption_heatmap_size` inches.
  """
  acc = np.asarray(accuracy, np.float64)
  C, K = acc.shape
  v = 100 * acc
  with style(labels):
    fig = figure(*corruption_heatmap_size(C, K))
    ax = fig.add_subplot()
    if gain:
      lim = max(1.0, float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 1.0)
      im = ax.imshow(v, cmap=diverging(), vmin=-lim, vmax=lim, aspect="auto")
      unit = "accuracy gain (percentage points)"
    else:
      im = ax.imshow(v, cmap=SEQUENTIAL, vmin=0, vmax=100, aspect="auto")
      unit = "accuracy (%)"
    percent_colorbar(fig, im, ax, unit, fraction=0.03, pad=0.02)
    ax.set_xticks(range(K), [str(c).replace("_", " ") for c in columns], rotation=55,
                  ha="right", fontsize=8)
    ax.set_yticks(range(C), labels.texts)
    fmt = (lambda x: f"{x:+.0f}") if gain else (lambda x: f"{x:.0f}")
    annotate_cells(fig, ax, v, [[fmt(x) if np.isfinite(x) else "" for x in row]
                                for row in v], im)
    ax.set_title(title or ("per-class accuracy gain (pp) under each corruption" if gain
                           else "per-class accuracy (%) under each corruption"))
    return save(fig, path)


def error_vs_severity_size(num_corruptions: int, cols: int = 5) -> tuple[float, float]:
  rows, cols = grid_shape(max(num_corruptions, 1), cols)
  return 2.8 * cols + 0.4, 2.2 * rows + 0.9


def error_vs_severity(series: Sequence[dict], severities: Sequence[int], path: str, *,
                      cols: int = 5, title: str = "") -> str:
  """One panel per corruption: error against severity, one line per model, the
  model's clean error as a dotted line at severity 0.

  `series`: ``[{'name', 'clean': float, 'errors': {corruption: [S]}}]`` (the same
  corruptions in each). Size: :func:`error_vs_severity_size` inches.
  """
  names = list(series[0]["errors"]) if series else []
  rows, cols = grid_shape(max(len(names), 1), cols)
  sev = [0] + list(severities)
  colors = palette(len(series))
  with style():
    fig = figure(*error_vs_severity_size(len(names), cols))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for ax, name in zip(axes, names):
      for k, s in enumerate(series):
        y = 100 * np.asarray([s["clean"]] + list(s["errors"][name]), np.float64)
        ax.plot(sev, y, marker=MARKS[k % len(MARKS)], ms=3.5, lw=1.2, color=colors[k],
                label=s["name"])
      ax.set_title(name.replace("_", " "), fontsize=9)
      ax.set_ylim(0, 100)
      ax.set_xticks(sev)
      ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
      ax.set_visible(False)
    for ax in axes[::cols]:
      ax.set_ylabel("error (%)", fontsize=8)
    if series:
      fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                 ncol=min(len(series), 4), fontsize=8)
    fig.suptitle(title or "error (%) vs severity (0 = clean)")
    return save(fig, path)


_ATTACK_STYLE = {"fgsm": "--", "pgd": "-.", "autoattack": "-", "square": ":"}


def accuracy_vs_epsilon(curves: Sequence[dict], path: str, *, title: str = "") -> str:
  """Accuracy against the L-inf radius, several models / datasets / attacks on one
  axes: colour per model, line style per attack (FGSM dashed, PGD solid).

  `curves`: ``[{'name', 'attack', 'epsilons' [E], 'accuracy' [E]}]``. Size: 8 x 5 in.
  """
  models_ = list(dict.fromkeys(c["name"] for c in curves))
  colors = palette(len(models_))
  with style():
    fig = figure(8, 5)
    ax = fig.add_subplot()
    for c in curves:
      k = models_.index(c["name"])
      ax.plot(c["epsilons"], 100 * np.asarray(c["accuracy"], np.float64),
              marker=MARKS[k % len(MARKS)], ms=4, ls=_ATTACK_STYLE.get(c["attack"], ":"),
              color=colors[k],
              label=f"{c['name']}, {c['attack'].upper()}")
    ax.set_xlabel("epsilon (L-inf, pixels in [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "accuracy (%) under attack (AutoAttack solid, PGD dash-dot, "
                 "FGSM dashed, others dotted)")
    return save(fig, path)


def robust_per_class(series: Sequence[dict], labels: Labels, path: str, *,
                     title: str = "") -> str:
  """Grouped bars of per-class accuracy, one bar per series (e.g. clean, FGSM at eps,
  PGD at eps). `series`: ``[{'name', 'accuracy' [C]}]``. Size: as
  :func:`per_class_comparison`, but in % from 0 (robust accuracy can be 0: such bars
  get a marker and their value)."""
  C = len(labels.texts)
  S = len(series)
  with style(labels):
    fig = figure(bar_width_in(C, S), 4.8)
    ax = fig.add_subplot()
    grouped_bars(ax, [(ser["name"], ser["accuracy"], None) for ser in series], labels,
                 scale=100.0, near_zero=2.0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (recall, %)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "per-class robust accuracy (%)")
    return save(fig, path)


def image_mosaic(mosaic, path: str, *, title: str, xticks: tuple, yticks: tuple) -> str:
  """A grey-scale mosaic (values 0-1, ink white on black) at a fixed scale per pixel,
  with labelled column blocks on top and rows on the left (the corruption grid)."""
  scale = 0.022  # inches per mosaic pixel
  fig = figure(1.6 + mosaic.shape[1] * scale, 0.7 + mosaic.shape[0] * scale, layout=None)
  fw, fh = fig.get_figwidth(), fig.get_figheight()
  ax = fig.add_axes((1.5 / fw, 0.1 / fh, mosaic.shape[1] * scale / fw,
                     mosaic.shape[0] * scale / fh))
  ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="equal")
  ax.set_facecolor("white")
  ax.set_xticks(*xticks)
  ax.xaxis.tick_top()
  ax.set_yticks(*yticks)
  ax.tick_params(length=0)
  for side in ax.spines.values():
    side.set_visible(False)
  fig.suptitle(title, y=1 - 0.05 / fh, va="top", fontsize=10)
  return save(fig, path)


_SIGMA_STYLES = ("-", "--", ":", "-.")


def certified_accuracy_vs_radius(curves: Sequence[dict], path: str, *,
                                 title: str = "") -> str:
  """Randomized smoothing: certified accuracy against the L2 radius, several models
  and noise levels on one axes: colour per model, line style per sigma.

  `curves`: ``[{'name', 'sigma', 'radii' [K], 'accuracy' [K]}]`` (fractions; the
  accuracy at radius r counts the examples certified correct with a radius >= r, so
  it holds on (radii[i-1], radii[i]] the value at radii[i]: drawn as steps that
  change at the left end). Size: 8 x 5 in.
  """
  models_ = list(dict.fromkeys(c["name"] for c in curves))
  sigmas = list(dict.fromkeys(c["sigma"] for c in curves))
  colors = palette(len(models_))
  with style():
    fig = figure(8, 5)
    ax = fig.add_subplot()
    for c in curves:
      k, j = models_.index(c["name"]), sigmas.index(c["sigma"])
      ax.plot(c["radii"], 100 * np.asarray(c["accuracy"], np.float64),
              ls=_SIGMA_STYLES[j % len(_SIGMA_STYLES)], lw=1.6, color=colors[k],
              drawstyle="steps-pre", label=f"{c['name']}, σ={c['sigma']:g}")
    ax.set_xlabel("L2 radius (pixels in [0, 1])")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.set_title(title or "certified accuracy (%) vs L2 radius")
    ax.legend(fontsize=8, loc="lower left")
    return save(fig, path)


def clean_vs_robust(points: Sequence[dict], path: str, *, title: str = "") -> str:
  """Clean accuracy (x, %) against robust accuracy (y, %) per training method, error
  bars = std over seeds, each point labelled with its name and training minutes.

  `points`: ``[{'name', 'clean', 'clean_std', 'robust', 'robust_std', 'minutes'}]``
  (fractions; stds and minutes may be None). Size: 6.4 x 4.6 in.
  """
  colors = palette(len(points))
  with style():
    fig = figure(6.4, 4.6)
    ax = fig.add_subplot()
    for k, p in enumerate(points):
      ax.errorbar([100 * p["clean"]], [100 * p["robust"]],
                  xerr=[100 * (p.get("clean_std") or 0.0)],
                  yerr=[100 * (p.get("robust_std") or 0.0)], fmt=MARKS[k % len(MARKS)],
                  color=colors[k], capsize=2, label=p["name"])
      note = p["name"] + ("" if p.get("minutes") is None else f", {p['minutes']:.1f} min")
      # Labels staggered upwards: methods with no robustness share the bottom edge.
      ax.annotate(note, (100 * p["clean"], 100 * p["robust"]), fontsize=7,
                  xytext=(4, 4 + 9 * (k % 3)), textcoords="offset points")
    ax.set_xlabel("clean test accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(textwrap.fill(title or "clean vs robust accuracy per method", 72),
                 fontsize=10)
    return save(fig, path)
