"""`configure_logging` without a stream follows `sys.stderr` as it is when a record is emitted: a stderr
replaced after configuration (a test runner's capture, a daemon's redirect) keeps receiving JSON lines
instead of "--- Logging error ---" tracebacks on a closed stream."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from keyturn.api.logging import configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_replaced_stderr_still_gets_the_log(monkeypatch: pytest.MonkeyPatch, restore_root: None) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO")
    first.close()                                    # what a finished CliRunner does to its capture
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("keyturn.test").info("still here")
    line = json.loads(second.getvalue().splitlines()[-1])
    assert line["msg"] == "still here" and line["logger"] == "keyturn.test"


def test_an_explicit_stream_is_kept(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    logging.getLogger("keyturn.test").warning("to the given stream")
    assert "to the given stream" in stream.getvalue()
