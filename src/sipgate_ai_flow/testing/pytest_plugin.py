"""pytest plugin (registered through the ``pytest11`` entry point): the ``aiflow_call`` fixture.

Example::

    async def test_greeting(aiflow_call):
        async with aiflow_call(assistant) as call:
            assert "Welcome" in call.spoken[0]
"""

from __future__ import annotations

from typing import Any

import pytest

from .driver import simulate_call


@pytest.fixture
def aiflow_call() -> Any:
    """``simulate_call``, ready to use: ``async with aiflow_call(app_or_url) as call:``."""
    return simulate_call
