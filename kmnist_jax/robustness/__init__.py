"""Corruption robustness and adversarial attacks.

- ``corruptions``: the 15 MNIST-C corruptions + 5 extras at 5 severities (numpy).
- ``sets``: verified corrupted test sets on disk (.npz + manifest), e.g. KMNIST-C.
- ``tfds_builders``: TFDS builders exposing those sets (needs tensorflow-datasets).
- ``mce``: errors per corruption / severity, CE, mCE, relative mCE.
- ``attacks``: FGSM and PGD-Linf.
"""
