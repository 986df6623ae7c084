"""Classification figures: confusion, per-class accuracy, mistakes, calibration,
learning curves, per-class error over epochs (see :mod:`kmnist_jax.plots.common`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.colors import PowerNorm, to_rgb

from kmnist_jax.plots.common import (
  OKABE_ITO,
  SEQUENTIAL,
  Labels,
  annotate_cells,
  bar_width_in,
  class_colors,
  figure,
  grouped_bars,
  pct,
  save,
  style,
)

# ---- Confusion -------------------------------------------------------------------------

def confusion_size(num_classes: int) -> tuple[float, float]:
  s = max(6.0, 0.42 * num_classes + 3.0)
  return s + 1.2, s


def confusion_heatmap(confusion, labels: Labels, path: str, *,
                      pred_labels: Labels | None = None, title: str = "") -> str:
  """Row-normalised colours (fraction of each true class), counts written in the cells.

  `pred_labels`: the model's classes when they differ from the data's (a model
  evaluated on another dataset). Size: :func:`confusion_size` inches (8.4 x 7.2 for 10
  classes) at DPI.
  """
  conf = np.asarray(confusion)
  C = len(conf)
  pred_labels = pred_labels or labels
  rows = conf.sum(1, keepdims=True)
  norm = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
  with style(labels, pred_labels):
    fig = figure(*confusion_size(C))
    ax = fig.add_subplot()
    # Square-root colour scale: a 2% confusion is still visible beside a 98% diagonal.
    im = ax.imshow(norm, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03,
                 label="fraction of true class (square-root scale)")
    ax.set_xticks(range(C), pred_labels.texts, rotation=90 if C > 12 else 45,
                  ha="center" if C > 12 else "right")
    ax.set_yticks(range(C), labels.texts)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if C <= 20:  # beyond, thousands of cells: colours only
      annotate_cells(fig, ax, norm, [[f"{int(v)}" if v else "" for v in row]
                                     for row in conf], im)
    ax.set_title(title or f"confusion ({int(conf.sum())} examples)")
    return save(fig, path)


# ---- Per-class accuracy ----------------------------------------------------------------

def per_class_accuracy(accuracy, lo, hi, labels: Labels, path: str, *,
                       title: str = "", overall: float | None = None) -> str:
  """Bars of per-class accuracy with their interval [lo, hi] as error bars.

  Size: (max(7, 0.35 C + 2.5), 4.5) inches.
  """
  acc = np.asarray(accuracy, np.float64)
  lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
  C = len(acc)
  with style(labels):
    fig = figure(bar_width_in(C), 4.5)
    ax = fig.add_subplot()
    x = np.arange(C)
    a = np.nan_to_num(acc)
    err = np.stack([np.clip(a - np.nan_to_num(lo, nan=a), 0, None),
                    np.clip(np.nan_to_num(hi, nan=a) - a, 0, None)])
    worst = np.argsort(a)[:3]
    colors = [OKABE_ITO[1] if i in worst else OKABE_ITO[0] for i in range(C)]
    ax.bar(x, a, color=colors, alpha=0.9, yerr=err, capsize=3, ecolor="black")
    if overall is not None:
      ax.axhline(overall, color="gray", ls="--", lw=1, label=f"overall {pct(overall)}%")
      ax.legend(loc="lower right")
    ax.set_xticks(x, labels.texts, rotation=90 if C > 12 else 0)
    bottom = np.nanmin(np.where(np.isfinite(lo), lo, a)) if C else 0.0
    ax.set_ylim(max(0.0, bottom - 0.05), 1.0)
    ax.set_ylabel("accuracy (recall)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "per-class accuracy (bars: interval; orange: 3 worst)")
    return save(fig, path)


def per_class_comparison(series: Sequence[dict], labels: Labels, path: str, *,
                         title: str = "") -> str:
  """Grouped bars, one group per class index, one bar per series.

  `series`: ``[{'name', 'mean' [C], 'err' [C] (std or None)}]``. Size:
  (max(7, 0.35 C S + 2.5), 4.8) inches for S series.
  """
  C = len(labels.texts)
  S = len(series)
  with style(labels):
    fig = figure(bar_width_in(C, S), 4.8)
    ax = fig.add_subplot()
    lows = []
    for ser in series:
      mean = np.asarray(ser["mean"], np.float64)
      err = None if ser.get("err") is None else np.asarray(ser["err"], np.float64)
      lows.append(np.nanmin(mean - (0 if err is None else err)))
    grouped_bars(ax, [(ser["name"], ser["mean"], ser.get("err")) for ser in series],
                 labels, near_zero=-1.0)  # the axis starts near the lowest bar
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.05), 1.0)
    ax.set_ylabel("accuracy (recall)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "per-class accuracy (error bars: std over seeds)")
    return save(fig, path)


# ---- Mistakes --------------------------------------------------------------------------

# The grid is one mosaic image (fast to draw): cells of 28x28 pixels in a coloured
# frame, captions above, groups (mistakes | typical true | typical predicted) apart.
_IMG, _FRAME, _GAP, _GROUP, _CAPTION = 28, 2, 6, 14, 11  # mosaic pixels
_PX_IN = 0.03          # inches per mosaic pixel: a framed cell is ~1 inch
_LEFT_IN, _TOP_IN = 2.0, 0.45


def _mosaic_px(rows: int, mistakes: int, typical: int) -> tuple[int, int]:
  cell = _IMG + 2 * _FRAME
  cols = mistakes + 2 * typical
  return (cols * (cell + _GAP) - _GAP + 2 * _GROUP,
          rows * (_CAPTION + cell + _GAP))


def mistakes_grid_size(rows: int, mistakes: int, typical: int) -> tuple[float, float]:
  w, h = _mosaic_px(max(rows, 1), mistakes, typical)
  return _LEFT_IN + w * _PX_IN + 0.15, _TOP_IN + h * _PX_IN + 0.05


def mistakes_grid(rows: Sequence[dict], labels: Labels, path: str, *,
                  pred_labels: Labels | None = None, mistakes: int = 6, typical: int = 3,
                  title: str = "") -> str:
  """One row per confused pair: its most confident mistakes (orange frame, with the
  probability given to the wrong class), then typical examples of the true class and of
  the predicted class (blue frames).

  `rows`: ``[{'true', 'pred' (class indices), 'count' (errors), 'mistakes':
  [(image [28,28], p_pred)], 'typical_true': [image], 'typical_pred': [image]}]``.
  `pred_labels`: the model's classes when they differ from the data's.
  Size: :func:`mistakes_grid_size` inches.
  """
  R = max(len(rows), 1)
  pred_labels = pred_labels or labels
  W, H = _mosaic_px(R, mistakes, typical)
  cell = _IMG + 2 * _FRAME
  mosaic = np.ones((H, W, 3))
  texts = []  # (x, y, text, kwargs) in mosaic pixels

  def x0(c):
    return (c * (cell + _GAP) + _GROUP * (c >= mistakes)
            + _GROUP * (c >= mistakes + typical))

  for r, row in enumerate(rows):
    t, p = row["true"], row["pred"]
    ts, ps = labels.short[t], pred_labels.short[p]
    y0 = r * (_CAPTION + cell + _GAP) + _CAPTION
    groups = [(row["mistakes"][:mistakes], OKABE_ITO[5], None),
              (row["typical_true"][:typical], OKABE_ITO[0], f"{ts} typical"),
              (row["typical_pred"][:typical], OKABE_ITO[0], f"{ps} typical")]
    starts = [0, mistakes, mistakes + typical]
    for (items, color, caption), c0 in zip(groups, starts):
      for k, item in enumerate(items):
        img, cap = (item[0], f"p={item[1]:.2f}") if caption is None else (item, caption)
        x = x0(c0 + k)
        mosaic[y0:y0 + cell, x:x + cell] = to_rgb(color)
        pix = 1.0 - np.asarray(img, np.float64).reshape(_IMG, _IMG) / 255.0
        y, xi = y0 + _FRAME, x + _FRAME
        mosaic[y:y + _IMG, xi:xi + _IMG] = pix[..., None]
        texts.append((x + cell / 2, y0 - 1.5, cap, {"ha": "center", "va": "bottom",
                                                    "fontsize": 7.5}))
    texts.append((-_GROUP, y0 + cell / 2,
                  f"true {labels.texts[t]}\n→ pred {pred_labels.texts[p]}\n"
                  f"({row.get('count', 0)} errors)",
                  {"ha": "right", "va": "center", "fontsize": 10}))

  with style(labels, pred_labels):
    fig = figure(*mistakes_grid_size(R, mistakes, typical), layout=None)
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((_LEFT_IN / fw, 0.05 / fh, W * _PX_IN / fw, H * _PX_IN / fh))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.axis("off")
    for x, y, text, kw in texts:
      ax.text(x, y, text, **kw)
    fig.suptitle(title or "most confident mistakes (orange) beside typical examples "
                 "(blue)",
                 y=1 - 0.08 / fh, va="top")
    if not rows:
      fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return save(fig, path)


# ---- Calibration -----------------------------------------------------------------------

def reliability_diagram(calibration: dict, path: str, *, title: str = "") -> str:
  """Accuracy vs confidence per bin (gap to the diagonal shaded), counts below.

  `calibration`: :func:`kmnist_jax.metrics.calibration`'s dict. Size: 6 x 6.5 inches.
  """
  edges = np.asarray(calibration["edges"], np.float64)
  acc = np.asarray(calibration["accuracy"], np.float64)
  conf = np.asarray(calibration["confidence"], np.float64)
  count = np.asarray(calibration["count"], np.float64)
  centers = (edges[:-1] + edges[1:]) / 2
  width = np.diff(edges)
  fig = figure(6, 6.5)
  with style():
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ok = count > 0
    top.bar(centers[ok], acc[ok], width[ok], edgecolor="black", color=OKABE_ITO[0],
            alpha=0.85, label="accuracy in bin")
    top.plot(centers[ok], conf[ok], "o", color=OKABE_ITO[1], ms=5,
             label="mean confidence in bin")
    top.vlines(centers[ok], np.minimum(acc, conf)[ok], np.maximum(acc, conf)[ok],
               color="black", lw=2, label="gap")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    ece = calibration.get("ece")
    top.set_title(title or f"reliability (ECE {pct(ece)}%, "
                           f"{int(calibration.get('num_bins', len(centers)))} bins)")
    bottom.bar(centers, np.maximum(count, 0), width, color="gray", edgecolor="black")
    bottom.text(0.02, 0.92, "bars above the diagonal: under-confident; "
                "below: over-confident", ha="left", va="top", fontsize=8,
                transform=bottom.transAxes, color="dimgray",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("examples")
    return save(fig, path)


# ---- Over epochs -----------------------------------------------------------------------

def learning_curves(history: Sequence[dict], path: str, *, mark_epoch: int | None = None,
                    title: str = "") -> str:
  """Loss, accuracy and learning rate per epoch from metrics.jsonl records.

  Size: 14 x 4 inches.
  """
  ep = np.array([h["epoch"] for h in history])

  def series(key):
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], float)

  fig = figure(14, 4)
  with style():
    axes = fig.subplots(1, 3)
    panels = [("loss", ["train_loss", "val_loss"]),
              ("accuracy", ["train_accuracy", "val_accuracy", "val_balanced_accuracy"]),
              ("learning rate", ["lr"])]
    for ax, (name, keys) in zip(axes, panels):
      for k in keys:
        y = series(k)
        if np.isfinite(y).any():
          ax.plot(ep, y, "o-", ms=3, label=k)
      if mark_epoch is not None:
        ax.axvline(mark_epoch, color="gray", ls=":", lw=1,
                   label=f"analysed (epoch {mark_epoch})")
      ax.set_xlabel("epoch")
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
      ax.set_title(name)
      ax.grid(alpha=0.3)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if not len(ep):
      axes[0].text(0.5, 0.5, "no history", ha="center", transform=axes[0].transAxes)
    if title:
      fig.suptitle(title)
    return save(fig, path)


def per_class_error_over_epochs(epochs, errors, labels: Labels, path: str, *,
                                title: str = "") -> str:
  """Validation error of each class per epoch (lines; a heatmap above 12 classes).

  `errors`: [E, C] (:func:`kmnist_jax.metrics.per_class_error`). Size: 9 x 5 inches.
  """
  ep = np.asarray(epochs)
  C = len(labels.texts)
  err = np.asarray(errors, np.float64)
  err = err.reshape(len(ep), C) if len(ep) else np.zeros((0, C))
  with style(labels):
    fig = figure(9, 5)
    ax = fig.add_subplot()
    if C <= 12 or not len(ep):
      colors, marks = class_colors(C), "osD^v<>ph*X+"
      for c in range(C if len(ep) else 0):
        ax.plot(ep, 100 * err[:, c], "-", marker=marks[c % len(marks)], ms=4,
                color=colors[c], label=labels.texts[c])
      ax.set_ylabel("validation error (%)")
      ax.set_xlabel("epoch")
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
      if np.all(err[np.isfinite(err)] > 0) and np.isfinite(err).any():
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
      ax.grid(alpha=0.3, which="both")
      if len(ep):
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    else:
      im = ax.imshow(100 * err.T, aspect="auto", cmap=SEQUENTIAL + "_r",
                     extent=(ep[0] - 0.5, ep[-1] + 0.5, C - 0.5, -0.5))
      ax.set_yticks(range(C), labels.texts, fontsize=7)
      ax.set_xlabel("epoch")
      fig.colorbar(im, ax=ax, label="validation error (%)")
    if not len(ep):
      ax.text(0.5, 0.5, "no per-epoch confusion recorded (val_size=0?)", ha="center",
              transform=ax.transAxes)
    ax.set_title(title or "per-class validation error over epochs")
    return save(fig, path)

