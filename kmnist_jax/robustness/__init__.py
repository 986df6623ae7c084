"""Corruption robustness and adversarial attacks.

- ``corruptions``: the 15 MNIST-C corruptions + 5 extras at 5 severities (numpy).
- ``sets``: verified corrupted test sets on disk (.npz + manifest), e.g. KMNIST-C;
  ``Suite``: the first N clean images and their corrupted sets, built once, verified.
- ``tfds_builders``: TFDS builders exposing those sets (needs tensorflow-datasets).
- ``mce``: errors per corruption / severity, CE, mCE, relative mCE.
- ``attacks``: FGSM and PGD-Linf.
- ``smoothing``: randomized smoothing (Cohen et al. 2019): PREDICT, CERTIFY,
  certified L2 radii.
- ``study``: the robustness report of several checkpoints (experiments/robustness.py),
  on the corruption and attack evaluators (kmnist_jax/evaluators/).
"""
