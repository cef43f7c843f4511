"""The package layout (docs/reference.md, "Code map"): imports go one way, CLIs -> report ->
runs -> config -> training -> (evaluation, nn, data) -> base, with no cycle between modules or
packages; no function over 60 lines; a run folder's file names spelled in runs/folder.py only,
its result columns' names in runs/schema.py only (their former names in runs/legacy.py). Read
from the source (``ast``); only the schema and its former names are imported (the names to look
for)."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segact.runs import legacy, schema

SRC = Path(__file__).resolve().parents[1] / "src" / "segact"
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"train", "predict"}),  # the CLIs
    frozenset({"report"}),
    frozenset({"runs"}),
    frozenset({"config"}),  # the schemas: they import each layer's Enums
    frozenset({"training"}),
    frozenset({"evaluation", "nn", "data"}),
    frozenset({"choices", "errors", "io", "schema", "legacy", "hydra_private"}),  # the base
)
"""Top to bottom: a unit (top-level module or package) imports only units of lower layers, or
of its own layer where that makes no cycle."""
LEAVES: dict[str, str] = {"segact.runs.schema": "schema", "segact.runs.legacy": "legacy"}
"""Modules of a package that belong to a lower layer than it (their own unit): the result
columns' names, which every layer that writes or reads a column spells, importing nothing, and
their former names, which every layer that reads an old file renames."""
RUN_FOLDER_NAMES = {"folds.csv", "epochs.csv", "thresholds.csv", "summary.json", "splits.json",
                    "sweep_folds.csv"}  # fmt: skip
PLAIN_WORDS = frozenset({schema.TP, schema.FP, schema.FN, schema.TN, schema.DICE, schema.LR,
                         schema.N_IMAGES})  # fmt: skip
"""Column names that are also ordinary words of segact's code, free to spell: the confusion
counts and Dice of ``segact.threshold_sweep``'s public table, and settings' names
(``trainer.lr``, ``dataset.n_images``)."""
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The segact modules ``name`` imports, at the top, in functions or for type checking."""
    package = name if name in _packages() else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("segact")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("segact"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in _modules() else base)
    return found - {name}


@functools.cache
def _packages() -> frozenset[str]:
    return frozenset(_module_name(p.parent / "__init__.py") for p in SRC.rglob("__init__.py"))


def _unit(module: str) -> str | None:
    """``segact.runs.folder`` -> ``runs``; the package root (lazy re-exports) -> None."""
    if module in LEAVES:
        return LEAVES[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, tree) for name, tree in _modules().items() if name != "segact"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (as the nodes along it), or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_every_unit_has_a_layer_and_every_package_says_what_it_owns():
    units = {_unit(name) for name in _modules()} - {None}
    assert units <= set().union(*LAYERS), units - set().union(*LAYERS)
    for package in _packages() - {"segact"}:
        docstring = ast.get_docstring(_modules()[package])
        assert docstring and len(docstring.splitlines()) <= 2, package


def test_no_import_cycle_between_modules():
    assert _cycle(_graph()) is None


def test_packages_import_only_downward_and_without_cycles():
    units: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        for target in imported:
            source, destination = _unit(module), _unit(target)
            if source and destination and source != destination:
                units.setdefault(source, set()).add(destination)
                assert _layer(destination) >= _layer(source), f"{module} imports {target}"
    assert _cycle(units) is None


BELOW_THE_RUNNER = frozenset({"training", "evaluation", "nn", "data"})
"""Units that get typed settings from the runner (``segact.config.run_settings``), never a
config object."""


SCHEMA_SENTINELS = frozenset({"MISSING"})
"""What a schema dataclass below the runner may take from omegaconf: the "no default" marker of
structured configs (a loss's or dataset format's schema sits with its implementation)."""


