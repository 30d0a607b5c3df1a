"""Shared pytest fixtures: paths to the upstream reference files and small deterministic helpers."""
from __future__ import annotations

import os
from pathlib import Path

# Triton decides at kernel definition whether to interpret, so this must precede any kernel import.
os.environ.setdefault('TRITON_INTERPRET', '1')
# Under pytest-xdist (tools/run_tests.sh runs one worker per core) each worker, and every program its tests
# start, computes on one thread, so the workers share the cores instead of oversubscribing them.
if 'PYTEST_XDIST_WORKER' in os.environ:
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_FIXTURES = Path(os.environ.get('VISIONATTN_UPSTREAM_FIXTURES',
                                        REPO_ROOT.parent / 'shared' / 'fixtures' / 'upstream'))


def load_upstream_fixture(name: str) -> dict:
    """One of the official-code reference files (``<name>.pt``), or skip with the reason."""
    path = UPSTREAM_FIXTURES / f'{name}.pt'
    if not path.is_file():
        pytest.skip(f'upstream fixture {path} is absent (set VISIONATTN_UPSTREAM_FIXTURES to the folder '
                    'that holds the official-code reference files)')
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture
def upstream_manifests() -> dict:
    """Key names and shapes of every official checkpoint (``official_state_dict_manifests.json``)."""
    import json
    path = UPSTREAM_FIXTURES / 'official_state_dict_manifests.json'
    if not path.is_file():
        pytest.skip(f'upstream manifests {path} are absent (set VISIONATTN_UPSTREAM_FIXTURES)')
    return json.loads(path.read_text())


def disable_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Make every connection attempt (and name lookup) fail at once; the returned list records them."""
    import socket
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise ConnectionRefusedError('networking is disabled in this test')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)
    return attempts


@pytest.fixture
def no_network(monkeypatch) -> list:
    """No network for the test (:func:`disable_network`)."""
    return disable_network(monkeypatch)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_logger_outlives_its_test():
    """mmengine's loggers are process-wide and keep the stream they were made with; pytest replaces
    stdout/stderr per test, so a logger from an earlier test would write into a closed capture."""
    yield
    import sys
    if 'mmengine.logging' in sys.modules:
        from mmengine.logging import MMLogger
        for logger in MMLogger._instance_dict.values():
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
        MMLogger._instance_dict.clear()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, start the end-to-end runs (``slow``) first: the workers then end together instead of
    one of them finishing a long run alone while the other idles. Every worker sorts the same way."""
    if 'PYTEST_XDIST_WORKER' in os.environ:
        items.sort(key=lambda item: item.get_closest_marker('slow') is None)
