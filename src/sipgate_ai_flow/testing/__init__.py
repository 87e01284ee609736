"""Test your assistant (or any AI Flow app) with emulated calls.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.testing import simulate_call
    >>> async def test_opening_hours():
    ...     async with simulate_call(assistant) as call:
    ...         await call.say("When are you open?")
    ...         assert "Monday to Friday" in call.spoken[-1]
    ...         await call.silence(60)               # virtual time: instant
    ...         assert call.ended                    # three re-prompts, then a hang-up
    ...         assert call.findings == []
    >>> asyncio.run(test_opening_hours())
"""

from ..emulator.lifecycle import CallStartError
from .driver import CallDriver, simulate_call

__all__ = ["CallDriver", "CallStartError", "simulate_call"]
