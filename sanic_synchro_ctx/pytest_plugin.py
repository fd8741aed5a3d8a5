"""A pytest plugin for apps that use the shared context: a fresh namespace per test.

Installed with the package (a ``pytest11`` entry point), it only adds an option and
fixtures; nothing happens unless a test asks for them:

``synchro_url``
    The backend the tests use: ``--synchro-url`` on the command line, else the
    ``SANIC_SYNCHRO_URL`` environment variable, else ``memory://``.
``synchro_interface``
    A new interface on that backend, in a namespace of its own (a unique prefix), cleared
    after the test: ``Synchro(app, interface=synchro_interface)``. Tests can then run
    against a real Redis, say, without seeing each other's keys or leaving any behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from .config import interface_from_url
from .errors import SynchroError
from .interfaces.base import BaseSynchroInterface

__all__ = ["synchro_interface", "synchro_url"]

#: What the tests use when neither the option nor the environment names a backend.
TEST_DEFAULT_URL = "memory://"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sanic-synchro-ctx")
    group.addoption(
        "--synchro-url",
        default=None,
        help="backend URL for the synchro_interface fixture (default: $SANIC_SYNCHRO_URL, "
        f"else {TEST_DEFAULT_URL})",
    )


@pytest.fixture
def synchro_url(request: pytest.FixtureRequest) -> str:
    """The backend URL the synchro fixtures use."""
    chosen = request.config.getoption("--synchro-url", default=None)
    return str(chosen or os.environ.get("SANIC_SYNCHRO_URL") or TEST_DEFAULT_URL)


@pytest.fixture
def synchro_interface(synchro_url: str) -> Iterator[BaseSynchroInterface]:
    """A new interface on ``synchro_url`` in a namespace of its own, cleared afterwards."""
    interface = interface_from_url(synchro_url, prefix=f"pytest/{uuid.uuid4().hex}")
    yield interface
    # the namespace is the test's alone: clear it (a backend the test never reached, such
    # as a manager that was never started, holds nothing to clear)
    with contextlib.suppress(SynchroError):
        interface.run_blocking(interface.clear())
    interface.close()
