"""What ``torch.compile``'s autograd partitioner keeps for the backward pass of dropout.

Chapter 14 states that by default a compiled training step **saves** the dropout mask instead
of regenerating it. This script checks that on the installed torch, without a GPU and without
a C++ compiler: it runs AOTAutograd (the layer of ``torch.compile`` that splits the joint
forward-backward graph) with the min-cut partitioner that Inductor uses
(``min_cut_rematerialization_partition``) on ``f(x) = sin(dropout(x, 0.5))``, once on ATen's
``native_dropout`` and once after Inductor's decompositions (dropout becomes
``rand_like(x) > p``), and records which tensors the forward graph hands to the backward graph.
It also records the two settings behind the result: ``torch._functorch.config
.functionalize_rng_ops`` and the partitioner's list of random ops, which it never recomputes.

Run: ``python -m benchmarks.compile_mask`` (about 10 s on a CPU); writes
``benchmarks/results/compile_mask.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from functorch.compile import aot_function, make_boxed_func, min_cut_rematerialization_partition
from torch._functorch import config as functorch_config
from torch._functorch.partitioners import get_default_op_list

RESULT = Path(__file__).parent / "results" / "compile_mask.json"


def _saved_for_backward(decompositions: dict | None) -> list[dict[str, Any]]:
    graphs: dict[str, torch.fx.GraphModule] = {}

    def keep(name: str):
        def compiler(gm: torch.fx.GraphModule, example_inputs: list) -> Any:
            graphs[name] = gm
            return make_boxed_func(gm)

        return compiler

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(x, 0.5, training=True).sin()

    compiled = aot_function(
        f,
        fw_compiler=keep("forward"),
        bw_compiler=keep("backward"),
        partition_fn=min_cut_rematerialization_partition,
        decompositions=decompositions,
    )
    x = torch.randn(1000, requires_grad=True)
    compiled(x).sum().backward()
    output = next(n for n in graphs["forward"].graph.nodes if n.op == "output")
    saved = output.args[0][1:]  # the first output is f(x); the rest go to the backward graph
    return [
        {
            "name": str(node),
            "dtype": str(node.meta["val"].dtype).removeprefix("torch."),
            "numel": int(node.meta["val"].numel()),
            "is_input": node.op == "placeholder",
        }
        for node in saved
    ]


def main() -> None:
    from torch._inductor.decomposition import select_decomp_table

    start = time.perf_counter()
    result = {
        "command": "python -m benchmarks.compile_mask",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "function": "sin(dropout(x, 0.5)), x of 1000 float32 elements, requires_grad",
        "partitioner": "min_cut_rematerialization_partition (Inductor's default)",
        "functionalize_rng_ops": bool(functorch_config.functionalize_rng_ops),
        "random_ops_never_recomputed": sorted(str(op) for op in get_default_op_list().random_ops),
        "saved_aten": _saved_for_backward(None),
        "saved_inductor_decompositions": _saved_for_backward(select_decomp_table()),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print(f"\nwrote {RESULT}")


if __name__ == "__main__":
    main()
