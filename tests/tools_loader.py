"""Import a script of tools/ (not a package) by name: ``load_tool("import_graph")``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str):
    """The module tools/<name>.py; tools/ goes on sys.path, so the tools import each other as a
    script run from tools/ does (``import import_graph``)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)
