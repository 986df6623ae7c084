"""The corruption suite on real KMNIST / MNIST test images: contracts, monotone severity,
determinism, agreement with the libraries MNIST-C used, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from kmnist_jax import data
from kmnist_jax.errors import UserError
from kmnist_jax.robustness import corruptions as C

N = 200


@pytest.fixture(scope="module")
def kmnist(data_dir):
  return data.load("kmnist", data_dir=data_dir, limit={"test": N}).splits["test"].images


@pytest.fixture(scope="module")
def mnist(data_dir):
  return data.load("mnist", data_dir=data_dir, limit={"test": N}).splits["test"].images


def mad(a, b) -> float:
  return float(np.abs(a.astype(np.float64) - b).mean() / 255.0)


def test_names_match_the_issue():
  assert C.MNIST_C == (
      "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
      "rotate", "brightness", "translate", "stripe", "fog", "spatter", "dotted_line",
      "zigzag", "canny_edges")
  assert C.EXTRA == ("gaussian_noise", "contrast", "pixelate", "elastic", "inverse")
  assert C.NAMES == C.MNIST_C + C.EXTRA and C.SEVERITIES == (1, 2, 3, 4, 5)
  assert all(C.MNIST_C_SEVERITY[n] == 3 for n in C.MNIST_C)
  table = C.describe()
  assert all(f"`{n}`" in table for n in C.NAMES)


@pytest.mark.parametrize("name", C.NAMES)
def test_contract_monotone_and_deterministic(name, kmnist):
  """uint8 [N,28,28] in, same out; mean |x'-x| grows with severity; same seed, same
  bytes; every severity changes the images."""
  outs = [C.apply(name, kmnist, s, seed=0) for s in C.SEVERITIES]
  for y in outs:
    assert y.shape == kmnist.shape and y.dtype == np.uint8
  d = [mad(y, kmnist) for y in outs]
  assert d[0] > 0.002, (name, d)
  assert all(b > a for a, b in zip(d, d[1:])), (name, d)
  again = C.apply(name, kmnist, 3, seed=0)
  assert np.array_equal(again, outs[2])
  params = C.params(name, 3)
  assert set(params) == set(C.SPECS[name].keys)


def test_monotone_on_mnist_too(mnist):
  for name in C.NAMES:
    d = [mad(C.apply(name, mnist, s, 1), mnist) for s in C.SEVERITIES]
    assert all(b > a for a, b in zip(d, d[1:])), (name, d)


RANDOM = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "rotate",
          "translate", "fog", "spatter", "dotted_line", "zigzag", "gaussian_noise",
          "elastic")


@pytest.mark.parametrize("name", RANDOM)
def test_seed_changes_random_corruptions(name, kmnist):
  x = kmnist[:50]
  assert not np.array_equal(C.apply(name, x, 2, seed=0), C.apply(name, x, 2, seed=1))


def test_deterministic_corruptions_ignore_the_seed(kmnist):
  for name in sorted(set(C.NAMES) - set(RANDOM)):
    assert np.array_equal(C.apply(name, kmnist[:20], 4, 0), C.apply(name, kmnist[:20], 4, 9))


def test_identity_is_a_copy(kmnist):
  y = C.apply("identity", kmnist, 3, 0)
  assert np.array_equal(y, kmnist) and y is not kmnist
  assert not np.shares_memory(y, kmnist)


# ---- Agreement with the definitions / libraries --------------------------------------

def test_affine_warp_equals_skimage(kmnist):
  from skimage import transform
  x = kmnist[:12].astype(np.float32) / 255.0
  rng = np.random.default_rng(0)
  for name, p in (("rotate", {"r": 0.6}), ("shear", {"s": 0.4}), ("scale", {"f": 0.7})):
    mats = C.affine_matrices(name, p, rng, len(x))
    got = C.warp_batch(x, mats)
    want = np.stack([transform.warp(img, inverse_map=transform.AffineTransform(matrix=m))
                     for img, m in zip(x, mats)])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_translate_is_an_exact_integer_shift(kmnist):
  x = kmnist[:30]
  t = C.params("translate", 2)["t"]
  y = C.apply("translate", x, 2, seed=3)
  signs = set()
  for img, out in zip(x, y):
    found = None
    for sy in (-1, 1):
      for sx in (-1, 1):
        pad = np.pad(img, t)
        # skimage translation [dx, dy]: output(r, c) = input(r - dy, c - dx)
        shifted = pad[t - sy * t:t - sy * t + 28, t - sx * t:t - sx * t + 28]
        if np.array_equal(shifted, out):
          found = (sy, sx)
    assert found is not None
    signs.add(found)
  assert len(signs) > 1  # the signs are random per image


def test_brightness_equals_mnist_c_hsv_route(kmnist):
  from skimage import color
  x = kmnist[:5]
  c = C.params("brightness", 3)["c"]
  want = []
  for img in x:
    hsv = color.rgb2hsv(color.gray2rgb(img / 255.0))
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    want.append(np.rint(np.clip(color.rgb2gray(color.hsv2rgb(hsv)), 0, 1) * 255))
  np.testing.assert_allclose(C.apply("brightness", x, 3, 0), np.stack(want), atol=1)


def test_pixelate_equals_pil_box(kmnist):
  from PIL import Image
  x = kmnist[:5]
  f = C.params("pixelate", 3)["f"]
  m = int(28 * f)
  want = []
  for img in x:
    im = Image.fromarray(img.astype(np.float32), mode="F")
    im = im.resize((m, m), Image.BOX).resize((28, 28), Image.BOX)
    want.append(np.clip(np.rint(np.asarray(im)), 0, 255))
  np.testing.assert_allclose(C.apply("pixelate", x, 3, 0), np.stack(want), atol=1)


def test_stripe_inverse_and_dotted_line_definitions(kmnist):
  x = kmnist[:20]
  w = C.params("stripe", 3)["width"]
  y = C.apply("stripe", x, 3, 0)
  assert np.array_equal(y[:, :, :w], 255 - x[:, :, :w])
  assert np.array_equal(y[:, :, 28 - w:], 255 - x[:, :, 28 - w:])
  assert np.array_equal(y[:, :, w:28 - w], x[:, :, w:28 - w])
  assert np.array_equal(C.apply("inverse", x, 5, 0), 255 - x)
  # Dotted: MNIST-C blanks columns 0-1, 4-5, 8-9, ...: those stay untouched.
  y = C.apply("dotted_line", x, 5, 0)
  off = (np.arange(28) // 2) % 2 == 0
  assert np.array_equal(y[:, :, off], x[:, :, off])
  assert (y[:, :, ~off] >= x[:, :, ~off]).all() and (y != x).any()


def test_motion_blur_and_noise_properties(kmnist):
  flat = np.full((4, 28, 28), 128, np.uint8)
  assert np.array_equal(C.apply("motion_blur", flat, 5, 0), flat)  # normalised kernel
  x = kmnist
  y = C.apply("shot_noise", x, 5, 0)
  assert (y[x == 0] == 0).all()  # Poisson(0) = 0
  y = C.apply("contrast", x, 4, 0)
  np.testing.assert_allclose(y.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.6)
  y = C.apply("impulse_noise", x, 3, 0)
  changed = (y != x).mean()
  amount = C.params("impulse_noise", 3)["amount"]
  assert 0.4 * amount < changed <= amount + 0.01  # some hits land on equal values
  assert set(np.unique(y[y != x])) <= {0, 255}


# ---- Bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, "3", True, None])
def test_bad_severity(severity, kmnist):
  with pytest.raises(UserError, match=r"severity .* valid choices: 1, 2, 3, 4, 5"):
    C.apply("fog", kmnist[:2], severity, 0)


def test_bad_name_and_images(kmnist):
  with pytest.raises(UserError, match=r"unknown corruption 'fogg'; valid choices: .*shot_noise"):
    C.apply("fogg", kmnist[:2], 1, 0)
  with pytest.raises(UserError, match="unknown corruption"):
    C.check("Shot_Noise", 1)
  with pytest.raises(UserError, match=r"uint8 images \[N, 28, 28\]"):
    C.apply("fog", kmnist[:2].astype(np.float32), 1, 0)
  with pytest.raises(UserError, match=r"uint8 images"):
    C.apply("fog", kmnist[0], 1, 0)
  with pytest.raises(UserError, match="seed"):
    C.apply("fog", kmnist[:2], 1, -1)
