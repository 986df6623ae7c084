"""One report folder: Markdown text, tables (Markdown + CSV + JSON), figures, metrics.

    from kmnist_jax import reports
    with io.atomic_dir(out) as tmp:          # the folder is replaced whole
      rep = reports.Report(tmp, title="Confusion analysis")
      rep.section("Per class", "Accuracy is recall ...")
      rep.table("per_class", rows, columns={"class": "class", "acc": "accuracy"},
                formats={"acc": reports.pct})
      plots.confusion_heatmap(..., rep.figure("confusion", "confusion matrix"))
      rep.metrics["classification"] = summary
      rep.write()                            # report.md + metrics.json (with run_meta)

A table is given as rows (dicts); ``columns`` picks and orders the keys (a list, or a
dict key -> header). Each table is written three ways: ``<name>.md`` (formatted, as in
report.md), ``<name>.csv`` (raw values) and ``<name>.json`` (raw values, strict JSON).
``figure(name)`` returns the PNG path for a plotting function to write and places the
picture in report.md; :meth:`Report.write` refuses to write a report whose pictures are
missing. metrics.json holds ``meta`` (:func:`kmnist_jax.io.run_meta`) and every entry of
:attr:`Report.metrics`. Nothing here imports matplotlib or jax.
"""

from __future__ import annotations

import csv
import io as _stdio
import math
import os
from collections.abc import Callable, Mapping, Sequence

from kmnist_jax import io


def pct(x, digits: int = 2) -> str:
  """0.9634 -> '96.34%'; None / nan -> '-'."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "-"
  return f"{100 * float(x):.{digits}f}%"


def pct_pm(mean, std=None, n: int = 1, digits: int = 2) -> str:
  """'96.34%' for one run, '96.34% ± 0.12' (std in percentage points) for several."""
  s = pct(mean, digits)
  if n > 1 and std is not None and s != "-":
    s += f" ± {100 * float(std):.{digits}f}"
  return s


def cell(x) -> str:
  """Default Markdown formatting of a value: floats to 4 significant digits."""
  if x is None:
    return "-"
  if isinstance(x, bool):
    return str(x)
  if isinstance(x, float):
    return "-" if not math.isfinite(x) else f"{x:.4g}"
  if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy scalar
    return cell(x.item())
  return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping], columns: Mapping[str, str],
                   formats: Mapping[str, Callable] | None = None) -> str:
  formats = formats or {}
  lines = ["| " + " | ".join(columns.values()) + " |",
           "|" + "---|" * len(columns)]
  for r in rows:
    lines.append("| " + " | ".join(formats.get(k, cell)(r.get(k)) for k in columns)
                 + " |")
  return "\n".join(lines)


def _columns(rows: Sequence[Mapping], columns) -> dict[str, str]:
  if columns is None:
    keys: dict[str, str] = {}
    for r in rows:
      keys.update({k: k for k in r})
    return keys
  if isinstance(columns, Mapping):
    return dict(columns)
  return {k: k for k in columns}


def _csv_value(x):
  x = io.jsonable(x)
  if isinstance(x, (list, dict)):
    return io.dumps_json(x).strip()
  return "" if x is None else x


class Report:
  """A report being written into `folder` (normally an :func:`io.atomic_dir`)."""

  def __init__(self, folder: str, title: str = ""):
    self.folder = str(folder)
    os.makedirs(self.folder, exist_ok=True)
    self.title = title
    self.parts: list[str] = []
    self.metrics: dict = {}
    self.tables: list[str] = []
    self.figures: list[str] = []

  def path(self, name: str) -> str:
    return os.path.join(self.folder, name)

  def text(self, markdown: str) -> None:
    """Appends Markdown to report.md."""
    self.parts.append(markdown.rstrip("\n") + "\n")

  def section(self, title: str, markdown: str = "", *, level: int = 2) -> None:
    """A heading (``##`` by default) and optional text."""
    self.text("#" * level + " " + title + "\n")
    if markdown:
      self.text(markdown)

  def table(self, name: str, rows: Sequence[Mapping], columns=None, *,
            formats: Mapping[str, Callable] | None = None, caption: str = "",
            show: bool = True) -> str:
    """Writes `name`.md / .csv / .json from `rows`; returns the Markdown table (also
    placed in report.md unless ``show=False``)."""
    if name in self.tables:
      raise ValueError(f"report table {name!r} written twice")
    rows = list(rows)
    cols = _columns(rows, columns)
    md = markdown_table(rows, cols, formats)
    io.atomic_write(self.path(f"{name}.md"),
                    (f"{caption}\n\n" if caption else "") + md + "\n")
    buf = _stdio.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(cols))
    for r in rows:
      w.writerow([_csv_value(r.get(k)) for k in cols])
    io.atomic_write(self.path(f"{name}.csv"), buf.getvalue())
    io.write_json(self.path(f"{name}.json"),
                  {"columns": cols, "rows": [{k: r.get(k) for k in cols} for r in rows]})
    self.tables.append(name)
    if show:
      self.text((f"{caption}\n\n" if caption else "") + md + "\n")
    return md

  def figure(self, name: str, caption: str = "", *, show: bool = True) -> str:
    """The path `name`.png for a plotting function to write; placed in report.md."""
    file = name if name.endswith(".png") else f"{name}.png"
    if file in self.figures:
      raise ValueError(f"report figure {file!r} written twice")
    self.figures.append(file)
    if show:
      self.text(f"![{caption or name}]({file})\n")
    return self.path(file)

  def markdown(self) -> str:
    head = [f"# {self.title}\n"] if self.title else []
    return "\n".join(head + self.parts)

  def write(self, *, meta: dict | None = None) -> str:
    """report.md + metrics.json (``meta``: run metadata, default io.run_meta())."""
    missing = [f for f in self.figures if not os.path.isfile(self.path(f))]
    if missing:
      raise FileNotFoundError(f"report in {self.folder}: figures never written: "
                              + ", ".join(missing))
    io.atomic_write(self.path("report.md"), self.markdown())
    io.write_json(self.path("metrics.json"),
                  {"meta": meta if meta is not None else io.run_meta(), **self.metrics})
    return self.path("report.md")
