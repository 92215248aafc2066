"""atomic_write_dir: folder outputs (a CoreML .mlpackage) replace the old folder only when
complete."""
import os

import pytest

from hybridvit.utils.atomic import atomic_write_dir


def _write_package(path, text):
    os.makedirs(os.path.join(path, 'Data'))
    with open(os.path.join(path, 'Data', 'model.txt'), 'w') as f:
        f.write(text)


def test_new_folder_then_replaced_folder(tmp_path):
    out = tmp_path / 'm.mlpackage'
    with atomic_write_dir(str(out)) as tmp:
        assert not os.path.exists(tmp) and tmp.endswith('.mlpackage')
        _write_package(tmp, 'v1')
    with atomic_write_dir(str(out)) as tmp:
        _write_package(tmp, 'v2')
    assert (out / 'Data' / 'model.txt').read_text() == 'v2'
    assert os.listdir(tmp_path) == ['m.mlpackage']  # no temporary or old folder left


def test_failure_keeps_the_old_folder_and_leaves_nothing(tmp_path):
    out = tmp_path / 'm.mlpackage'
    with atomic_write_dir(str(out)) as tmp:
        _write_package(tmp, 'v1')
    with pytest.raises(RuntimeError, match='converter failed'):
        with atomic_write_dir(str(out)) as tmp:
            _write_package(tmp, 'half')
            raise RuntimeError('converter failed')
    assert (out / 'Data' / 'model.txt').read_text() == 'v1'
    assert os.listdir(tmp_path) == ['m.mlpackage']


def test_writer_that_creates_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='created nothing'):
        with atomic_write_dir(str(tmp_path / 'm.mlpackage')):
            pass
    assert os.listdir(tmp_path) == []
