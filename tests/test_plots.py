"""kmnist_jax.plots: every figure is a non-empty PNG of the expected size; class labels
never draw empty boxes (romanized fallback without a CJK font, hiragana with one)."""

import os
import warnings

import numpy as np
import pytest
from matplotlib import font_manager

from kmnist_jax import data, metrics, plots

KMNIST = data.get_info("kmnist")
DPI = plots.DPI


def px(w_in, h_in):
  return round(w_in * DPI), round(h_in * DPI)


def check_png(path, size_in):
  assert os.path.getsize(path) > 2000, path
  assert plots.png_size(path) == px(*size_in), path
  assert not [f for f in os.listdir(os.path.dirname(path)) if ".tmp" in f]


def romanized():
  return plots.class_labels(KMNIST.class_names, KMNIST.class_glyphs, font=None)


@pytest.fixture
def no_system_cjk_font(monkeypatch):
  """What CI has: matplotlib's own fonts only (DejaVu, STIX, cm*, LastResort)."""
  plots.find_cjk_font.cache_clear()
  fm = font_manager.fontManager
  bundled = [e for e in fm.ttflist if "mpl-data" in e.fname]
  monkeypatch.setattr(fm, "ttflist", bundled)
  monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: [])
  yield
  plots.find_cjk_font.cache_clear()


def missing_glyph_warnings(fn):
  with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    fn()
  return [str(x.message) for x in w if "missing from font" in str(x.message)]


# ---- Labels and fonts ------------------------------------------------------------------

def test_fallback_is_romanized_when_no_font_covers_hiragana(no_system_cjk_font, tmp_path):
  lab = plots.class_labels(KMNIST.class_names, KMNIST.class_glyphs)  # font='auto'
  assert lab.texts == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
  assert lab.font is None and not lab.glyphs_drawn
  conf = np.diag(np.full(10, 90)) + 1
  warned = missing_glyph_warnings(
      lambda: plots.confusion_heatmap(conf, lab, str(tmp_path / "c.png")))
  assert warned == []
  check_png(str(tmp_path / "c.png"), plots.confusion_size(10))


def test_the_test_detects_empty_boxes(tmp_path):
  """Hiragana drawn without a covering font warns (what the other tests rule out)."""
  tofu = plots.Labels(texts=KMNIST.class_glyphs, short=KMNIST.class_glyphs, font=None)
  warned = missing_glyph_warnings(
      lambda: plots.confusion_heatmap(np.eye(10, dtype=int), tofu,
                                      str(tmp_path / "t.png")))
  assert warned and "HIRAGANA" in warned[0]


def test_last_resort_font_is_not_a_cjk_font():
  """matplotlib ships LastResortHE, whose cmap covers everything with placeholder
  boxes: it must never be picked."""
  path = os.path.join(os.path.dirname(font_manager.__file__), "mpl-data", "fonts", "ttf",
                      "LastResortHE-Regular.ttf")
  if not os.path.exists(path):
    pytest.skip("this matplotlib has no LastResortHE")
  assert not plots.covers(path, frozenset(map(ord, KMNIST.class_glyphs)))
  lab = plots.class_labels(KMNIST.class_names, KMNIST.class_glyphs, font=path)
  assert lab.font is None and lab.texts[0] == "o"


def test_explicit_none_and_unknown_font_fall_back():
  assert romanized().texts[1] == "ki"
  lab = plots.class_labels(KMNIST.class_names, KMNIST.class_glyphs, font="No Such Font")
  assert lab.font is None and lab.texts[1] == "ki"


def test_ascii_classes_need_no_font():
  mnist = data.get_info("mnist")
  lab = plots.class_labels(mnist.class_names, mnist.class_glyphs)
  assert lab.texts == tuple("0123456789") and lab.font is None


def test_cjk_font_draws_hiragana(tmp_path):
  plots.find_cjk_font.cache_clear()
  if plots.find_cjk_font("".join(KMNIST.class_glyphs)) is None:
    pytest.skip("no CJK font installed (e.g. apt-get install fonts-noto-cjk)")
  lab = plots.class_labels(KMNIST.class_names, KMNIST.class_glyphs)
  assert lab.font and lab.texts[0] == "お (o)" and lab.short[9] == "を"
  k49 = data.get_info("k49")
  lab49 = plots.class_labels(k49.class_names, k49.class_glyphs)
  assert lab49.font and lab49.texts[-1] == "ゝ (odoriji)"
  conf = np.diag(np.full(10, 90)) + 1
  warned = missing_glyph_warnings(
      lambda: plots.confusion_heatmap(conf, lab, str(tmp_path / "c.png")))
  assert warned == []
  check_png(str(tmp_path / "c.png"), plots.confusion_size(10))


