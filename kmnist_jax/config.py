"""The training config: one `ml_collections.ConfigDict`, its defaults and its checks.

Experiment config files (`experiments/configs/*.py`) start from :func:`base` and
change what they need; `experiments/train.py --config.x=y` overrides single fields.
:func:`validate` turns every bad value into one :class:`UserError` line that names
the field and the valid choices, before any data is loaded or anything compiled.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os

import ml_collections

from kmnist_jax.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adadelta")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
PARALLEL_MODES = ("auto", "single", "pmap", "sharded")
DTYPES = ("float32", "bfloat16")

# The one list of result-neutral fields: where the data is read from and how progress
# is shown or saved. They cannot change a number, so they stay out of a study run's
# cache key (kmnist_jax.studies.plan.key_config) and out of what makes two runs
# different settings (a study committed under results/ continues on another machine
# with another data folder).
RESULT_NEUTRAL = frozenset({
    "data_dir", "tfds_dir", "data_source", "progress", "progress_updates_per_epoch",
    "tensorboard", "checkpoint_every", "keep_checkpoints", "allow_config_mismatch",
})

# Fields a workdir may be resumed with changed: the result-neutral ones, and those that
# change how a run executes or when it stops, not what one step computes. Every other
# field must match the checkpoint.
RUNTIME_FIELDS = RESULT_NEUTRAL | frozenset({
    "parallel", "eval_batch_size", "num_epochs_stop", "conv_impl", "distributed",
    "eval_test_every_epoch", "stop_at_test_accuracy", "eval_test_from_epoch",
})

# Fields added after studies and checkpoints were committed. At its default (from
# :func:`base`: :func:`later_defaults`) such a field is left out of a study run's cache
# key (kmnist_jax.studies.plan.key_config) and a checkpoint saved before the field
# existed counts as saved with it (:func:`differences`), so committed records and old
# workdirs stay valid; any other value is a difference like any field's.
LATER_FIELDS = frozenset({"eval_test_from_epoch", "adversarial"})


def base() -> ml_collections.ConfigDict:
  """All fields with their defaults (the default CNN on KMNIST)."""
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "kmnist"
  c.data_source = "auto"          # auto | files | tfds
  c.data_dir = ""                 # '' -> $KMNIST_JAX_DATA_DIR or ~/kmnist_jax_data
  c.tfds_dir = ""                 # '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.val_size = 5000               # carved from train, deterministically from val_seed
  c.val_seed = 0
  c.train_limit = 0               # >0: first N train examples only (tests, smoke runs)
  c.test_limit = 0
  # Model.
  c.model = "cnn"
  c.model_kwargs = ml_collections.ConfigDict()
  c.dtype = "float32"             # computation dtype: float32 | bfloat16
  c.conv_impl = "auto"            # auto | xla | im2col (kmnist_jax.convs): same params
  # Optimisation.
  c.optimizer = "adamw"
  c.learning_rate = 3e-3
  c.momentum = 0.9                # sgd momentum / adam b1
  c.weight_decay = 5e-4
  c.schedule = "onecycle"
  c.warmup_epochs = 0.0           # linear warm-up (constant / cosine / step)
  c.label_smoothing = 0.0
  c.grad_clip = 0.0               # >0: clip by global norm
  c.batch_size = 128
  c.num_epochs = 6
  c.num_epochs_stop = 0           # >0: stop after this epoch (resumable), schedule unchanged
  c.augment = ""                  # augmentation policy string (augment issue); '' = none
  # Randomness: everything derives from this through jax.random keys.
  c.seed = 0
  # Execution.
  c.parallel = "auto"             # auto | single | pmap | sharded
  c.distributed = False           # call jax.distributed.initialize() (multi-host)
  c.eval_batch_size = 1000
  c.progress = True
  c.progress_updates_per_epoch = 10
  c.tensorboard = True
  c.checkpoint_every = 1          # epochs
  c.keep_checkpoints = 2          # latest k kept, plus the best by validation accuracy
  c.allow_config_mismatch = False
  # Time to accuracy (benchmarks/time_to_accuracy.py): evaluate the test set after
  # every epoch (history gets test_accuracy and elapsed_s), and stop the run once it
  # reaches this accuracy (0: never). Test-set stopping is for that benchmark only.
  c.eval_test_every_epoch = False
  c.stop_at_test_accuracy = 0.0
  c.eval_test_from_epoch = 1      # with either: check the test set from this epoch on
  # Adversarial training, on device inside the compiled steps with the attack code the
  # evaluators use (kmnist_jax.robustness.adversarial_training; docs/training.md).
  c.adversarial = ml_collections.ConfigDict(dict(
      method="none",              # none | fgsm_rs | pgd | trades
      eps=0.3,                    # L-inf radius, pixels in [0, 1]
      steps=10,                   # attack steps of pgd / trades (fgsm_rs: one)
      step_size=0.0,              # 0: pgd / trades 2.5 eps / steps, fgsm_rs 1.25 eps
      beta=6.0,                   # trades: CE(clean) + beta KL(p_clean || p_adv)
      eps_warmup_epochs=0.0,      # eps ramps linearly from 0 over these epochs
      loss="ce",                  # pgd's attack loss: ce | dlr | margin
      bn_mode="eval",             # BatchNorm while attacking: eval (running statistics)
                                  # | train (batch statistics, not updated)
      check_every_epoch=True,     # PGD on held-out validation images after each epoch:
      check_images=256,           # how many (the first of the validation split)
      check_steps=10,
      collapse_ratio=0.5,         # collapse: check accuracy < ratio x its best so far
      stop_on_collapse=True,      # stop the run at a collapse (the best is kept)
  ))
  return c


@functools.cache
def later_defaults() -> dict:
  """LATER_FIELDS with their defaults in :func:`base` (as :func:`to_dict` gives them)."""
  defaults = to_dict(base())
  return {k: defaults[k] for k in LATER_FIELDS}


def _choice(cfg, field, choices):
  value = cfg[field]
  if value not in choices:
    raise UserError(f"config.{field}={value!r} is not valid; valid choices: "
                    f"{', '.join(choices)}")


def _positive(cfg, field, allow_zero=False):
  value = cfg[field]
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    raise UserError(f"config.{field}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks every field a user can get wrong; raises one UserError line."""
  from kmnist_jax import convs as ops
  from kmnist_jax import data, models  # Registries live with their concepts.

  missing = sorted(set(base().keys()) - set(cfg.keys()))
  if missing:
    raise UserError(f"config is missing fields {missing}; start config files from "
                    "kmnist_jax.config.base()")
  if cfg.dataset not in data.DATASETS:
    raise UserError(f"config.dataset={cfg.dataset!r} is not valid; valid choices: "
                    f"{', '.join(sorted(data.DATASETS))}")
  _choice(cfg, "data_source", data.SOURCES)
  if cfg.model not in models.MODELS:
    raise UserError(f"config.model={cfg.model!r} is not valid; valid choices: "
                    f"{', '.join(sorted(models.MODELS))}")
  _choice(cfg, "optimizer", OPTIMIZERS)
  _choice(cfg, "schedule", SCHEDULES)
  _choice(cfg, "parallel", PARALLEL_MODES)
  _choice(cfg, "dtype", DTYPES)
  _choice(cfg, "conv_impl", ops.CONV_IMPLS)
  for f in ("learning_rate", "batch_size", "num_epochs", "eval_batch_size",
            "checkpoint_every", "keep_checkpoints", "progress_updates_per_epoch"):
    _positive(cfg, f)
  for f in ("weight_decay", "warmup_epochs", "grad_clip", "val_size", "train_limit",
            "test_limit", "num_epochs_stop"):
    _positive(cfg, f, allow_zero=True)
  if not 0.0 <= cfg.stop_at_test_accuracy <= 1.0:
    raise UserError(f"config.stop_at_test_accuracy={cfg.stop_at_test_accuracy} must be "
                    "in [0, 1] (a fraction: 0.99 for 99%; 0 never stops)")
  if cfg.eval_test_from_epoch < 1:
    raise UserError(f"config.eval_test_from_epoch={cfg.eval_test_from_epoch} must be "
                    ">= 1 (the first epoch whose test accuracy is checked)")
  if not 0.0 <= cfg.label_smoothing < 1.0:
    raise UserError(f"config.label_smoothing={cfg.label_smoothing} must be in [0, 1)")
  if not 0.0 <= cfg.momentum < 1.0:
    raise UserError(f"config.momentum={cfg.momentum} must be in [0, 1)")
  if cfg.warmup_epochs >= cfg.num_epochs:
    raise UserError(f"config.warmup_epochs={cfg.warmup_epochs} must be smaller than "
                    f"config.num_epochs={cfg.num_epochs}")
  if cfg.augment:
    from kmnist_jax import augment
    try:
      augment.parse(cfg.augment)
    except UserError as e:
      raise UserError(f"config.augment: {e}") from None
  from kmnist_jax.robustness import adversarial_training
  adversarial_training.check(cfg)


