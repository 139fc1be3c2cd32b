"""Fixtures for the TUI tests: a ``FakeSource`` over the sample tasks and
workers, and the app built on it with a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.tui.helpers import T0, sample_tasks, sample_workers
from tui.app import BanyanApp
from tui.fake import FakeSource


@pytest.fixture
def fake() -> FakeSource:
    return FakeSource(sample_tasks(), sample_workers(), clock=lambda: float(T0))


@pytest.fixture
def make_app(fake: FakeSource) -> Callable[..., BanyanApp]:
    def build(**options: Any) -> BanyanApp:
        options.setdefault("clock", lambda: float(T0))
        options.setdefault("clock_format", lambda _: "12:00:00")
        return BanyanApp(options.pop("source", fake), **options)

    return build
