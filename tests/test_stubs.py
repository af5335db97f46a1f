"""The shipped type stubs of the compiled module name exactly the functions it defines."""

from __future__ import annotations

import ast
import pathlib

import fastloss
from fastloss import _core


def test_stub_matches_the_compiled_module():
    stub = pathlib.Path(fastloss.__file__).parent / "_core.pyi"
    tree = ast.parse(stub.read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    compiled = {name for name in dir(_core) if callable(getattr(_core, name)) and not name.startswith("__")}
    assert stubbed == compiled
