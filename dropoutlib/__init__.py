"""dropoutlib: dropout from first principles.

The library behind the book *Dropout from Scratch*. Subpackages:

- :mod:`dropoutlib.numpy` -- from-scratch NumPy implementations (forward and backward).
- :mod:`dropoutlib.numpy.nn`, :mod:`dropoutlib.numpy.optim` -- a small from-scratch network
  (Linear, ReLU, Dropout, Sequential, softmax cross-entropy) and SGD with max-norm.
- :mod:`dropoutlib.data`, :mod:`dropoutlib.train` -- offline data sets (digits, MNIST-1D) and
  the training loop that returns a history.
- :mod:`dropoutlib.gradcheck` -- finite-difference gradient checks.
- :mod:`dropoutlib.torch` -- drop-in ``torch.nn`` dropout layers, bit-exact with PyTorch on CPU,
  plus Gaussian and seeded (mask-free) dropout; :mod:`dropoutlib.triton` -- the GPU kernels.
- :mod:`dropoutlib.ridge`, :mod:`dropoutlib.ensemble` -- dropout as ridge regression; Monte
  Carlo averaging, weight scaling and exact mask enumeration.
- :mod:`dropoutlib.experiments` -- the sweeps behind the paper's figures
  (``python -m dropoutlib.experiments NAME --out FILE``).
- :mod:`dropoutlib.flash_threshold` -- FlashAttention-2's 8-bit dropout threshold and its bias.
- :mod:`dropoutlib.stats` -- confidence intervals and tolerances for statistical checks.
- :mod:`dropoutlib.protocol` -- the experiment protocol every training experiment follows
  (validation split, early stopping, paired seeds, grid search, paired intervals, diagnostics).
- :mod:`dropoutlib.display` -- render the library's own source inside a chapter.
- :mod:`dropoutlib.plotting` -- the book's shared plotting style.

Convention used everywhere: ``p`` is the **drop** probability, as in PyTorch. The
original paper (Srivastava et al., 2014) writes ``p`` for the *keep* probability.

Importing :mod:`dropoutlib` does not import PyTorch; only :mod:`dropoutlib.torch` does.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
