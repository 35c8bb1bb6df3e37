"""The shape of src/ (tools/import_graph.py, read with ``ast``; every import counts, those inside
functions too): no import cycle, no import up a layer, no hidden import, no module over 400
lines, no function over 60 lines. Then the same checks on a tiny package written for the test,
which must find what was planted."""

from __future__ import annotations

import textwrap

import pytest
from tools_loader import load_tool

graph = load_tool("import_graph")


@pytest.fixture(scope="module")
def report():
    return graph.analyse()


def test_the_package_is_read(report):
    assert "deepfake_detection" in report.modules
    assert len(report.modules) > 40
    assert report.edges, "no import found: the reader is broken"


def test_no_import_cycle(report):
    cycles = [" -> ".join(graph.short(m) for m in cycle) for cycle in report.cycles]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_import_up_a_layer(report):
    assert not report.layer_problems, "\n".join(report.layer_problems)


def test_every_module_has_a_layer(report):
    assert all(graph.layer_of(name) for name in report.modules)


def test_no_hidden_import(report):
    assert not report.hidden_imports, "\n".join(report.hidden_imports)


def test_no_forbidden_import(report):
    """config, models, data and evaluation keep MLflow (and some TensorFlow) out: FORBIDDEN."""
    assert not report.forbidden_imports, "\n".join(report.forbidden_imports)


def test_imports_inside_functions_keep_something_heavy_out(report):
    """The package's own imports are at the top of each module, except those that keep TensorFlow,
    MLflow, pandas... out of a cheap path (tools/lazy_imports.py)."""
    assert not report.needless_lazy_imports, "\n".join(report.needless_lazy_imports)


def test_no_module_over_400_lines(report):
    assert not report.long_modules, "\n".join(f"{graph.short(m)}: {n} lines" for m, n in report.long_modules)


def test_no_function_over_60_lines(report):
    assert not report.long_functions, "\n".join(
        f"{graph.short(m)}.{f} (line {line}): {n} lines" for m, f, line, n in report.long_functions
    )


# ----------------------------------------------------------------------------- negative tests
LAYERS = {"": "base", "low": "base", "a": "domain", "b": "domain", "heavy": "domain", "stage": "stages"}


def _package(tmp_path, files: dict[str, str]):
    root = tmp_path / "src" / "pkg"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return graph.analyse(tmp_path / "src", package="pkg", layers=LAYERS)


def test_a_cycle_is_found(tmp_path):
    report = _package(tmp_path, {"a.py": "from . import b\n", "b.py": "from .a import NAME\n", "stage.py": ""})
    assert report.cycles == [["pkg.a", "pkg.b", "pkg.a"]]


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    report = _package(
        tmp_path,
        {
            "a.py": "import pkg.b\n",
            "b.py": "def f():\n    from pkg import a  # hidden from import time\n    return a\n",
        },
    )
    assert report.cycles == [["pkg.a", "pkg.b", "pkg.a"]]
    assert any(e.in_function for e in report.edges if e.source == "pkg.b")


def test_a_package_without_cycles_has_none(tmp_path):
    report = _package(tmp_path, {"a.py": "from . import b\n", "b.py": "from .low import X\n", "low.py": "X = 1\n"})
    assert report.cycles == [] and report.layer_problems == []


def test_a_base_module_importing_a_stage_is_found(tmp_path):
    report = _package(tmp_path, {"low.py": "def f():\n    from .stage import run\n", "stage.py": "def run(): ...\n"})
    assert len(report.layer_problems) == 1
    assert report.layer_problems[0].startswith("low (base) imports stage (stages)")


def test_a_module_with_no_layer_is_found(tmp_path):
    report = _package(tmp_path, {"newcomer.py": ""})
    assert report.layer_problems == ["newcomer: no layer in LAYERS"]


def test_a_401_line_module_is_found(tmp_path):
    report = _package(tmp_path, {"a.py": "x = 1\n" * 401, "b.py": "x = 1\n" * 400})
    assert report.long_modules == [("pkg.a", 401)]


def test_a_61_line_function_is_found_and_its_docstring_does_not_count(tmp_path):
    body = "    x = 1\n" * 59 + "    return x\n"  # 61 lines with the def
    doc = '    """A docstring\n    of three\n    lines."""\n'
    short_with_doc = "def g():\n" + doc + "    x = 1\n" * 58 + "    return x\n"  # 60 lines without it
    report = _package(tmp_path, {"a.py": f"def f():\n{body}\n\n{short_with_doc}"})
    assert [(m, f, n) for m, f, _, n in report.long_functions] == [("pkg.a", "f", 61)]


def test_a_hidden_import_is_found(tmp_path):
    report = _package(
        tmp_path,
        {
            "a.py": "import importlib\nm = importlib.import_module(f'.{1}', __package__)\n",
            "b.py": "import importlib\nx = importlib.import_module('json')\ny = __import__('pkg.a')\n",
        },
    )
    assert [line.split(":")[0] for line in report.hidden_imports] == ["a, line 2", "b, line 3"]


def test_a_forbidden_import_is_found(tmp_path):
    root = tmp_path / "src" / "pkg"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("def f():\n    import mlflow.pyfunc\n")
    modules = graph.load_modules(tmp_path / "src", "pkg")
    assert graph.forbidden_imports(modules, package="pkg") == ["data imports mlflow.pyfunc, line 2"]


def test_the_report_exits_1_on_a_problem(tmp_path, capsys):
    _package(tmp_path, {"a.py": "from . import b\n", "b.py": "from . import a\n"})
    assert graph.main(["--src", str(tmp_path / "src"), "--package", "pkg"]) == 1
    assert "import cycles: 1\n  a -> b -> a" in capsys.readouterr().out


def test_an_import_inside_a_function_that_keeps_nothing_heavy_out_is_found(tmp_path):
    report = _package(
        tmp_path,
        {
            "low.py": "import json\n",  # light: nothing to keep out
            "a.py": "import pandas\n\ndef f():\n    from . import low\n    from . import b\n",
            "b.py": "import pandas\n",  # what a already brings
            "stage.py": "def run():\n    from . import heavy\n",  # heavy brings tensorflow: a reason
            "heavy.py": "import tensorflow\n",
        },
    )
    found = sorted(p.split(" inside")[0] for p in report.needless_lazy_imports)
    assert found == ["a:4 imports low", "a:5 imports b"]
