"""demo/image_demo.py on a folder or a glob: one picture per image, a bad file skipped and named,
the others still written, non-zero exit at the end."""
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIG = 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py'


def _demo(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, 'demo/image_demo.py', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ('a.png', 'c.jpg'):
        assert cv2.imwrite(str(folder / name), (rng.random((48, 64, 3)) * 255).astype(np.uint8))
    (folder / 'b.jpg').write_bytes(b'not an image at all' * 10)  # sorted between the good ones
    (folder / 'notes.txt').write_text('not an image extension: ignored')
    return folder


def test_folder_writes_good_images_names_the_bad_one_and_exits_2(image_folder, tmp_path):
    out = tmp_path / 'out'
    proc = _demo(str(image_folder), SEG_CONFIG, '--out-dir', str(out))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    bad = str(image_folder / 'b.jpg')
    skipped = [line for line in proc.stderr.splitlines() if 'skipped' in line]
    assert len(skipped) == 1 and bad in skipped[0] and 'cannot decode image' in skipped[0]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith('image_demo.py: error: 1 of 3 images failed') and bad in last
    assert sorted(os.listdir(out)) == ['a_seg.png', 'c_seg.png']
    for name in ('a_seg.png', 'c_seg.png'):
        vis = cv2.imread(str(out / name))
        assert vis.shape[0] >= 48 and vis.shape[1] > 64  # the picture plus its legend
    assert '3/3' in proc.stdout  # the progress bar reached the end


def test_glob_selects_matching_files_and_exits_0(image_folder, tmp_path):
    out = tmp_path / 'out'
    proc = _demo(str(image_folder / '*.png'), SEG_CONFIG, '--out-dir', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.listdir(out) == ['a_seg.png']
    assert 'saved 1 seg pictures' in proc.stdout


def test_nothing_to_read_is_one_line(tmp_path):
    proc = _demo(str(tmp_path / '*.jpg'), SEG_CONFIG)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and 'no files match' in lines[0]
