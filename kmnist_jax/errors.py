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


# Exit codes of the scripts.
EXIT_USER_ERROR = 2
EXIT_PREEMPTED = 75   # EX_TEMPFAIL: stopped by SIGTERM/SIGINT, checkpoint saved; rerun


class Preempted(Exception):
  """The run stopped on SIGTERM/SIGINT after saving a checkpoint of that exact step.

  Not a UserError: scripts print its one-line message (``preempted: ...``) and exit
  with :data:`EXIT_PREEMPTED`; the same command resumes bit-identically.
  """

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step
