"""What every figure shares: class labels (with a CJK font for hiragana), colours,
cell text, bars that stay visible at zero, the figure and its atomic save.

Presentation only: the numbers come from :mod:`kmnist_jax.metrics` and the evaluators;
nothing here evaluates a model. Figures are built with ``matplotlib.figure.Figure`` on
the Agg canvas (no pyplot, so no global backend is set and no display is needed), at
:data:`DPI`, with fixed sizes (documented per function, never cropped), and each PNG is
written to a temporary name and renamed into place (:func:`save`).

Class labels
------------
KMNIST / K49 classes are hiragana. :func:`class_labels` draws them as ``お (o)`` when an
installed font covers the glyphs (e.g. Noto Sans CJK JP: ``apt-get install
fonts-noto-cjk``; found with matplotlib's font manager, including fonts installed after
matplotlib built its font cache) and falls back to the romanized names (``o``, ``ki``)
otherwise, so a plot never shows empty boxes.

Colours (readable with the common colour-vision deficiencies; no red-green pairs)
---------------------------------------------------------------------------------
:data:`SEQUENTIAL` (cividis) for accuracies / errors / fractions, :func:`diverging`
(blue-white-orange) for signed gains, :func:`palette` (Okabe-Ito) for series. A figure
shows one unit: a "%" title goes with a % colour bar (:func:`percent_colorbar`).
Cell text is at least :data:`MIN_CELL_PT` points or not drawn (:func:`annotate_cells`);
a bar near zero gets a marker and its value (:func:`grouped_bars`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, to_rgb
from matplotlib.figure import Figure

from kmnist_jax import io

DPI = 100
BASE_FONT = "DejaVu Sans"  # ships with matplotlib: Latin, digits, arrows
MIN_CELL_PT = 7.0          # smallest text written into a heatmap cell
SEQUENTIAL = "cividis"     # accuracies, errors, fractions (uniform, CVD-safe)

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any common CVD.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
             "#F0E442", "#000000")
# Families tried first, in order (lower-case substrings of the family name).
_PREFERRED = ("noto sans cjk jp", "noto sans jp", "source han sans", "ipaexgothic",
              "ipagothic", "hiragino", "yu gothic", "ms gothic", "takaogothic",
              "noto sans cjk", "droid sans fallback", "noto serif cjk jp")


# ---- Fonts and labels ------------------------------------------------------------------

def covers(path: str, codepoints: frozenset[int]) -> bool:
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
      if covers(e.fname, need):
        return e.name
  try:
    system = font_manager.findSystemFonts()
  except Exception:  # pragma: no cover - odd font folders
    system = []
  for path in sorted(set(system) - seen, key=lambda p: _rank(os.path.basename(p), p)):
    if covers(path, need):
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
    family = register_font(font, "".join(glyphs))
  if family is None:
    return Labels(texts=names, short=names, font=None)
  return Labels(texts=tuple(f"{g} ({n})" for g, n in zip(glyphs, names)), short=glyphs,
                font=family)


def register_font(font: str, chars: str) -> str | None:
  """A family name for `font` (a family or a file) if it covers `chars`, else None."""
  need = frozenset(ord(c) for c in chars if ord(c) > 127)
  if os.path.isfile(font):
    if not covers(font, need):
      return None
    font_manager.fontManager.addfont(font)
    names = [e.name for e in font_manager.fontManager.ttflist if e.fname == font]
    return names[0] if names else None
  try:
    path = font_manager.findfont(font_manager.FontProperties(family=[font]),
                                 fallback_to_default=False)
  except ValueError:
    return None
  return font if covers(path, need) else None


@contextlib.contextmanager
def style(*labels: Labels | None):
  """rc settings of every figure: DejaVu Sans, then the CJK fonts of `labels`."""
  fonts = [lab.font for lab in labels if lab is not None and lab.font]
  rc = {"font.family": [BASE_FONT] + list(dict.fromkeys(fonts)),
        "axes.titlesize": 11, "axes.labelsize": 10, "figure.titlesize": 13,
        "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO)}
  with matplotlib.rc_context(rc):
    yield


def figure(w: float, h: float, layout: str | None = "constrained") -> Figure:
  """A `w` x `h` inch figure at DPI on the Agg canvas."""
  fig = Figure(figsize=(w, h), dpi=DPI, layout=layout)
  FigureCanvasAgg(fig)
  return fig


def save(fig: Figure, path: str) -> str:
  """Writes `fig` as PNG to `path` atomically (temporary name, then rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=DPI, format="png")
  return path