def _configs_dir() -> str:
  from kmnist_jax import cli  # experiments/ in a checkout, else the installed copy
  try:
    return os.path.join(cli.experiments_dir(), "configs")
  except FileNotFoundError:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "experiments", "configs")


CONFIG_DIR = _configs_dir()


def _config_names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                if f.endswith(".py") and not f.startswith("_"))


def _exec_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """get_config([arg]) of the file at `path`; one-line UserError if it cannot run."""
  try:
    spec = importlib.util.spec_from_file_location(
        f"_config_{os.path.basename(path)[:-3]}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg is not None else mod.get_config()
  except UserError:
    raise
  except Exception as e:  # noqa: BLE001 - a broken config file is the user's input
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
    raise UserError(f"config file {path!r} cannot be loaded{where}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                    "it must define get_config() returning a ConfigDict") from None


def load_file(name: str) -> ml_collections.ConfigDict:
  """get_config() of experiments/configs/<name>.py (or of a path to a config file)."""
  path = name if name.endswith(".py") else os.path.join(CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    raise UserError(f"unknown config {name!r}; valid choices: "
                    f"{', '.join(_config_names())}")
  return _exec_config(path)


def _flag_value(argv: list[str], flag: str) -> str | None:
  for i, arg in enumerate(argv[1:], 1):
    if arg in (f"--{flag}", f"-{flag}") and i + 1 < len(argv):
      return argv[i + 1]
    for prefix in (f"--{flag}=", f"-{flag}="):
      if arg.startswith(prefix):
        return arg[len(prefix):]
  return None


def check_config_file(value: str, flag: str = "config") -> ml_collections.ConfigDict:
  """The config that `--config=<file>[:arg]` names; one-line UserError if the file is
  missing or does not load (instead of config_flags' chained tracebacks)."""
  path, _, arg = value.partition(":")
  if not os.path.isfile(path):
    rel = os.path.relpath(CONFIG_DIR)
    what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
    raise UserError(f"--{flag} file {path!r} {what}; valid choices: "
                    + ", ".join(f"{rel}/{n}.py" for n in _config_names()))
  return _exec_config(path, arg or None)


def _unknown_field(name: str, arg: str, fields, extra: str = "") -> UserError:
  close = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(fields), n=3)
  hint = f" (did you mean {', '.join(close)}?)" if close else ""
  where = f"config.{name.rsplit('.', 1)[0]}" if "." in name else "config"
  return UserError(f"unknown config field {name!r} in {arg}{hint}; valid fields of "
                   f"{where}: {', '.join(sorted(fields)) or '(none)'}{extra}")


def resolve_field(cfg, name: str, where: str, *, argv=(), flag: str = "config"):
  """(parent ConfigDict, leaf name) of the dotted field `name` of `cfg`, or one
  UserError line naming the valid fields at that level (`where`: the flag or file that
  named it). The one check of every override: --config.x flags, sweep files, --set."""
  node, parts = cfg, name.split(".")
  for i, part in enumerate(parts):
    here = ".".join(parts[:i])
    if not isinstance(node, ml_collections.ConfigDict):
      raise UserError(f"config.{here} is not a group of fields (it holds {node!r}): "
                      f"{where} cannot set {part!r} inside it; use --{flag}.{here}=")
    if part not in node:
      extra = _model_kwargs_hint(argv, flag, cfg, part) if here == "model_kwargs" else ""
      raise _unknown_field(".".join(parts[:i + 1]), where, node.keys(), extra)
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def check_override_flags(argv: list[str], flag: str = "config",
                         default_file: str | None = None) -> None:
  """Refuses bad `--config ...` flags before absl does: a config file that is missing or
  does not load, and `--config.<field>[.<sub>...]=` naming an unknown field (checked
  against the loaded config file: `--config`, else `default_file`, else :func:`base`),
  each naming the valid choices."""
  value = _flag_value(argv, flag) or default_file
  cfg = check_config_file(value, flag) if value is not None else base()
  prefix = f"--{flag}."
  for arg in argv[1:]:
    if arg.startswith(prefix):
      resolve_field(cfg, arg[len(prefix):].split("=", 1)[0], arg.split("=", 1)[0],
                    argv=argv, flag=flag)


def _model_kwargs_hint(argv, flag: str, cfg, kwarg: str) -> str:
  """Where a model_kwargs override can go: the model's own arguments."""
  from kmnist_jax import models  # deferred: models imports JAX and Flax
  model = (_flag_value(list(argv), f"{flag}.model") if argv else None) or cfg.get("model", "")
  if model not in models.MODELS:
    return ""
  accepted = sorted(models.model_kwargs(model))
  if kwarg in accepted:
    return (f" (model {model!r} accepts {kwarg!r}, but this config file does not set "
            "it: add it to model_kwargs in the file)")
  return f" (model {model!r} accepts: {', '.join(accepted)})"


def to_dict(cfg: ml_collections.ConfigDict) -> dict:
  """A JSON-safe plain dict (tuples become lists)."""
  from kmnist_jax.io import jsonable
  return jsonable(cfg.to_dict())


def number_list(spec, cast, message: str) -> list:
  """`spec` ('1,3,5' or a sequence) as a list of `cast` values; UserError(`message`)
  when a part of the string is not a number (empty parts are dropped)."""
  if not isinstance(spec, str):
    return [cast(x) for x in spec]
  try:
    return [cast(p.strip()) for p in spec.split(",") if p.strip()]
  except ValueError:
    raise UserError(message) from None


def from_dict(d: dict) -> ml_collections.ConfigDict:
  """Inverse of :func:`to_dict`, filling fields added since the checkpoint was written."""
  cfg = base()
  cfg.update(ml_collections.ConfigDict(d))
  return cfg


def differences(saved: dict, current: dict, *, ignore=RUNTIME_FIELDS) -> list[str]:
  """Fields whose values differ, as 'field: saved -> current' lines."""
  out = []
  for key in sorted(set(saved) | set(current)):
    if key in ignore:
      continue
    a = saved.get(key, later_defaults().get(key, "<absent>"))
    b = current.get(key, later_defaults().get(key, "<absent>"))
    if a != b:
      out.append(f"{key}: {a!r} (checkpoint) vs {b!r} (now)")
  return out
