"""Figures for the analysis tools: each function draws one PNG from numbers it is given.

Presentation only: the numbers come from :mod:`kmnist_jax.metrics` (or a run's
``metrics.jsonl``); nothing here evaluates a model. Figures are built with
``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, so no global backend is set
and no display is needed),
at :data:`DPI`, with fixed sizes (documented per function, never cropped), and each
PNG is written to a temporary name and renamed into place.

Class labels
------------
KMNIST / K49 classes are hiragana. :func:`class_labels` draws them as ``お (o)`` when an
installed font covers the glyphs (e.g. Noto Sans CJK JP, Debian ``fonts-noto-cjk``;
found with matplotlib's font manager, including fonts installed after matplotlib built
its font cache) and falls back to the romanized names (``o``, ``ki``) otherwise, so a
plot never shows empty boxes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib import font_manager, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

DPI = 100
BASE_FONT = "DejaVu Sans"  # ships with matplotlib: Latin, digits, arrows

# Families tried first, in order (lower-case substrings of the family name).
_PREFERRED = ("noto sans cjk jp", "noto sans jp", "source han sans", "ipaexgothic",
              "ipagothic", "hiragino", "yu gothic", "ms gothic", "takaogothic",
              "noto sans cjk", "droid sans fallback", "noto serif cjk jp")


# ---- Fonts and labels ------------------------------------------------------------------

def _covers(path: str, codepoints: frozenset[int]) -> bool:
  """Whether the font file draws each of `codepoints` with its own glyph. (A "last
  resort" font, such as the LastResortHE that matplotlib ships, maps whole Unicode
  blocks to one placeholder box: distinct glyphs are required.)"""
  if "lastresort" in os.path.basename(path).lower().replace(" ", "").replace("_", ""):
    return False
  try:
    from matplotlib import ft2font
    cmap = ft2font.FT2Font(path).get_charmap()
  except Exception:  # unreadable / unsupported font file: not a candidate
    return False
  if not codepoints <= set(cmap):
    return False
  glyphs = {cmap[c] for c in codepoints}
  return len(glyphs) == len(codepoints) and 0 not in glyphs


def _rank(name: str, fname: str) -> tuple:
  low, f = name.lower(), os.path.basename(fname).lower()
  pref = next((i for i, p in enumerate(_PREFERRED) if p in low), len(_PREFERRED))
  return (pref, "bold" in f or "black" in f or "light" in f or "thin" in f, name, fname)


@functools.lru_cache(maxsize=None)
def find_cjk_font(chars: str) -> str | None:
  """The family name of an installed font that has every non-ASCII character of
  `chars`, or None. Looks in matplotlib's font list first, then in the system font
  folders (a font installed after matplotlib cached its list is registered)."""
  need = frozenset(ord(c) for c in chars if ord(c) > 127)
  if not need:
    return None
  fm = font_manager.fontManager
  seen = set()
  for e in sorted(fm.ttflist, key=lambda e: _rank(e.name, e.fname)):
    if e.fname not in seen:
      seen.add(e.fname)
      if _covers(e.fname, need):
        return e.name
  try:
    system = font_manager.findSystemFonts()
  except Exception:  # pragma: no cover - odd font folders
    system = []
  for path in sorted(set(system) - seen, key=lambda p: _rank(os.path.basename(p), p)):
    if _covers(path, need):
      try:
        fm.addfont(path)
      except Exception:  # pragma: no cover
        continue
      names = [e.name for e in fm.ttflist if e.fname == path]
      if names:
        return min(names, key=lambda n: _rank(n, path))
  return None


@dataclasses.dataclass(frozen=True)
class Labels:
  """What to write for each class, and the font (family) that can draw it."""
  texts: tuple[str, ...]   # tick / legend labels: 'お (o)' or 'o'
  short: tuple[str, ...]   # in titles: 'お' or 'o'
  font: str | None         # CJK family used as fallback after BASE_FONT, or None

  @property
  def glyphs_drawn(self) -> bool:
    return self.font is not None


def class_labels(names: Sequence[str], glyphs: Sequence[str] | None = None, *,
                 font: str | None = "auto") -> Labels:
  """Labels for classes with ASCII `names` and (maybe non-ASCII) `glyphs`.

  `font`: 'auto' (find one covering the glyphs), None / 'none' (romanized names), or
  a family name or font file to use. Without a usable font the names are used.
  """
  names = tuple(str(n) for n in names)
  glyphs = tuple(str(g) for g in glyphs) if glyphs is not None else names
  if len(glyphs) != len(names):
    raise ValueError(f"{len(names)} names but {len(glyphs)} glyphs")
  if glyphs == names or all(g.isascii() for g in glyphs):
    return Labels(texts=glyphs, short=glyphs, font=None)
  family = None
  if font == "auto":
    family = find_cjk_font("".join(glyphs))
  elif font not in (None, "none", ""):
    family = _register(font, "".join(glyphs))
  if family is None:
    return Labels(texts=names, short=names, font=None)
  return Labels(texts=tuple(f"{g} ({n})" for g, n in zip(glyphs, names)), short=glyphs,
                font=family)


def _register(font: str, chars: str) -> str | None:
  """A family name for `font` (a family or a file) if it covers `chars`, else None."""
  need = frozenset(ord(c) for c in chars if ord(c) > 127)
  if os.path.isfile(font):
    if not _covers(font, need):
      return None
    font_manager.fontManager.addfont(font)
    names = [e.name for e in font_manager.fontManager.ttflist if e.fname == font]
    return names[0] if names else None
  try:
    path = font_manager.findfont(font_manager.FontProperties(family=[font]),
                                 fallback_to_default=False)
  except ValueError:
    return None
  return font if _covers(path, need) else None


@contextlib.contextmanager
def _style(*labels: Labels | None):
  fonts = [lab.font for lab in labels if lab is not None and lab.font]
  rc = {"font.family": [BASE_FONT] + list(dict.fromkeys(fonts)),
        "axes.titlesize": 11, "axes.labelsize": 10, "figure.titlesize": 13}
  with matplotlib.rc_context(rc):
    yield


def _figure(w: float, h: float, layout: str | None = "constrained") -> Figure:
  fig = Figure(figsize=(w, h), dpi=DPI, layout=layout)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str) -> str:
  """Writes `fig` as PNG to `path` atomically (temporary name, then rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.png"
  try:
    fig.savefig(tmp, dpi=DPI, format="png")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _pct(x) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


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
  with _style(labels, pred_labels):
    fig = _figure(*confusion_size(C))
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
    if C <= 20:
      for i in range(C):
        for j in range(C):
          if conf[i, j]:
            ax.text(j, i, f"{int(conf[i, j])}", ha="center", va="center",
                    fontsize=8 if C <= 12 else 6,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or f"confusion ({int(conf.sum())} examples)")
    return _save(fig, path)


# ---- Per-class accuracy ----------------------------------------------------------------

def _bar_width_in(num_classes: int, series: int = 1) -> float:
  return max(7.0, 0.35 * num_classes * series + 2.5)


def per_class_accuracy(accuracy, lo, hi, labels: Labels, path: str, *,
                       title: str = "", overall: float | None = None) -> str:
  """Bars of per-class accuracy with their interval [lo, hi] as error bars.

  Size: (max(7, 0.35 C + 2.5), 4.5) inches.
  """
  acc = np.asarray(accuracy, np.float64)
  lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
  C = len(acc)
  with _style(labels):
    fig = _figure(_bar_width_in(C), 4.5)
    ax = fig.add_subplot()
    x = np.arange(C)
    a = np.nan_to_num(acc)
    err = np.stack([np.clip(a - np.nan_to_num(lo, nan=a), 0, None),
                    np.clip(np.nan_to_num(hi, nan=a) - a, 0, None)])
    worst = np.argsort(a)[:3]
    colors = ["tab:red" if i in worst else "tab:blue" for i in range(C)]
    ax.bar(x, a, color=colors, alpha=0.8, yerr=err, capsize=3, ecolor="black")
    if overall is not None:
      ax.axhline(overall, color="gray", ls="--", lw=1, label=f"overall {_pct(overall)}%")
      ax.legend(loc="lower right")
    ax.set_xticks(x, labels.texts, rotation=90 if C > 12 else 0)
    bottom = np.nanmin(np.where(np.isfinite(lo), lo, a)) if C else 0.0
    ax.set_ylim(max(0.0, bottom - 0.05), 1.0)
    ax.set_ylabel("accuracy (recall)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "per-class accuracy (bars: interval; red: 3 worst)")
    return _save(fig, path)


def _grouped_bars(ax, bars: Sequence[tuple], labels: Labels) -> None:
  """One group per class, one bar per (name, values [C], errors [C] or None)."""
  C, S = len(labels.texts), len(bars)
  x = np.arange(C)
  w = 0.8 / max(S, 1)
  for s, (name, values, err) in enumerate(bars):
    err = None if err is None else np.asarray(err, np.float64)
    kw = {} if err is None else {"yerr": err, "capsize": 2}
    ax.bar(x - 0.4 + w * (s + 0.5), np.asarray(values, np.float64), w, label=name, **kw)
  ax.set_xticks(x, labels.texts, rotation=90 if C > 12 else 0)


def per_class_comparison(series: Sequence[dict], labels: Labels, path: str, *,
                         title: str = "") -> str:
  """Grouped bars, one group per class index, one bar per series.

  `series`: ``[{'name', 'mean' [C], 'err' [C] (std or None)}]``. Size:
  (max(7, 0.35 C S + 2.5), 4.8) inches for S series.
  """
  C = len(labels.texts)
  S = len(series)
  with _style(labels):
    fig = _figure(_bar_width_in(C, S), 4.8)
    ax = fig.add_subplot()
    lows = []
    for ser in series:
      mean = np.asarray(ser["mean"], np.float64)
      err = None if ser.get("err") is None else np.asarray(ser["err"], np.float64)
      lows.append(np.nanmin(mean - (0 if err is None else err)))
    _grouped_bars(ax, [(ser["name"], ser["mean"], ser.get("err")) for ser in series],
                  labels)
    ax.set_ylim(max(0.0, min(lows, default=0.0) - 0.05), 1.0)
    ax.set_ylabel("accuracy (recall)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "per-class accuracy (error bars: std over seeds)")
    return _save(fig, path)


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
  """One row per confused pair: its most confident mistakes (red frame, with the
  probability given to the wrong class), then typical examples of the true class and of
  the predicted class (green frames).

  `rows`: ``[{'true', 'pred' (class indices), 'count' (errors), 'mistakes':
  [(image [28,28], p_pred)], 'typical_true': [image], 'typical_pred': [image]}]``.
  `pred_labels`: the model's classes when they differ from the data's.
  Size: :func:`mistakes_grid_size` inches.
  """
  from matplotlib.colors import to_rgb
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
    groups = [(row["mistakes"][:mistakes], "tab:red", None),
              (row["typical_true"][:typical], "tab:green", f"{ts} typical"),
              (row["typical_pred"][:typical], "tab:green", f"{ps} typical")]
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

  with _style(labels, pred_labels):
    fig = _figure(*mistakes_grid_size(R, mistakes, typical), layout=None)
    fw, fh = fig.get_figwidth(), fig.get_figheight()
    ax = fig.add_axes((_LEFT_IN / fw, 0.05 / fh, W * _PX_IN / fw, H * _PX_IN / fh))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.axis("off")
    for x, y, text, kw in texts:
      ax.text(x, y, text, **kw)
    fig.suptitle(title or "most confident mistakes (red) beside typical examples (green)",
                 y=1 - 0.08 / fh, va="top")
    if not rows:
      fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return _save(fig, path)


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
  fig = _figure(6, 6.5)
  with _style():
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ok = count > 0
    top.bar(centers[ok], acc[ok], width[ok], edgecolor="black", color="tab:blue",
            alpha=0.85, label="accuracy in bin")
    top.plot(centers[ok], conf[ok], "o", color="tab:orange", ms=5,
             label="mean confidence in bin")
    top.vlines(centers[ok], np.minimum(acc, conf)[ok], np.maximum(acc, conf)[ok],
               color="tab:red", lw=2, label="gap")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    ece = calibration.get("ece")
    top.set_title(title or f"reliability (ECE {_pct(ece)}%, "
                           f"{int(calibration.get('num_bins', len(centers)))} bins)")
    bottom.bar(centers, np.maximum(count, 0), width, color="gray", edgecolor="black")
    bottom.text(0.02, 0.92, "bars above the diagonal: under-confident; "
                "below: over-confident", ha="left", va="top", fontsize=8,
                transform=bottom.transAxes, color="dimgray",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("examples")
    return _save(fig, path)


# ---- Over epochs -----------------------------------------------------------------------

def learning_curves(history: Sequence[dict], path: str, *, mark_epoch: int | None = None,
                    title: str = "") -> str:
  """Loss, accuracy and learning rate per epoch from metrics.jsonl records.

  Size: 14 x 4 inches.
  """
  ep = np.array([h["epoch"] for h in history])

  def series(key):
    return np.array([np.nan if h.get(key) is None else h[key] for h in history], float)

  fig = _figure(14, 4)
  with _style():
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
    return _save(fig, path)


def per_class_error_over_epochs(epochs, errors, labels: Labels, path: str, *,
                                title: str = "") -> str:
  """Validation error of each class per epoch (lines; a heatmap above 12 classes).

  `errors`: [E, C] (:func:`kmnist_jax.metrics.per_class_error`). Size: 9 x 5 inches.
  """
  ep = np.asarray(epochs)
  C = len(labels.texts)
  err = np.asarray(errors, np.float64)
  err = err.reshape(len(ep), C) if len(ep) else np.zeros((0, C))
  with _style(labels):
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    if C <= 12 or not len(ep):
      cmap = matplotlib.colormaps["tab10" if C <= 10 else "tab20"]
      for c in range(C if len(ep) else 0):
        ax.plot(ep, 100 * err[:, c], "o-", ms=3, color=cmap(c), label=labels.texts[c])
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
      im = ax.imshow(100 * err.T, aspect="auto", cmap="magma_r",
                     extent=(ep[0] - 0.5, ep[-1] + 0.5, C - 0.5, -0.5))
      ax.set_yticks(range(C), labels.texts, fontsize=6)
      ax.set_xlabel("epoch")
      fig.colorbar(im, ax=ax, label="validation error (%)")
    if not len(ep):
      ax.text(0.5, 0.5, "no per-epoch confusion recorded (val_size=0?)", ha="center",
              transform=ax.transAxes)
    ax.set_title(title or "per-class validation error over epochs")
    return _save(fig, path)


# ---- Embeddings ------------------------------------------------------------------------

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
  with _style(*all_labels):
    fig = _figure(*embedding_grid_size(rows, cols))
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
      cmap = matplotlib.colormaps["tab10" if C <= 10 else "tab20"]
      for c in range(C):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=cmap(c % cmap.N), alpha=0.6,
                   label=lab.texts[c], rasterized=True, linewidths=0)
      ax.set_title(p["title"], fontsize=10)
      if C <= 20:
        ax.legend(markerscale=5, fontsize=7, loc="best", framealpha=0.7,
                  ncol=1 if C <= 10 else 2, handletextpad=0.2, borderpad=0.3)
    if title:
      fig.suptitle(title)
    return _save(fig, path)


def separability_height(n: int) -> float:
  return max(3.5, 0.32 * n + 1.4)


def separability_bars(rows: Sequence[dict], path: str, *, title: str = "") -> str:
  """kNN accuracy and silhouette score per (dataset, representation, method).

  `rows`: ``[{'name', 'knn_accuracy', 'silhouette'}]``. Size: (10, max(3.5, 0.32 N +
  1.4)) inches for N rows.
  """
  n = len(rows)
  names = [r["name"] for r in rows]
  fig = _figure(10, separability_height(n))
  with _style():
    a1, a2 = fig.subplots(1, 2)
    y = np.arange(n)
    bars = a1.barh(y, [r["knn_accuracy"] for r in rows], color="tab:blue")
    a1.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    a1.set_xlim(0, 1.12)
    a1.set_xlabel("kNN accuracy (5-fold CV)")
    bars = a2.barh(y, [r["silhouette"] for r in rows], color="tab:orange")
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
    return _save(fig, path)


def png_size(path: str) -> tuple[int, int]:
  """(width, height) in pixels from a PNG's header."""
  with open(path, "rb") as f:
    head = f.read(24)
  if head[:8] != b"\x89PNG\r\n\x1a\n":
    raise ValueError(f"{path} is not a PNG")
  return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ---- Robustness ------------------------------------------------------------------------

def corruption_heatmap_size(num_classes: int, columns: int) -> tuple[float, float]:
  return max(8.0, 0.45 * columns + 3.0), max(4.5, 0.38 * num_classes + 2.6)


def corruption_heatmap(accuracy, labels: Labels, columns: Sequence[str], path: str, *,
                       title: str = "") -> str:
  """Per-class x corruption accuracy: rows classes, columns 'clean' and each corruption
  (pooled over severities), values written in the cells (percent).

  Size: :func:`corruption_heatmap_size` inches.
  """
  acc = np.asarray(accuracy, np.float64)
  C, K = acc.shape
  with _style(labels):
    fig = _figure(*corruption_heatmap_size(C, K))
    ax = fig.add_subplot()
    im = ax.imshow(acc, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="accuracy")
    ax.set_xticks(range(K), [str(c).replace("_", " ") for c in columns], rotation=55,
                  ha="right", fontsize=8)
    ax.set_yticks(range(C), labels.texts)
    if C <= 20 and K <= 30:
      for i in range(C):
        for j in range(K):
          if np.isfinite(acc[i, j]):
            ax.text(j, i, f"{100 * acc[i, j]:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if acc[i, j] < 0.25 else "black")
    ax.set_title(title or "per-class accuracy under each corruption")
    return _save(fig, path)


def _grid_shape(n: int, cols: int) -> tuple[int, int]:
  cols = max(1, min(cols, n))
  return -(-n // cols), cols


def error_vs_severity_size(num_corruptions: int, cols: int = 5) -> tuple[float, float]:
  rows, cols = _grid_shape(max(num_corruptions, 1), cols)
  return 2.8 * cols + 0.4, 2.2 * rows + 0.9


def error_vs_severity(series: Sequence[dict], severities: Sequence[int], path: str, *,
                      cols: int = 5, title: str = "") -> str:
  """One panel per corruption: error against severity, one line per model, the
  model's clean error as a dotted line at severity 0.

  `series`: ``[{'name', 'clean': float, 'errors': {corruption: [S]}}]`` (the same
  corruptions in each). Size: :func:`error_vs_severity_size` inches.
  """
  names = list(series[0]["errors"]) if series else []
  rows, cols = _grid_shape(max(len(names), 1), cols)
  sev = [0] + list(severities)
  with _style():
    fig = _figure(*error_vs_severity_size(len(names), cols))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for ax, name in zip(axes, names):
      for k, s in enumerate(series):
        ax.plot(sev, [s["clean"]] + list(s["errors"][name]), marker="o", ms=3, lw=1.2,
                color=f"C{k}", label=s["name"])
      ax.set_title(name.replace("_", " "), fontsize=9)
      ax.set_ylim(0, 1)
      ax.set_xticks(sev)
      ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
      ax.set_visible(False)
    for ax in axes[::cols]:
      ax.set_ylabel("error", fontsize=8)
    if series:
      fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                 ncol=min(len(series), 4), fontsize=8)
    fig.suptitle(title or "error vs severity (0 = clean)")
    return _save(fig, path)


_ATTACK_STYLE = {"fgsm": "--", "pgd": "-"}


def accuracy_vs_epsilon(curves: Sequence[dict], path: str, *, title: str = "") -> str:
  """Accuracy against the L-inf radius, several models / datasets / attacks on one
  axes: colour per model, line style per attack (FGSM dashed, PGD solid).

  `curves`: ``[{'name', 'attack', 'epsilons' [E], 'accuracy' [E]}]``. Size: 8 x 5 in.
  """
  models_ = list(dict.fromkeys(c["name"] for c in curves))
  with _style():
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    for c in curves:
      ax.plot(c["epsilons"], c["accuracy"], marker="o", ms=3,
              ls=_ATTACK_STYLE.get(c["attack"], ":"),
              color=f"C{models_.index(c['name']) % 10}",
              label=f"{c['name']}, {c['attack'].upper()}")
    ax.set_xlabel("epsilon (L-inf, pixels in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "accuracy under attack (FGSM dashed, PGD solid)")
    return _save(fig, path)


def robust_per_class(series: Sequence[dict], labels: Labels, path: str, *,
                     title: str = "") -> str:
  """Grouped bars of per-class accuracy, one bar per series (e.g. clean, FGSM at eps,
  PGD at eps). `series`: ``[{'name', 'accuracy' [C]}]``. Size: as
  :func:`per_class_comparison`, but the y axis starts at 0 (robust accuracy can be)."""
  C = len(labels.texts)
  S = len(series)
  with _style(labels):
    fig = _figure(_bar_width_in(C, S), 4.8)
    ax = fig.add_subplot()
    _grouped_bars(ax, [(ser["name"], ser["accuracy"], None) for ser in series], labels)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("accuracy (recall)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "per-class robust accuracy")
    return _save(fig, path)


# ---- Transfer --------------------------------------------------------------------------

def accuracy_vs_shots(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """One panel per transfer direction: test accuracy against shots per class.

  `panels`: ``[{'title', 'shots': [labels], 'series': [{'name', 'mean' [S], 'std' [S]
  or None}]}]`` (the scratch baseline is one series, drawn dashed). Error bars: std
  over seeds. Size: (4.6 per panel + 0.6, 4.2) inches.
  """
  P = max(1, len(panels))
  with _style():
    fig = _figure(4.6 * P + 0.6, 4.2)
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
      ax.legend(fontsize=8, loc="lower right")
    if title:
      fig.suptitle(title)
    return _save(fig, path)


def transfer_gain_bars(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """Per-class accuracy gain over scratch (percentage points), one panel per direction.

  `panels`: ``[{'title', 'labels': Labels, 'series': [{'name', 'mean' [C], 'std' [C]
  or None}]}]``. Size: (max(7, 0.35 C S + 2.5), 3.6 per panel + 0.6) inches.
  """
  P = max(1, len(panels))
  C = max((len(p["labels"].texts) for p in panels), default=10)
  S = max((len(p["series"]) for p in panels), default=1)
  with _style(*[p["labels"] for p in panels]):
    fig = _figure(_bar_width_in(C, S), 3.6 * P + 0.6)
    axes = fig.subplots(P, 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
      labels = panel["labels"]
      x = np.arange(len(labels.texts))
      w = 0.8 / max(len(panel["series"]), 1)
      for s, ser in enumerate(panel["series"]):
        mean = 100 * np.asarray(ser["mean"], np.float64)
        err = None if ser.get("std") is None else 100 * np.nan_to_num(
            np.asarray(ser["std"], np.float64))
        ax.bar(x - 0.4 + w * (s + 0.5), mean, w, yerr=err, capsize=2, label=ser["name"])
      ax.axhline(0, color="black", lw=0.8)
      ax.set_xticks(x, labels.texts)
      ax.set_ylabel("gain over scratch (pp)")
      ax.grid(axis="y", alpha=0.3)
      ax.set_title(panel["title"])
      ax.legend(fontsize=8)
    if title:
      fig.suptitle(title)
    return _save(fig, path)


def cka_heatmaps(panels: Sequence[dict], path: str, *, title: str = "") -> str:
  """Linear CKA between the layers of two models, one heatmap per pair, values in cells.

  `panels`: ``[{'title', 'matrix' [R, K], 'rows': [names], 'cols': [names],
  'ylabel', 'xlabel'}]``. Colour scale fixed to [0, 1]. Size: (3.8 per panel + 1.2,
  3.8) inches, at most 3 panels per row.
  """
  P = max(1, len(panels))
  cols = min(3, P)
  rows = -(-P // cols)
  with _style():
    fig = _figure(3.8 * cols + 1.2, 3.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    im = None
    for ax, panel in zip(axes, panels):
      m = np.asarray(panel["matrix"], np.float64)
      im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
      ax.set_xticks(range(m.shape[1]), panel["cols"], rotation=30, ha="right")
      ax.set_yticks(range(m.shape[0]), panel["rows"])
      for i in range(m.shape[0]):
        for j in range(m.shape[1]):
          ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                  color="black" if m[i, j] > 0.6 else "white")
      ax.set_ylabel(panel.get("ylabel", ""))
      ax.set_xlabel(panel.get("xlabel", ""))
      ax.set_title(panel["title"], fontsize=10)
    for ax in axes[P:]:
      ax.set_visible(False)
    if im is not None:
      fig.colorbar(im, ax=list(axes[:P]), fraction=0.03, pad=0.02, label="linear CKA")
    if title:
      fig.suptitle(title)
    return _save(fig, path)


def image_mosaic(mosaic, path: str, *, title: str, xticks: tuple, yticks: tuple) -> str:
  """A grey-scale mosaic (values 0-1, ink white on black) at a fixed scale per pixel,
  with labelled column blocks on top and rows on the left (the corruption grid)."""
  scale = 0.022  # inches per mosaic pixel
  fig = _figure(1.6 + mosaic.shape[1] * scale, 0.7 + mosaic.shape[0] * scale, layout=None)
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
  return _save(fig, path)
