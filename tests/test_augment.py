"""kmnist_jax.augment: every op's contract, the policy parser, and training with it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kmnist_jax import augment
from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax.errors import UserError

EXAMPLE_OPS = [n for n, op in augment.REGISTRY.items() if op.level == "example"]
BATCH_OPS = [n for n, op in augment.REGISTRY.items() if op.level == "batch"]
# Parameters at which each op must be the identity.
ZERO = {
    "affine": dict(rot=0, scale=0, shear=0, shift=0),
    "elastic": dict(alpha=0),
    "cutout": dict(size=0),
    "erase": dict(min_area=0, max_area=0),
    "noise": dict(std=0),
    "crop": dict(pad=0),
    "mixup": dict(alpha=0),
    "cutmix": dict(alpha=0),
}


@pytest.fixture(scope="module")
def batch(data_dir):
  """16 real KMNIST test images [16, 28, 28, 1] in [0, 1] and smoothed targets."""
  ds = data_lib.load("kmnist", data_dir=data_dir, source="files", limit={"test": 16})
  x = jnp.asarray(ds.splits["test"].images, jnp.float32)[..., None] / 255.0
  t = jax.nn.one_hot(jnp.asarray(ds.splits["test"].labels), 10) * 0.9 + 0.01
  return x, t


def apply(name, key, x, t, **params):
  """The op alone: vmapped over per-example keys, or on the whole batch."""
  op = augment.REGISTRY[name]
  params = {**op.defaults, "p": 1.0, **params}
  return _compiled(name, tuple(sorted(params.items())))(key, x, t)


@functools.lru_cache(maxsize=None)
def _compiled(name, params):
  op = augment.REGISTRY[name]
  fn = functools.partial(op.fn, **dict(params))
  if op.level == "batch":
    return jax.jit(fn)
  return jax.jit(lambda key, x, t: (jax.vmap(fn)(jax.random.split(key, x.shape[0]), x), t))


# ---- Contract of every op ----------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLE_OPS + BATCH_OPS)
def test_shape_dtype_range_and_keys(name, batch):
  x, t = batch
  y, u = apply(name, jax.random.key(0), x, t)
  assert y.shape == x.shape and y.dtype == x.dtype
  assert u.shape == t.shape and u.dtype == t.dtype
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  assert not np.array_equal(np.asarray(y), np.asarray(x)), "default strength does nothing"
  y2, u2 = apply(name, jax.random.key(0), x, t)
  np.testing.assert_array_equal(y, y2)
  np.testing.assert_array_equal(u, u2)
  y3, _ = apply(name, jax.random.key(1), x, t)
  assert not np.array_equal(np.asarray(y), np.asarray(y3))


@pytest.mark.parametrize("name", EXAMPLE_OPS + BATCH_OPS)
def test_zero_strength_and_p0_are_identity(name, batch):
  x, t = batch
  for params in (ZERO[name], {"p": 0.0}):
    y, u = apply(name, jax.random.key(3), x, t, **params)
    np.testing.assert_array_equal(y, x, err_msg=str(params))
    np.testing.assert_array_equal(u, t, err_msg=str(params))


def test_each_example_gets_its_own_randomness(batch):
  x, t = batch
  same = jnp.repeat(x[:1], 8, axis=0)
  y, _ = augment.build("affine+cutout")(jax.random.key(0), same, t[:8])
  y = np.asarray(y)
  assert len({y[i].tobytes() for i in range(8)}) == 8


def test_registry_defaults_match_the_functions():
  import inspect
  for name, op in augment.REGISTRY.items():
    sig = inspect.signature(op.fn).parameters
    assert {q.name: q.default for q in op.params} == {
        k: v.default for k, v in sig.items() if v.kind == v.KEYWORD_ONLY}, name
    for q in op.params:
      assert q.lo <= q.default <= q.hi, (name, q)


# ---- Geometry --------------------------------------------------------------------------------

def dot(r, c):
  return jnp.zeros((28, 28, 1)).at[r, c, 0].set(1.0)


def test_affine_moves_a_known_pixel_where_expected():
  # Translation by (down 3, left 2): exact.
  y = augment.affine_transform(dot(10, 10), shift=(3.0, -2.0))
  assert np.unravel_index(np.argmax(y), y.shape)[:2] == (13, 8)
  np.testing.assert_allclose(float(y.max()), 1.0, atol=1e-5)
  # 90 degrees counter-clockwise about the centre (13.5, 13.5): (5, 13) is 8.5 above
  # and 0.5 left of the centre, so it lands 8.5 left of and 0.5 below it.
  y = augment.affine_transform(dot(5, 13), rot=90.0)
  assert np.unravel_index(np.argmax(y), y.shape)[:2] == (14, 5)
  np.testing.assert_allclose(float(y.max()), 1.0, atol=1e-5)
  # 180 degrees: (r, c) -> (27 - r, 27 - c).
  y = augment.affine_transform(dot(3, 20), rot=180.0)
  assert np.unravel_index(np.argmax(y), y.shape)[:2] == (24, 7)
  # Scale 2: the 2x2 block centred at (11.5, 15.5), 2 above and 2 right of the centre,
  # becomes a (bilinear) 4x larger blob centred 4 above and 4 right of it.
  y = augment.affine_transform(dot(11, 15) + dot(11, 16) + dot(12, 15) + dot(12, 16),
                               scale=2.0)
  y = np.asarray(y[..., 0])
  np.testing.assert_allclose(y.sum(), 16.0, atol=1e-4)
  centroid = np.einsum("hw,chw->c", y, np.mgrid[:28, :28]) / y.sum()
  np.testing.assert_allclose(centroid, (9.5, 17.5), atol=1e-4)


def test_random_affine_translation_stays_in_range():
  x = dot(14, 14)[None].repeat(64, 0)
  keys = jax.random.split(jax.random.key(0), 64)
  y = jax.vmap(functools.partial(augment.affine, rot=0, scale=0, shear=0, shift=3))(keys, x)
  grid = np.mgrid[:28, :28]
  mass = np.asarray(y[..., 0]).sum((1, 2))
  np.testing.assert_allclose(mass, 1.0, atol=1e-4)   # bilinear spread keeps the mass
  centroid = np.einsum("bhw,chw->bc", np.asarray(y[..., 0]), grid) / mass[:, None]
  assert np.abs(centroid - 14).max() <= 3.0 + 1e-4
  assert np.abs(centroid - 14).max() > 1.5          # and it does move


def test_elastic_field_is_simard_smoothing():
  key = jax.random.key(5)
  u = jax.random.uniform(key, (2, 28, 28), minval=-1.0, maxval=1.0)
  field = augment.elastic_field(key, (28, 28), alpha=34.0, sigma=4.0)
  ref = 34.0 * np.stack([scipy.ndimage.gaussian_filter(np.asarray(u[i]), 4.0,
                                                       mode="constant", truncate=4.0)
                         for i in range(2)])
  np.testing.assert_allclose(field, ref, atol=1e-5)
  assert 0.5 < float(jnp.std(field)) < 3.0   # pixels: a visible, not wild, distortion


def test_fused_geometry_equals_the_ops_it_fuses(batch):
  x, t = batch
  key = jax.random.key(2)
  # elastic then a zero affine: the fused path samples the field off the grid; at the
  # grid points (identity affine) it must give elastic alone.
  a, _ = augment.build("elastic")(key, x, t)
  b, _ = augment.build("elastic+affine(rot=0,scale=0,shear=0,shift=0)")(key, x, t)
  np.testing.assert_allclose(a, b, atol=1e-5)
  # A crop is an exact integer translation.
  y = augment.crop(jax.random.key(0), dot(10, 10), pad=3)
  r, c = np.unravel_index(np.argmax(y), y.shape)[:2]
  assert abs(r - 10) <= 3 and abs(c - 10) <= 3 and float(y.max()) == 1.0


def test_cutout_zeroes_a_square():
  y = augment.cutout(jax.random.key(1), jnp.ones((28, 28, 1)), size=8)
  zeros = np.argwhere(np.asarray(y[..., 0]) == 0)
  h, w = zeros.max(0) - zeros.min(0) + 1
  assert len(zeros) == h * w and h <= 8 and w <= 8 and len(zeros) > 0


# ---- Batch-level: mixed targets ------------------------------------------------------------

@pytest.mark.parametrize("name", BATCH_OPS)
def test_mixed_targets_sum_to_one_and_match_the_images(name, batch):
  x, _ = batch
  t = jax.nn.one_hot(jnp.arange(16), 16)   # every example its own class
  for seed in range(4):
    y, u = apply(name, jax.random.key(seed), x, t)
    u = np.asarray(u)
    np.testing.assert_allclose(u.sum(1), 1.0, atol=1e-6)
    assert (u >= 0).all()
    for i in range(16):
      lam = u[i, i]
      partners = [j for j in np.flatnonzero(u[i] > 0) if j != i]
      if not partners:          # mixed with itself (or not at all)
        continue
      (j,) = partners
      if name == "mixup":
        np.testing.assert_allclose(y[i], lam * x[i] + (1 - lam) * x[j], atol=1e-5)
      else:                     # the partner's pixels fill the box, of area 1 - lam
        changed = np.asarray(y[i] != x[i])
        assert changed.sum() <= round((1 - lam) * 784)
        np.testing.assert_array_equal(np.asarray(y[i])[changed], np.asarray(x[j])[changed])


# ---- Parsing and bad input -------------------------------------------------------------------

def test_parse_the_issue_example():
  parsed = augment.parse("affine(rot=15,shift=2)+elastic(alpha=34,sigma=4)+cutout(size=8)")
  assert [n for n, _ in parsed] == ["affine", "elastic", "cutout"]
  assert parsed[0][1] == {"rot": 15.0, "scale": 0.1, "shear": 10.0, "shift": 2.0, "p": 1.0}
  assert parsed[2][1] == {"size": 8, "p": 1.0} and isinstance(parsed[2][1]["size"], int)
  assert augment.parse("") == augment.parse("none") == []
  assert augment.parse(" crop + mixup( alpha = 0.4 , p=0.5 ) ")[1] == (
      "mixup", {"alpha": 0.4, "p": 0.5})
  canonical = augment.format_policy(parsed)
  assert augment.parse(canonical) == parsed


@pytest.mark.parametrize("policy,bad,valid", [
    ("afine(rot=15)", "'afine'", "affine, elastic, cutout, erase, noise, crop, mixup"),
    ("affine(rotation=15)", "'rotation'", "rot, scale, shear, shift, p"),
    ("cutout(size=-1)", "cutout(size=-1)", "0 <= size <= 28"),
    ("cutout(size=8,p=1.5)", "cutout(p=1.5)", "0 <= p <= 1"),
    ("cutout(size=2.5)", "cutout(size=2.5)", "(integer)"),
    ("noise(std=abc)", "'abc'", "0 <= std <= 1"),
    ("noise(std=nan)", "noise(std=nan)", "0 <= std <= 1"),
    ("affine(rot=15", "unbalanced", "name(key=value"),
    ("affine++cutout", "empty term", "name(key=value"),
    ("affine(15)", "'15'", "rot, scale"),
    ("affine(rot=1,rot=2)", "'rot' given twice", ""),
    ("erase(min_area=0.5,max_area=0.1)", "min_area=0.5", "min_area <= max_area"),
    ("elastic(alpha=34)x", "cannot parse", "name(key=value"),
])
def test_bad_policies_one_line_naming_the_part_and_the_choices(policy, bad, valid):
  with pytest.raises(UserError) as e:
    augment.parse(policy)
  msg = str(e.value)
  assert "\n" not in msg and policy in msg
  assert bad in msg and valid in msg, msg


def test_validate_rejects_a_bad_policy_before_loading():
  cfg = config_lib.base()
  cfg.augment = "cutout(size=99)"
  cfg.data_dir = "/nonexistent"
  with pytest.raises(UserError, match="cutout"):
    config_lib.validate(cfg)
    augment.build(cfg.augment, 10)   # until validate() parses the policy itself


# ---- Under jit, sharded, and in training ---------------------------------------------------

POLICY = "affine(rot=15,shift=2)+elastic(alpha=34,sigma=4)+cutout(size=8)+mixup"
SHARDED_POLICY = "affine(rot=15,shift=2)+cutout(size=8)+mixup"


def test_sharded_batch_gives_the_same_augmentation(batch):
  x, t = batch
  aug = jax.jit(augment.build(SHARDED_POLICY, 10))
  key = jax.random.key(4)
  ref = aug(key, x, t)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  shard = NamedSharding(mesh, PartitionSpec("data"))
  got = aug(key, jax.device_put(x, shard), jax.device_put(t, shard))
  np.testing.assert_allclose(got[0], ref[0], atol=1e-6)
  np.testing.assert_allclose(got[1], ref[1], atol=1e-6)


def test_measure_cost_reports_ms_per_batch():
  r = augment.measure_cost("affine+cutout", batch_size=16, steps=2, repeats=1)
  assert r["ms_per_batch"] > 0 and r["compile_s"] >= 0


def test_training_with_augmentation_learns(data_dir, tmp_path):
  # Resume == uninterrupted holds as for dropout: the augmentation key is split from
  # the step key fold_in(seed, step) (test_train.test_resume_matches_uninterrupted_run).
  from test_train import run, tiny
  res = run(tiny(data_dir, augment=POLICY, train_limit=1024, test_limit=500,
                 eval_batch_size=250), tmp_path)
  assert res["finished"] and res["test_accuracy"] > 0.25, res   # chance is 0.10
