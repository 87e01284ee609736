"""Every docstring example in the package runs (framework adapters excepted: they need a host)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sipgate_ai_flow

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(sipgate_ai_flow.__path__, "sipgate_ai_flow.")
    if ".adapters." not in info.name and not info.name.endswith("__main__")
)


def test_there_are_docstring_examples():
    assert len(MODULES) > 20


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
