"""The pytest plugin is registered by the package's entry point and its fixture works."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_aiflow_call_fixture_in_a_fresh_pytest_run(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from sipgate_ai_flow.demo import assistant

        @pytest.mark.asyncio
        async def test_front_desk(aiflow_call):
            async with aiflow_call(assistant) as call:
                await call.say("When are you open?")
                assert "Monday to Friday" in call.spoken[-1]
                await call.press("1")
                assert call.ended
                assert call.findings == []

        @pytest.mark.asyncio
        async def test_fails_when_it_should(aiflow_call):
            async with aiflow_call(assistant) as call:
                assert call.spoken == ["something else"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)  # the fixture is found, and assertions bite
    result.stdout.fnmatch_lines(["*assert [[]\"Welcome to * == [[]'something else'[]]"])
