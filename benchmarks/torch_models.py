"""PyTorch twins of two `kmnist_jax.models` architectures, for the throughput baseline.

Same layers, same sizes, same parameter counts as the JAX models (the benchmark
asserts the counts); initialisation is PyTorch's default, which does not matter
for throughput. Inputs are NCHW float ``[B, 1, 28, 28]`` in [0, 1].

* :class:`KerasCNN` -- ``keras_cnn``: Conv32 3x3 VALID relu -> Conv64 3x3 VALID relu
  -> MaxPool 2 -> Dropout .25 -> Flatten (9216) -> Dense128 relu -> Dropout .5 ->
  Dense C (1,199,882 parameters for 10 classes).
* :class:`CNN` -- ``cnn``: per width w, [conv3x3 SAME (no bias) -> BatchNorm -> relu]
  x depth, MaxPool 2; then Dense(dense, no bias) -> BatchNorm -> relu -> Dropout ->
  Dense C (or global average pooling when ``dense=0``). BatchNorm momentum 0.1,
  eps 1e-5, as in the JAX model.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class KerasCNN(nn.Module):

  def __init__(self, num_classes: int = 10):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(12 * 12 * 64, 128), nn.ReLU(inplace=True), nn.Dropout(0.5))
    self.head = nn.Linear(128, num_classes)

  def forward(self, x):
    return self.head(self.features(x))


class CNN(nn.Module):

  def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 64),
               depth: int = 2, dense: int = 256, dropout: float = 0.3):
    super().__init__()
    layers, cin, side = [], 1, 28
    for w in widths:
      for _ in range(depth):
        layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                   nn.ReLU(inplace=True)]
        cin = w
      layers.append(nn.MaxPool2d(2))
      side //= 2
    if dense:
      layers += [nn.Flatten(), nn.Linear(side * side * cin, dense, bias=False),
                 nn.BatchNorm1d(dense), nn.ReLU(inplace=True)]
      feat = dense
    else:
      layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
      feat = cin
    layers.append(nn.Dropout(dropout))
    self.features = nn.Sequential(*layers)
    self.head = nn.Linear(feat, num_classes)

  def forward(self, x):
    return self.head(self.features(x))


MODELS = {"keras_cnn": KerasCNN, "cnn": CNN}


def create(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
  if name not in MODELS:
    raise ValueError(f"no PyTorch twin for model {name!r}; valid choices: "
                     f"{', '.join(MODELS)}")
  return MODELS[name](num_classes=num_classes, **kwargs)


def param_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)
