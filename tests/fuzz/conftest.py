"""Reports how many requests the contract fuzzing sent, whatever the outcome."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    module = sys.modules.get("tests.fuzz.test_contract_fuzz")
    requests = getattr(module, "REQUESTS", None)
    if requests:
        terminalreporter.write_line(
            f"contract fuzzing: {sum(requests.values())} requests to {len(requests)} "
            "operations of chroma-api.yaml")
