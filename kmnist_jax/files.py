"""Small file helpers shared by training, studies and reports (no jax import)."""

import os


def atomic_write(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: never half-written."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
