"""Writes (or checks) one generated block of the README between its markers; the
configs table and the performance table are two such blocks."""

from __future__ import annotations

import sys

from kmnist_jax.errors import UserError


def update(readme: str, begin: str, end: str, rendered: str, *, what: str, script: str,
           check: bool) -> None:
  """Replaces the text from `begin` to `end` in `readme` with `rendered`; with `check`,
  exits 1 (one `error:` line) when the file is stale instead of writing it."""
  text = open(readme).read()
  if begin not in text or end not in text:
    raise UserError(f"{readme} has no {begin} ... {end} block")
  a, b = text.index(begin), text.index(end) + len(end)
  new = text[:a] + rendered + text[b:]
  if check:
    if new != text:
      print(f"error: the {what} in {readme} is stale: run python benchmarks/{script}",
            file=sys.stderr)
      sys.exit(1)
    print(f"{what} up to date")
    return
  if new != text:
    with open(readme, "w") as f:
      f.write(new)
  print(f"wrote the {what} in {readme}")
