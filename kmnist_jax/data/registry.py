"""What each dataset is: classes, split sizes, citation, licence, where its files live.

Static facts only; nothing here reads a file. A dataset is known only if it is in
:data:`DATASETS`; every other name is an ``error:`` line listing the valid ones.

K49's test set is imbalanced (``balanced=False``): report balanced accuracy.

Licences and citations
----------------------
* MNIST: Y. LeCun, C. Cortes, C. J. C. Burges. No licence text in the original;
  commonly redistributed as CC BY-SA 3.0. Cite LeCun, Bottou, Bengio, Haffner,
  "Gradient-based learning applied to document recognition", Proc. IEEE 86(11), 1998.
* KMNIST and K49: CC BY-SA 4.0. "KMNIST Dataset" (created by CODH), adapted from
  "Kuzushiji Dataset" (created by NIJL and others), doi:10.20676/00000341. Cite
  T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha,
  "Deep Learning for Classical Japanese Literature", 2018, arXiv:1812.01718.
  https://github.com/rois-codh/kmnist
* Fashion-MNIST: MIT, Copyright 2017 Zalando SE. Cite H. Xiao, K. Rasul,
  R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
  Learning Algorithms", 2017, arXiv:1708.07747.
"""

from __future__ import annotations

import dataclasses
import os

from kmnist_jax.errors import unknown

DATA_DIR_ENV = "KMNIST_JAX_DATA_DIR"

IMAGE_SHAPE = (28, 28)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about one dataset."""
  name: str
  num_classes: int
  class_names: tuple[str, ...]   # ASCII
  class_glyphs: tuple[str, ...]  # what to draw (hiragana for KMNIST/K49)
  balanced: bool                 # False: report balanced accuracy
  citation: str
  license: str
  tfds_name: str | None


_KMNIST_CITATION = (
    "T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha, "
    "\"Deep Learning for Classical Japanese Literature\", 2018, arXiv:1812.01718. "
    "\"KMNIST Dataset\" (created by CODH), adapted from \"Kuzushiji Dataset\" "
    "(created by NIJL and others), doi:10.20676/00000341.")

_KMNIST_GLYPHS = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")
_KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

# K49 classes in k49_classmap.csv order. The CSV these generate
# ("index,codepoint,char" rows) is 697 bytes with md5 f7d0d0391f68bdf0fe4cf160ceb85753,
# the published size and sum, so this table is the publisher's, byte for byte.
_K49_GLYPHS = tuple("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほ"
                    "まみむめもやゆよらりるれろわゐゑをんゝ")
_K49_NAMES = (
    "a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko",
    "sa", "shi", "su", "se", "so", "ta", "chi", "tsu", "te", "to",
    "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho",
    "ma", "mi", "mu", "me", "mo", "ya", "yu", "yo",
    "ra", "ri", "ru", "re", "ro", "wa", "wi", "we", "wo", "n",
    "odoriji")  # ゝ, the hiragana iteration mark

_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_DIGITS = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist", num_classes=10, class_names=_DIGITS, class_glyphs=_DIGITS,
        balanced=True,  # approximately: 892..1135 test images per class
        citation=("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, \"Gradient-based "
                  "learning applied to document recognition\", Proc. IEEE 86(11), 1998."),
        license=("no licence text in the original distribution; commonly "
                 "redistributed as CC BY-SA 3.0"),
        tfds_name="mnist"),
    "kmnist": DatasetInfo(
        name="kmnist", num_classes=10, class_names=_KMNIST_NAMES,
        class_glyphs=_KMNIST_GLYPHS, balanced=True, citation=_KMNIST_CITATION,
        license="CC BY-SA 4.0", tfds_name="kmnist"),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", num_classes=10, class_names=_FASHION_NAMES,
        class_glyphs=_FASHION_NAMES, balanced=True,
        citation=("H. Xiao, K. Rasul, R. Vollgraf, \"Fashion-MNIST: a Novel Image "
                  "Dataset for Benchmarking Machine Learning Algorithms\", 2017, "
                  "arXiv:1708.07747."),
        license="MIT (Copyright 2017 Zalando SE)", tfds_name="fashion_mnist"),
    "k49": DatasetInfo(
        name="k49", num_classes=49, class_names=_K49_NAMES, class_glyphs=_K49_GLYPHS,
        balanced=False, citation=_KMNIST_CITATION, license="CC BY-SA 4.0",
        tfds_name=None),
}

# Examples per published split; every load of a full split has exactly this many.
NUM_EXAMPLES = {
    "mnist": {"train": 60000, "test": 10000},
    "kmnist": {"train": 60000, "test": 10000},
    "fashion_mnist": {"train": 60000, "test": 10000},
    "k49": {"train": 232365, "test": 38547},
}

# Where a person gets the files by hand: named by every missing- or bad-file error.
DOWNLOAD_HINTS = {
    "mnist": ("http://yann.lecun.com/exdb/mnist/ (mirror "
              "https://storage.googleapis.com/cvdf-datasets/mnist/)"),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (see http://codh.rois.ac.jp/kmnist/ "
               "and github.com/rois-codh/kmnist download_data.py)"),
    "k49": ("http://codh.rois.ac.jp/kmnist/dataset/k49/ (see http://codh.rois.ac.jp/kmnist/ "
            "and github.com/rois-codh/kmnist download_data.py)"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
                      "(see github.com/zalandoresearch/fashion-mnist)"),
}


def get_info(name: str) -> DatasetInfo:
  """The :class:`DatasetInfo` of ``name``; UserError listing the valid names."""
  if not isinstance(name, str) or name not in DATASETS:
    raise unknown("dataset", name, DATASETS)
  return DATASETS[name]


def default_data_dir() -> str:
  """``$KMNIST_JAX_DATA_DIR`` if set (and non-empty), else ``~/kmnist_jax_data``."""
  return os.path.expanduser(os.environ.get(DATA_DIR_ENV) or "~/kmnist_jax_data")
