"""Command-line error handling shared by the tools and the demo.

A mistake the user can fix (a missing or unreadable file, a wrong config key or value, a checkpoint
that does not fit the model) ends the program with ONE line on stderr naming the file / key /
value, and exit status 2, without a traceback. ``--debug`` shows the traceback instead.
"""
import re
import sys
import warnings
from typing import Callable, Optional

from .errors import UserError

__all__ = ['UserError', 'USER_ERRORS', 'run_cli', 'one_line', 'known_upstream_error',
           'UPSTREAM_NOISE']


def _user_errors():
    from mmengine.config.utils import ConfigParsingError

    from hybridvit.compat import CheckpointReadError, UnsafeCheckpointError
    from hybridvit.engine.hooks import NonFiniteLossError
    from hybridvit.models.utils.checkpoint import CheckpointMismatchError
    return (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            ValueError, KeyError, ConfigParsingError, SyntaxError, CheckpointMismatchError,
            CheckpointReadError, UnsafeCheckpointError, NonFiniteLossError)


USER_ERRORS = ()


def one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    if 'Original Traceback' in text:
        # re-raised from a DataLoader worker: the message embeds the worker's traceback; its
        # last line is "ExcType: message"
        text = text.strip().splitlines()[-1].split(': ', 1)[-1]
    return ' '.join(part.strip() for part in text.splitlines() if part.strip())


_TARGET_OUT_OF_BOUNDS = re.compile(r'Target (-?\d+) is out of bounds')


def known_upstream_error(err: BaseException) -> Optional[str]:
    """One-line message for upstream errors that are really bad user data, else ``None``.

    * mmcv's ``LoadImageFromFile`` raises ``AssertionError('failed to load image: PATH')`` for a
      file OpenCV cannot decode (corrupt, truncated - OpenCV 5 rejects truncated JPEGs - or
      not an image);
    * torch's cross-entropy raises ``IndexError('Target N is out of bounds.')`` for a
      segmentation label value >= ``num_classes`` (other than the ignore index); the label
      file is not known at that point, ``tools/misc/check_dataset.py`` lists them.
    """
    text = one_line(err)
    if isinstance(err, AssertionError) and text.startswith('failed to load image:'):
        return (f'{text} (corrupt, truncated or not an image file; expected a readable '
                'JPEG/PNG; tools/misc/check_dataset.py CONFIG lists every unreadable file)')
    import urllib.error
    if isinstance(err, urllib.error.URLError):
        return (f'cannot download {getattr(err, "filename", None) or "a checkpoint"}: {text}; '
                'without internet, download it elsewhere and set the config\'s '
                'init_cfg.checkpoint to the local file (or init_cfg=None)')
    match = _TARGET_OUT_OF_BOUNDS.search(text)
    if isinstance(err, IndexError) and match:
        return (f'a training label holds class id {match.group(1)}, outside the model\'s '
                'classes (expected 0..num_classes-1 or the ignore index 255, after '
                'reduce_zero_label); tools/misc/check_dataset.py CONFIG names the label files')
    return None


# Deprecation chatter that mmseg 1.2 / mmengine 0.10 print on every run (Python warnings go to
# stderr, where the tools keep only what the user must act on; ``--debug`` shows them).
UPSTREAM_NOISE = (
    'pkg_resources is deprecated',
    '``build_loss`` would be deprecated soon',
    'Default ``avg_non_ignore`` is False',
    'The draw is False, it means that the hook for visualization will not take effect',
    '`reduce_zero_label` will be deprecated',
)


def run_cli(main: Callable[[], object], prog: str) -> None:
    """Run ``main()``; turn user errors into one line + exit status 2 (``--debug``: traceback)."""
    debug = '--debug' in sys.argv
    if not debug:
        for message in UPSTREAM_NOISE:
            warnings.filterwarnings('ignore', message=re.escape(message))
    try:
        errors = _user_errors()
        main()
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - classified below
        if debug:
            raise
        if isinstance(err, errors):
            message = one_line(err)
        else:
            message = known_upstream_error(err)
            if message is None:
                raise
        print(f'{prog}: error: {message}', file=sys.stderr)
        sys.exit(2)
