import os

import pytest
import torch

# Two cores: keep tests deterministic and avoid oversubscription.
torch.set_num_threads(int(os.environ.get('HYBRIDVIT_TEST_THREADS', '2')))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
