"""Evaluators: one file per measurement, chosen by name from a config.

A config names its evaluators (big_vision's ``config.evals``)::

    config.evals = dict(
        classification=dict(type="classification", split="test"),
        corruption=dict(type="corruption", corruptions="fog,rotate", limit=1000),
    )

and :func:`from_config` turns that into ``[(name, module, settings)]`` through the
plain-dict :data:`REGISTRY`. Every evaluator module has:

* ``DEFAULTS``: its settings and their defaults; ``check_config(**settings)`` fills
  them in and checks each value (one-line :class:`UserError`), before anything loads;
* ``run(restored, *, data_dir=None, **settings) -> record``: one restored checkpoint
  (:class:`Checkpoint` or ``train.Restored``) -> a JSON-able dict;
* ``summarize(records) -> summary``: several records of one setting (seeds) -> mean /
  std (sample, ddof=1) of each number, the per-seed values kept.

Evaluators compute; the module of the same name in :mod:`kmnist_jax.reports` renders a
summary (tables and figures; several settings side by side, e.g. MNIST beside KMNIST).

:mod:`kmnist_jax.evaluators.cka` compares several checkpoints with each other rather
than measuring one: its ``run_many(checkpoints, ...)`` takes them all (see there).
:mod:`kmnist_jax.studies.evaluate` runs checkpoints x evaluators and writes the report.
"""

from __future__ import annotations

from collections.abc import Mapping

from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import (
  attack,
  cka,
  classification,
  corruption,
  embedding,
  smoothing,
)
from kmnist_jax.evaluators.common import (  # noqa: F401  (re-exported)
  SPLITS,
  STEP_CHOICES,
  Checkpoint,
  check_dataset,
  load_split,
  parse_step,
  resolve_workdir,
  restore,
)

REGISTRY = {"classification": classification, "corruption": corruption, "attack": attack,
            "embedding": embedding, "cka": cka, "smoothing": smoothing}


def plain(x):
  """A ConfigDict / nested mapping as plain dicts (other values as they are)."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): plain(v) for k, v in x.items()}
  return x


def from_config(evals) -> list[tuple[str, object, dict]]:
  """``[(name, module, settings)]`` from ``config.evals`` (a dict / ConfigDict of
  ``name: dict(type=<registry key>, **settings)``), in the given order (a ConfigDict
  iterates sorted by name); every entry
  checked (unknown type or setting -> one-line UserError naming the valid ones)."""
  out = []
  for name, entry in plain(evals or {}).items():
    if not isinstance(entry, Mapping):
      raise UserError(f"config.evals.{name} must be a dict(type=..., ...), got "
                      f"{entry!r}; valid types: {', '.join(sorted(REGISTRY))}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    if kind is None:
      raise UserError(f"config.evals.{name} has no type; valid types: "
                      f"{', '.join(sorted(REGISTRY))}")
    if kind not in REGISTRY:
      raise unknown(f"evaluator type (config.evals.{name}.type)", kind, REGISTRY)
    module = REGISTRY[kind]
    try:
      module.check_config(**entry)
    except UserError as e:
      raise UserError(f"config.evals.{name}: {e}") from None
    out.append((name, module, entry))
  return out


def type_name(module) -> str:
  return module.__name__.rsplit(".", 1)[-1]