def _omegaconf_names(tree: ast.Module) -> set[str]:
    """What a module takes from omegaconf (at the top, in functions or for type checking)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "omegaconf"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("omegaconf"):
            found |= {a.name for a in node.names}
    return found


def test_nothing_below_the_runner_imports_omegaconf():
    """No DictConfig below segact.runs: the runner turns the composed config into typed settings
    once and passes those down (``_target_`` objects are instantiated from plain dicts)."""
    importing = sorted(
        name
        for name, tree in _modules().items()
        if _unit(name) in BELOW_THE_RUNNER and _omegaconf_names(tree) - SCHEMA_SENTINELS
    )
    assert not importing, f"these modules import omegaconf: {importing}"


def _functions() -> list[tuple[str, str, int]]:
    return [
        (name, node.name, node.end_lineno - node.lineno + 1)
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_no_function_over_60_lines():
    long = [(m, f, n) for m, f, n in _functions() if n > MAX_FUNCTION_LINES]
    assert not long


def test_run_folder_file_names_are_spelled_in_one_module():
    spelled = {
        name
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in RUN_FOLDER_NAMES
    }
    assert spelled == {"segact.runs.folder"}


def _result_columns() -> frozenset[str]:
    """The result columns whose names only runs/schema.py spells (and runs/legacy.py, their
    former names): every metric, count, flag, timing and training number of the three files
    (identities and settings are config words), and their former names."""
    kinds = {schema.Kind.METRIC, schema.Kind.COUNT, schema.Kind.FLAG, schema.Kind.TIMING,
             schema.Kind.TRAINING}  # fmt: skip
    names = {c.name for table in schema.TABLES for c in table if c.kind in kinds}
    return frozenset(names | set(legacy.LEGACY_NAMES)) - PLAIN_WORDS


def test_result_columns_are_spelled_in_the_schema_only():
    columns = _result_columns()
    spelled = {
        (name, node.value)
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in columns
        if name not in (schema.__name__, legacy.__name__)
    }
    assert not spelled, f"spell these by their segact.runs.schema constant: {sorted(spelled)}"
    assert {"best_dice", "nll", "epoch_selected", "mean_dice", "val_nll"} <= columns


def test_the_schema_declares_each_name_once_and_alike_in_every_file():
    for table in schema.TABLES:
        names = table.names()
        assert len(names) == len(set(names))
    for column in (c for table in schema.TABLES for c in table):
        known = schema.COLUMNS[column.name]
        assert (column.dtype, column.range) == (known.dtype, known.range), column.name
        assert (column.range is None) == (column.dtype in (schema.Dtype.TEXT, schema.Dtype.FLAG))
        assert column.direction is None or column.kind is schema.Kind.METRIC, column.name
    assert set(schema.SELECTED_METRICS) | set(schema.PAPER_METRICS) <= set(schema.FOLDS.names())
    assert all(schema.read_as(new) for new in legacy.LEGACY_NAMES.values())


def test_the_code_map_lists_every_module_once():
    """docs/reference.md's code map: a row per module (packages' __init__ aside), no other."""
    reference = (SRC.parents[1] / "docs" / "reference.md").read_text()
    rows = [line.split("`")[1] for line in reference.splitlines() if line.startswith("| `")]
    modules = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")]
    listed = {m for m in modules if m == "__init__.py" or not m.endswith("__init__.py")}
    assert len(rows) == len(set(rows)) and set(rows) == listed, set(rows) ^ listed


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [({"a": {"b"}, "b": {"c"}, "c": set()}, False), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True)],
)
def test_the_cycle_check_finds_cycles(graph, cyclic):
    assert (_cycle(graph) is not None) is cyclic


def test_the_public_api_is_at_the_package_top():
    import numpy as np

    import segact
    from segact.nn.activations import arctan

    logits = torch.linspace(-3, 3, 7)
    assert torch.equal(segact.get_activation("arctan")(logits), arctan(logits))
    table = segact.threshold_sweep(np.array([0.2, 0.9]), np.array([0, 1]), [0.5])
    assert table[["tp", "fp", "fn", "tn"]].iloc[0].tolist() == [1, 0, 0, 1]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = segact.nope


@pytest.mark.slow
def test_import_segact_imports_nothing_heavy():
    code = "import sys, segact; print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
