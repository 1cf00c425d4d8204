"""Write the book's "Library reference" pages (``book/api/*.md``) from the library itself.

Usage: ``python tools/api_pages.py`` (rewrites ``book/api/``); ``--check`` only reports whether
the committed pages are current (the test suite runs that check).

Every public module of :mod:`dropoutlib` (a module whose dotted name has no part starting with
``_``) gets a section with Sphinx autodoc directives; every name in a module's ``__all__`` is
documented once:

* in the module that defines it (``dropoutlib.numpy.functional.dropout``), where its own
  docstring's short references and its type hints resolve;
* a package that re-exports it (``from dropoutlib.numpy import dropout``) lists it with a link,
  and the book's Sphinx extension (``_ext/offline_book.py``) resolves a reference to the
  package path (``{py:func}`dropoutlib.numpy.dropout```) to the documented object.

The pages are generated so that a new function cannot be left out of the reference: the test
``tests/test_api_pages.py`` fails until this command is re-run and its output committed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api"

# Pages of the reference: (file stem, title, introduction, modules in order).
PAGES: list[tuple[str, str, str, list[str]]] = [
    (
        "numpy",
        "NumPy dropout",
        "The from-scratch implementations: every dropout variant, forward and backward.",
        [
            "dropoutlib.numpy",
            "dropoutlib.numpy.functional",
            "dropoutlib.numpy.feature",
            "dropoutlib.numpy.alpha",
            "dropoutlib.numpy.gaussian",
            "dropoutlib.numpy.equivalence",
        ],
    ),
    (
        "numpy-nn",
        "A network from scratch",
        "The small NumPy network the chapters train, and its optimiser.",
        ["dropoutlib.numpy.nn", "dropoutlib.numpy.optim"],
    ),
    (
        "random-bits",
        "Random bits and masks",
        "PyTorch's CPU generator in NumPy, Philox, and how a mask is stored between the passes.",
        ["dropoutlib.numpy.torch_rng", "dropoutlib.numpy.philox", "dropoutlib.numpy.memory"],
    ),
    (
        "torch",
        "PyTorch drop-ins",
        "Layers and functionals that mirror `torch.nn` (bit-exact on CPU), and the variants "
        "PyTorch lacks.",
        [
            "dropoutlib.torch",
            "dropoutlib.torch.functional",
            "dropoutlib.torch.modules",
            "dropoutlib.torch.gaussian",
            "dropoutlib.torch.seeded",
            "dropoutlib.torch.mc",
        ],
    ),
    (
        "dropout-family",
        "The dropout family",
        "Structured dropout (DropConnect, DropPath, DropBlock) and recurrent and learned dropout "
        "(locked, embedding, concrete, R-Drop, early dropout), in NumPy and PyTorch, with the "
        "loader that runs torchvision's and timm's own code for the parity checks.",
        [
            "dropoutlib.numpy.structured",
            "dropoutlib.torch.structured",
            "dropoutlib.torch.references",
            "dropoutlib.numpy.recurrent",
            "dropoutlib.torch.recurrent",
        ],
    ),
    (
        "at-scale",
        "Dropout at scale",
        "Attention dropout reproduced from torch's primitives, LoRA's input dropout, "
        "FlashAttention's byte threshold, torch.compile's random stream, checkpoint replay, and "
        "dropout under tensor and data parallelism on torch.distributed.",
        [
            "dropoutlib.torch.attention",
            "dropoutlib.torch.lora",
            "dropoutlib.flash_threshold",
            "dropoutlib.torch.inductor_rng",
            "dropoutlib.torch.checkpointing",
            "dropoutlib.parallel",
        ],
    ),
    (
        "triton",
        "Triton kernels",
        "Mask-free dropout on the GPU (runs on the CPU under Triton's interpreter).",
        ["dropoutlib.triton", "dropoutlib.triton.dropout"],
    ),
    (
        "training",
        "Data, training and the experiment protocol",
        "Offline data sets, the training loop, the protocol every experiment follows, and the "
        "sweeps behind the paper's figures.",
        [
            "dropoutlib.data",
            "dropoutlib.train",
            "dropoutlib.protocol",
            "dropoutlib.experiments",
            "dropoutlib.experiments.common",
            "dropoutlib.experiments.sweeps",
            "dropoutlib.experiments.training",
        ],
    ),
    (
        "analysis",
        "Analysis and checks",
        "Statistical intervals, dropout as ridge regression, ensembles of thinned networks, and "
        "gradient checks.",
        ["dropoutlib.stats", "dropoutlib.ridge", "dropoutlib.ensemble", "dropoutlib.gradcheck"],
    ),
    (
        "book-helpers",
        "Book helpers",
        "What the chapters use to show the library's source and to draw figures.",
        ["dropoutlib.display", "dropoutlib.plotting"],
    ),
]


# A public module not listed above goes on the page of its nearest listed parent package (e.g.
# a new dropoutlib.torch.x joins "PyTorch drop-ins"), or on this page for a top-level module.
DEFAULT_PAGE = "analysis"


def page_layout() -> list[tuple[str, str, str, list[str]]]:
    """PAGES with every unlisted public module placed (see DEFAULT_PAGE)."""
    layout = [(stem, title, intro, list(mods)) for stem, title, intro, mods in PAGES]
    listed = {m for *_, mods in layout for m in mods}
    for module in public_modules():
        if module in listed or module == "dropoutlib":
            continue
        parents = [module.rsplit(".", k)[0] for k in range(1, module.count("."))]
        target = next(
            (page for parent in parents for page in layout if parent in page[3]),
            next(page for page in layout if page[0] == DEFAULT_PAGE),
        )
        target[3].append(module)
    return layout


def public_modules() -> list[str]:
    """Every importable public module of dropoutlib (``__main__`` excluded)."""
    import dropoutlib

    names = ["dropoutlib"]
    for info in pkgutil.walk_packages(dropoutlib.__path__, "dropoutlib."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        names.append(info.name)
    return sorted(names)


def exported(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        raise SystemExit(f"{module_name} has no __all__: say what is public")
    return list(names)


def owner(module_name: str, name: str, modules: list[str]) -> str:
    """The documented module that defines ``module_name.name`` (where it is documented)."""
    obj = getattr(importlib.import_module(module_name), name)
    defined_in = getattr(obj, "__module__", None)
    if defined_in in modules and (inspect.isroutine(obj) or inspect.isclass(obj)):
        return defined_in
    # Constants and aliases: the deepest documented module exporting the same object.
    holders = [
        m
        for m in modules
        if (m == module_name or m.startswith(module_name + "."))
        and name in exported(m)
        and getattr(importlib.import_module(m), name) is obj
    ]
    return max(holders, key=len)


def module_section(module_name: str, modules: list[str], level: str) -> str:
    module = importlib.import_module(module_name)
    names = exported(module_name)
    own = [n for n in names if owner(module_name, n, modules) == module_name]
    code = [
        n
        for n in own
        if inspect.isroutine(getattr(module, n)) or inspect.isclass(getattr(module, n))
    ]
    data = [n for n in own if n not in code]
    elsewhere = {n: owner(module_name, n, modules) for n in names if n not in own}
    lines = [f"{level} `{module_name}`", "", "```{eval-rst}", f".. automodule:: {module_name}"]
    lines.append(f"   :members: {', '.join(code)}" if code else "   :no-members:")
    for name in data:
        # autodata documents a constant even without a ``#:`` comment; long values are left
        # to the docstring.
        lines += ["", f".. autodata:: {module_name}.{name}"]
        if len(repr(getattr(module, name))) > 60:
            lines.append("   :no-value:")
    lines.append("```")
    if elsewhere:
        listed = ", ".join(f"{{py:obj}}`{n} <{m}.{n}>`" for n, m in sorted(elsewhere.items()))
        lines += ["", f"Exported here (`from {module_name} import ...`): {listed}."]
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    """The text of every page, keyed by file name."""
    layout = page_layout()
    documented = [m for _, _, _, mods in layout for m in mods]
    header = "<!-- Generated by tools/api_pages.py from the library; do not edit by hand. -->\n"
    pages = {}
    index = [
        header,
        "# Library reference",
        "",
        "Every public module, class and function of `dropoutlib`, generated from the "
        "docstrings. The chapters teach the ideas; this part is for looking things up. "
        "`p` is always the **drop** probability.",
        "",
        "```{eval-rst}",
        ".. automodule:: dropoutlib",
        "   :no-members:",
        "```",
        "",
        "| page | modules |",
        "|---|---|",
    ]
    for stem, title, _, mods in layout:
        index.append(f"| [{title}]({stem}.md) | {', '.join(f'`{m}`' for m in mods)} |")
    pages["index.md"] = "\n".join(index) + "\n"
    for stem, title, intro, mods in layout:
        body = [header, f"# {title}", "", intro, ""]
        for module_name in mods:
            body.append(module_section(module_name, documented, "##"))
        pages[f"{stem}.md"] = "\n".join(body)
    return pages


def main(argv: list[str]) -> int:
    pages = render()
    if "--check" in argv:
        stale = [n for n, text in pages.items() if _read(API / n) != text]
        extra = sorted(p.name for p in API.glob("*.md") if p.name not in pages)
        if stale or extra:
            print(f"book/api is out of date ({stale + extra}): run python tools/api_pages.py")
            return 1
        return 0
    API.mkdir(exist_ok=True)
    for name, text in pages.items():
        (API / name).write_text(text)
    for path in API.glob("*.md"):
        if path.name not in pages:
            path.unlink()
    print(f"wrote {len(pages)} pages to {API.relative_to(ROOT)}")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
