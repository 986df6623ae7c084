"""Small file helpers shared by training, studies and reports (no jax import).

Paths go through `etils.epath`, so the same call writes a local file or a ``gs://``
object (a training workdir may be either).
"""

import os

from etils import epath


def atomic_write(path, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: never half-written."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + f".tmp{os.getpid()}")
  tmp.write_text(text)
  tmp.replace(path)
