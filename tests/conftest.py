"""Shared fixtures: a hermetic corpus cache, a synthetic text corpus, a local Ray cluster.
Helpers that tests import live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import owned_cluster, write_text_corpus


@pytest.fixture(scope="session", autouse=True)
def _hermetic_cache(tmp_path_factory):
    """Prepared corpora and tokenizers go to a per-session folder, never the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DUALSWEEP_CACHE", str(tmp_path_factory.mktemp("dualsweep-cache")))
    yield
    mp.undo()


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    return write_text_corpus(tmp_path / "corpus")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs) shared by a module's sweep tests that are not about
    starting Ray: a driver joins it in about a second, where an embedded start takes 7-9 s
    here. Its workers inherit this session's environment (the hermetic corpus cache), and it
    stops after the module, so that its idle processes take no CPU from later tests; yields
    its address."""
    with owned_cluster(2) as cluster:
        yield cluster.address


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: skipped, saying so, on a machine without one."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu)")
        for item in gpu_tests:
            item.add_marker(skip)