# ---- Every figure: non-empty PNG of the expected size ----------------------------------

@pytest.fixture(scope="module")
def fake_eval():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 30)
  logits = rng.normal(size=(300, 10)) + 3 * np.eye(10)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
  return labels, probs, images, metrics.summarize(labels, probs)


def test_all_figures(fake_eval, tmp_path):
  labels, probs, images, s = fake_eval
  lab = romanized()
  p = lambda n: str(tmp_path / n)  # noqa: E731
  pc = s["per_class"]

  check_png(plots.confusion_heatmap(s["confusion"], lab, p("conf.png")), (8.4, 7.2))
  check_png(plots.per_class_accuracy(pc["accuracy"], pc["interval_lo"], pc["interval_hi"],
                                     lab, p("acc.png"), overall=s["accuracy"]), (7, 4.5))
  rows = [{"true": d["true"], "pred": d["pred"], "count": d["count"],
           "mistakes": [(images[i], probs[i, d["pred"]])
                        for i in metrics.confident_mistakes(labels, probs, d["true"],
                                                            d["pred"], 6)],
           "typical_true": [images[i] for i in metrics.typical_examples(labels, probs,
                                                                        d["true"], 3)],
           "typical_pred": []}
          for d in s["most_confused"][:4]]
  check_png(plots.mistakes_grid(rows, lab, p("grid.png")),
            plots.mistakes_grid_size(4, 6, 3))
  check_png(plots.mistakes_grid([], lab, p("grid0.png")),
            plots.mistakes_grid_size(1, 6, 3))
  check_png(plots.reliability_diagram(s["calibration"], p("rel.png")), (6, 6.5))
  history = [{"epoch": e, "step": 10 * e, "train_loss": 1 / e,
              "train_accuracy": 1 - 0.5 / e, "val_loss": 1.1 / e,
              "val_accuracy": 1 - 0.6 / e, "lr": 0.01 / e,
              "val_confusion": (np.diag(np.full(10, 20)) + e).tolist()}
             for e in range(1, 5)]
  check_png(plots.learning_curves(history, p("lc.png"), mark_epoch=3), (14, 4))
  epochs, confs = metrics.confusions_over_epochs(history)
  check_png(plots.per_class_error_over_epochs(epochs, metrics.per_class_error(confs), lab,
                                              p("ep.png")), (9, 5))
  check_png(plots.per_class_error_over_epochs([], np.zeros((0, 10)), lab, p("ep0.png")),
            (9, 5))
  check_png(plots.per_class_comparison(
      [{"name": "a", "mean": pc["accuracy"], "err": np.full(10, 0.02)},
       {"name": "b", "mean": pc["accuracy"] * 0.9, "err": None}], lab, p("cmp.png")),
      (max(7, 0.35 * 20 + 2.5), 4.8))
  xy = np.random.default_rng(1).normal(size=(300, 2))
  panel = {"title": "t", "xy": xy, "labels": labels, "class_labels": lab}
  check_png(plots.embedding_grid([panel, None, panel], p("emb.png"), cols=2),
            plots.embedding_grid_size(2, 2))
  sep = [{"name": f"r{i}", "knn_accuracy": 0.5 + i / 10, "silhouette": i / 10 - 0.1}
         for i in range(4)]
  check_png(plots.separability_bars(sep, p("sep.png")),
            (10, plots.separability_height(4)))


def test_k49_sized_figures(tmp_path):
  k49 = data.get_info("k49")
  lab = plots.class_labels(k49.class_names, k49.class_glyphs, font=None)
  conf = np.random.default_rng(0).integers(0, 5, (49, 49)) + np.diag(np.full(49, 80))
  check_png(plots.confusion_heatmap(conf, lab, str(tmp_path / "c.png")),
            plots.confusion_size(49))
  err = np.random.default_rng(1).random((3, 49)) / 2
  check_png(plots.per_class_error_over_epochs([1, 2, 3], err, lab,
                                              str(tmp_path / "e.png")), (9, 5))


