import os
import sys

import pytest
import torch
from mmengine.registry import DefaultScope

# Two cores: keep tests deterministic and avoid oversubscription.
torch.set_num_threads(int(os.environ.get('HYBRIDVIT_TEST_THREADS', '2')))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Each test starts without an mmengine default scope and leaves none behind.

    ``init_default_scope('mmseg')`` or a Runner in one test would otherwise decide how registry
    names resolve in every later test (mmengine keeps the latest scope process-wide).
    """
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(autouse=True)
def _tools_use_this_interpreter(monkeypatch):
    """Shell launchers (tools/dist_*.sh) start the same Python that runs the tests."""
    monkeypatch.setenv('PYTHON', sys.executable)