def png_size(path: str) -> tuple[int, int]:
  """(width, height) in pixels from a PNG's header."""
  with open(path, "rb") as f:
    head = f.read(24)
  if head[:8] != b"\x89PNG\r\n\x1a\n":
    raise ValueError(f"{path} is not a PNG")
  return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def pct(x, digits: int = 1) -> str:
  """A fraction as a percentage string ('-' for None / NaN)."""
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def grid_shape(n: int, cols: int) -> tuple[int, int]:
  """(rows, cols) of a panel grid for `n` panels, at most `cols` wide."""
  cols = max(1, min(cols, n))
  return -(-n // cols), cols


# ---- Colours ---------------------------------------------------------------------------

def palette(n: int) -> list:
  """`n` series colours: Okabe-Ito, then a cividis sweep beyond its 8 colours."""
  if n <= len(OKABE_ITO):
    return list(OKABE_ITO[:n])
  cmap = matplotlib.colormaps[SEQUENTIAL]
  return [cmap(v) for v in np.linspace(0.0, 0.95, n)]


def class_colors(num_classes: int) -> list:
  """One colour per class (tab10 / tab20 above 8 classes: hue alone cannot separate 10+
  classes for every reader, so class plots also label or mark each class)."""
  if num_classes <= len(OKABE_ITO):
    return list(OKABE_ITO[:num_classes])
  cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
  return [cmap(c % cmap.N) for c in range(num_classes)]


@functools.lru_cache(maxsize=None)
def diverging() -> LinearSegmentedColormap:
  """Blue (negative) - white (0) - orange (positive), for signed gains / deltas."""
  return LinearSegmentedColormap.from_list(
      "kmnist_blue_orange", ["#08519c", "#6baed6", "#f7f7f7", "#fdae6b", "#a63603"])


def percent_colorbar(fig, im, ax, label: str, **kw):
  """A colour bar whose ticks read as percentages of a 0-100 image."""
  cb = fig.colorbar(im, ax=ax, **kw)
  cb.set_label(label)
  return cb


def _luminance(rgb) -> float:
  r, g, b = to_rgb(rgb)
  return 0.2126 * r + 0.7152 * g + 0.0722 * b


# ---- Text in cells, bars near zero -----------------------------------------------------

def cell_fontsize(fig: Figure, ax, rows: int, cols: int, chars: int, *,
                  largest: float = 9.0) -> float | None:
  """The largest font size <= `largest` at which `chars` characters fit one cell of an
  `rows` x `cols` heatmap on `ax`, or None when that is below MIN_CELL_PT."""
  fig.draw_without_rendering()  # settles the (constrained) layout
  box = ax.get_window_extent()
  w_pt = box.width * 72 / fig.dpi / max(cols, 1)
  h_pt = box.height * 72 / fig.dpi / max(rows, 1)
  size = min(largest, 0.9 * w_pt / (0.62 * max(chars, 1)), 0.8 * h_pt)
  return size if size >= MIN_CELL_PT else None


def annotate_cells(fig: Figure, ax, values, texts, im, *, largest: float = 9.0) -> bool:
  """Writes `texts` [R][K] ('' to skip) in the cells of heatmap `im` on `ax`, dark or
  light against each cell's colour, at a legible size; draws nothing (returns False)
  when the cells are too small for MIN_CELL_PT text."""
  values = np.asarray(values, np.float64)
  rows, cols = values.shape
  chars = max((len(t) for row in texts for t in row), default=1)
  size = cell_fontsize(fig, ax, rows, cols, chars, largest=largest)
  if size is None:
    return False
  for i in range(rows):
    for j in range(cols):
      if texts[i][j] and np.isfinite(values[i, j]):
        dark = _luminance(im.cmap(im.norm(values[i, j]))) > 0.5
        ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=size,
                color="black" if dark else "white")
  return True


def bar_width_in(num_classes: int, series: int = 1) -> float:
  """Figure width (inches) of grouped per-class bars."""
  return max(7.0, 0.35 * num_classes * series + 2.5)


def grouped_bars(ax, bars: Sequence[tuple], labels: Labels, *, scale: float = 1.0,
                 near_zero: float | None = None) -> None:
  """One group per class, one bar per (name, values [C], errors [C] or None).

  Values times `scale` are drawn. A bar whose height is within `near_zero` of 0
  (default: 2% of the largest |value|) gets a marker at its tip and its value written
  above it, so a 0% bar is seen as a measured 0, not as a missing bar.
  """
  C, S = len(labels.texts), len(bars)
  x = np.arange(C)
  w = 0.8 / max(S, 1)
  colors = palette(S)
  top = max((np.nanmax(np.abs(np.asarray(v, np.float64) * scale)) for _, v, _ in bars
             if np.isfinite(np.asarray(v, np.float64)).any()), default=1.0)
  thresh = 0.02 * (top or 1.0) if near_zero is None else near_zero
  for s, (name, values, err) in enumerate(bars):
    v = np.asarray(values, np.float64) * scale
    err = None if err is None else np.nan_to_num(np.asarray(err, np.float64) * scale)
    kw = {} if err is None else {"yerr": err, "capsize": 2}
    xs = x - 0.4 + w * (s + 0.5)
    ax.bar(xs, np.nan_to_num(v), w, label=name, color=colors[s], edgecolor="black",
           linewidth=0.4, **kw)
    low = np.isfinite(v) & (np.abs(v) <= thresh)
    if low.any():
      ax.plot(xs[low], v[low], ls="none", marker="^", ms=6, color=colors[s],
              markeredgecolor="black", markeredgewidth=0.6, clip_on=False, zorder=3)
      for xi, vi in zip(xs[low], v[low]):
        text = f"{vi:.2g}"
        ax.annotate(text, (xi, vi), xytext=(0, 6), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7,
                    rotation=0 if len(text) <= 2 else 90)
  ax.set_xticks(x, labels.texts, rotation=90 if C > 12 else 0)
