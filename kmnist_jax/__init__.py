"""kmnist-jax: JAX/Flax robustness studies on MNIST and Kuzushiji-MNIST."""

__version__ = "0.1.0"
