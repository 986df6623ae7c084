"""Cells and sentences of the studies' tables: mean ± std over seeds, paired
differences to the baseline row with their significance mark, and the sentence per
metric saying which rows differ significantly (the rule: :func:`kmnist_jax.metrics.paired`).

Rows are the studies' summary rows: ``<metric>_mean`` / ``_std`` and
``<metric>_delta_{mean,std,n,significant,t_test}`` per metric, a label per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kmnist_jax import metrics


def pm(mean, std, scale: float = 100.0, digits: int = 2, signed: bool = False) -> str:
  """'mean ± std' scaled (default: fractions as %); '' without a mean."""
  if mean is None:
    return ""
  s = f"{scale * mean:+.{digits}f}" if signed else f"{scale * mean:.{digits}f}"
  return s + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def delta(row: Mapping, metric: str, digits: int = 2, scale: float = 100.0) -> str:
  """A paired difference cell: mean ± std over seeds (pp), '*' when significant, '**'
  when a paired t-test also confirms it."""
  out = pm(row.get(f"{metric}_delta_mean"), row.get(f"{metric}_delta_std"), scale=scale,
           digits=digits, signed=True)
  mark = metrics.significance_mark(row.get(f"{metric}_delta_significant"),
                                   row.get(f"{metric}_delta_t_test"))
  return out + (f" {mark}" if out and mark else "")


def significance(rows: Sequence[Mapping], words: Mapping[str, tuple[str, int]], *,
                 label: str = "policy", base: str = "none", noun: str = "policy") -> str:
  """One sentence per metric of `words` ({metric: (words, +1 if higher is better else
  -1)}) naming the rows (by their `label` field) whose paired difference to `base` is
  significantly better, worse, or neither, and which the t-test confirms."""
  lines = []
  for m, (word, better) in words.items():
    cells = [r for r in rows if r.get(f"{m}_delta_mean") is not None]
    if not cells:
      continue
    sig = [r for r in cells if r.get(f"{m}_delta_significant")]
    helps = [r[label] for r in sig if better * r[f"{m}_delta_mean"] > 0]
    hurts = [r[label] for r in sig if better * r[f"{m}_delta_mean"] < 0]
    untested = [r[label] for r in cells if (r.get(f"{m}_delta_n") or 0) < 2]
    neither = [r[label] for r in cells if r not in sig and r[label] not in untested]

    def names(ps):
      return ", ".join(f"`{p}`" for p in ps)
    parts = []
    if helps:
      parts.append(f"significantly better than `{base}` with {names(helps)}")
    if hurts:
      parts.append(f"significantly worse than `{base}` with {names(hurts)}")
    if not helps and not hurts and neither:
      parts.append(f"no {noun} differs significantly from `{base}`")
    if neither:
      parts.append(f"not significant: {names(neither)}")
    if untested:
      parts.append(f"fewer than 2 paired seeds so far (not tested): {names(untested)}")
    if sig:
      strict = [r[label] for r in sig if r.get(f"{m}_delta_t_test")]
      parts.append(f"of the significant ones, a paired t-test at 5% confirms "
                   f"{names(strict) or 'none'}")
    lines.append(f"- {word}: " + "; ".join(parts) + ".")
  return "\n".join(lines)
