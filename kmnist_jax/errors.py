"""One exception type for every bad input a user can give.

Scripts catch :class:`UserError` at the top and print its message as one line
(no traceback), so every message must name the bad thing and the valid choices.
"""


class UserError(Exception):
  """A bad input (name, shape, file, flag): the message says what and how to fix it."""


def unknown(kind: str, name, choices) -> UserError:
  """`unknown('dataset', 'kmnsit', [...])` -> UserError with the valid choices."""
  return UserError(
      f"unknown {kind} {name!r}; valid choices: {', '.join(sorted(map(str, choices)))}")
