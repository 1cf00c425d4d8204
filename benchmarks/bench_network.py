"""One training step of the chapter-5 network: the from-scratch NumPy network vs PyTorch on CPU.

The network is the paper's recipe at digits scale (book chapter 5): 64 inputs, dropout 0.2 on
the inputs, two hidden ReLU layers of 512 units with dropout 0.5, 10 outputs; softmax
cross-entropy; SGD with momentum 0.95 and max-norm 3. Both implementations use float32, one
thread (``torch.set_num_threads(1)``; BLAS pinned with threadpoolctl, and OMP/OPENBLAS/MKL
thread variables set before NumPy is imported when this module is the first to import it)
and the same shapes. A step is forward, backward and update; the table also gives the
time of one epoch of :func:`dropoutlib.train.fit` on the digits training split (1347 images,
batch 32), which includes evaluating both splits before and after the epoch (median of 5).

Run: ``python -m benchmarks network``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks._timing import compare, pin_threads, print_table, write_results  # noqa: E402
from dropoutlib.data import load_digits  # noqa: E402
from dropoutlib.numpy.nn import Dropout, Linear, ReLU, Sequential  # noqa: E402
from dropoutlib.numpy.optim import SGD  # noqa: E402
from dropoutlib.train import fit, train_step  # noqa: E402

HIDDEN = 512
BATCH_SIZES = (32, 128)
LR, MOMENTUM, MAX_NORM = 0.05, 0.95, 3.0


def numpy_network(rng: np.random.Generator) -> Sequential:
    return Sequential(
        Dropout(0.2, rng=rng),
        Linear(64, HIDDEN, rng=rng),
        ReLU(),
        Dropout(0.5, rng=rng),
        Linear(HIDDEN, HIDDEN, rng=rng),
        ReLU(),
        Dropout(0.5, rng=rng),
        Linear(HIDDEN, 10, rng=rng),
    )


def torch_network(model: Sequential):
    """The same network in PyTorch, with the NumPy network's initial weights."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Dropout(0.2),
        torch.nn.Linear(64, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(HIDDEN, 10),
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            net.get_parameter(name).copy_(torch.from_numpy(p.data))
    return net


def torch_step(net, opt, x, y) -> None:
    import torch

    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.renorm(m.weight, 2, 0, MAX_NORM))


def main() -> None:
    import torch

    pin_threads(1)
    torch.manual_seed(0)
    data = load_digits()
    rows = []
    with threadpool_limits(1):
        for batch in BATCH_SIZES:
            rng = np.random.default_rng(0)
            model = numpy_network(rng)
            opt = SGD(model.parameters(), LR, momentum=MOMENTUM, max_norm=MAX_NORM)
            net = torch_network(model)
            opt_t = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
            x, y = data.x_train[:batch], data.y_train[:batch]
            xt, yt = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
            times = compare(
                {
                    "numpy": lambda m=model, o=opt, x=x, y=y: train_step(m, x, y, o),
                    "torch": lambda n=net, o=opt_t, x=xt, y=yt: torch_step(n, o, x, y),
                },
                repeats=200,
                warmup=20,
            )
            rows.append(
                {
                    "what": f"train step, batch {batch}",
                    "numpy_us": times["numpy"] * 1e6,
                    "torch_us": times["torch"] * 1e6,
                    "numpy/torch": times["numpy"] / times["torch"],
                }
            )
        rng = np.random.default_rng(0)
        model = numpy_network(rng)
        opt = SGD(model.parameters(), LR, momentum=MOMENTUM, max_norm=MAX_NORM)
        epoch_times = []
        for _ in range(5):
            start = time.perf_counter()
            fit(model, data, opt, epochs=1, batch_size=32, rng=rng)
            epoch_times.append(time.perf_counter() - start)
        rows.append(
            {
                "what": "digits epoch (fit, batch 32, incl. eval)",
                "numpy_us": statistics.median(epoch_times) * 1e6,
            }
        )
    print_table(rows, ["what", "numpy_us", "torch_us", "numpy/torch"])
    write_results("network", rows, hidden=HIDDEN, lr=LR, momentum=MOMENTUM, max_norm=MAX_NORM)


if __name__ == "__main__":
    main()