def test_png_written_atomically_over_an_old_file(tmp_path, fake_eval):
  path = str(tmp_path / "r.png")
  with open(path, "wb") as f:
    f.write(b"old")
  plots.reliability_diagram(fake_eval[3]["calibration"], path)
  check_png(path, (6, 6.5))
  with pytest.raises(ValueError, match="not a PNG"):
    plots.png_size(__file__)


# ---- Readability: colours, units, cell text, near-zero bars ----------------------------

def test_cell_text_is_legible_or_absent():
  fig = plots.figure(6, 5)
  ax = fig.add_subplot()
  vals = np.linspace(0, 1, 100).reshape(10, 10)
  im = ax.imshow(vals, cmap=plots.SEQUENTIAL, vmin=0, vmax=1)
  assert plots.annotate_cells(fig, ax, vals, [[f"{v:.0%}" for v in r] for r in vals], im)
  sizes = {t.get_fontsize() for t in ax.texts}
  assert len(ax.texts) == 100 and min(sizes) >= plots.MIN_CELL_PT, sizes
  # Dark text on light cells, light text on dark ones.
  assert ax.texts[0].get_color() == "white" and ax.texts[-1].get_color() == "black"
  small = plots.figure(2, 2)
  ax2 = small.add_subplot()
  vals = np.random.default_rng(0).random((40, 40))
  im2 = ax2.imshow(vals)
  assert not plots.annotate_cells(small, ax2, vals, [["0.50"] * 40] * 40, im2)
  assert len(ax2.texts) == 0


def test_near_zero_bars_get_a_marker_and_value():
  fig = plots.figure(7, 4)
  ax = fig.add_subplot()
  plots.grouped_bars(ax, [("clean", [0.9, 0.8, 0.95], None),
                          ("PGD", [0.0, 0.004, 0.3], None)], romanized_3(), scale=100.0)
  marked = [line for line in ax.lines if line.get_marker() == "^"]
  assert len(marked) == 1 and list(marked[0].get_ydata()) == [0.0, 0.4]
  assert sorted(t.get_text() for t in ax.texts) == ["0", "0.4"]


def romanized_3():
  return plots.class_labels(["a", "b", "c"], None)


def test_colour_maps_are_colour_blind_safe():
  assert plots.SEQUENTIAL == "cividis"
  rgb = [plots.diverging()(v)[:3] for v in (0.0, 0.5, 1.0)]
  assert rgb[0][2] > rgb[0][0] and rgb[2][0] > rgb[2][2]   # blue ... orange
  assert min(rgb[1]) > 0.9                                 # white at 0
  # Okabe-Ito series colours (blue, orange, bluish green, ...): no red + green pair.
  assert plots.palette(3) == list(plots.OKABE_ITO[:3])
  assert plots.OKABE_ITO[:3] == ("#0072B2", "#E69F00", "#009E73")
  assert len(plots.palette(12)) == 12


def test_robustness_figures(tmp_path):
  lab = romanized()
  p = lambda n: str(tmp_path / n)  # noqa: E731
  acc = np.random.default_rng(0).random((10, 21))
  cols = ["clean"] + [f"c{i}" for i in range(20)]
  check_png(plots.corruption_heatmap(acc, lab, cols, p("h.png")),
            plots.corruption_heatmap_size(10, 21))
  check_png(plots.corruption_heatmap(acc - 0.5, lab, cols, p("g.png"), gain=True),
            plots.corruption_heatmap_size(10, 21))
  series = [{"name": "m", "clean": 0.05,
             "errors": {"fog": [0.2, 0.5], "zigzag": [0.1, 0.2]}}]
  check_png(plots.error_vs_severity(series, [1, 5], p("e.png")),
            plots.error_vs_severity_size(2))
  curves = [{"name": "m", "attack": a, "epsilons": [0, 0.1], "accuracy": [0.9, 0.0]}
            for a in ("fgsm", "pgd")]
  check_png(plots.accuracy_vs_epsilon(curves, p("a.png")), (8, 5))
  check_png(plots.robust_per_class([{"name": "clean", "accuracy": acc[:, 0]},
                                    {"name": "PGD", "accuracy": np.zeros(10)}], lab,
                                   p("r.png")), (plots.bar_width_in(10, 2), 4.8))
