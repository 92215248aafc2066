"""Command-line error handling shared by the tools and the demo.

A mistake the user can fix (a missing or unreadable file, a wrong config key or value, a checkpoint
that does not fit the model) ends the program with ONE line on stderr naming the file / key /
value, and exit status 2, without a traceback. ``--debug`` shows the traceback instead.

What counts as such a mistake is deliberately narrow, so that a programming error keeps its
traceback:

* our own user-error types (:class:`UserError` and the checkpoint / training errors listed in
  :func:`_user_errors`), mmengine's ``ConfigParsingError``, and an ``OSError`` about a path
  (not found, already there, a folder where a file was expected, no permission: the message
  names it);
* the upstream errors :func:`known_upstream_error` recognises by type AND message (a ``type=``
  that is not in a registry, a config key a class does not accept, a config file that does not
  parse, an image OpenCV cannot decode, ...).

A bare ``ValueError`` / ``KeyError`` / ``TypeError`` from anywhere else is a bug: traceback.
"""
import contextlib
import os
import re
import sys
import warnings
from typing import Callable, Iterator, Optional

from .errors import UserError

__all__ = ['UserError', 'USER_ERRORS', 'run_cli', 'one_line', 'known_upstream_error',
           'user_error_message', 'is_own_bug', 'UPSTREAM_NOISE', 'trust_checkpoint_hint',
           'checkpoint_or_none']


def _user_errors():
    from mmengine.config.utils import ConfigParsingError

    from hybridvit.compat import CheckpointReadError, UnsafeCheckpointError
    from hybridvit.engine.hooks import NonFiniteLossError
    from hybridvit.models.utils.checkpoint import CheckpointMismatchError
    return (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError, ConfigParsingError, CheckpointMismatchError, CheckpointReadError,
            UnsafeCheckpointError, NonFiniteLossError)


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
# mmengine.registry.build_from_cfg: KeyError(f'{type} is not in the {scope}::{name} registry. ...')
_NOT_IN_REGISTRY = re.compile(r'^(?P<type>.+?) is not in the (?P<registry>\S+) registry\.')
# what Python says when a class is called with keyword arguments its __init__ does not take
_BAD_ARGUMENTS = re.compile(r'unexpected keyword argument|missing \d+ required '
                            r'(positional|keyword-only) arguments?')
# mmengine functions that call ``cls(**cfg)`` for a config dict
_CONFIG_BUILDERS = ('build_from_cfg', 'get_instance')


def _innermost_frame(err: BaseException):
    tb = err.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame


def is_own_bug(err: BaseException) -> bool:
    """True for an exception other than :class:`UserError` / ``OSError`` raised by hybridvit's
    own code.

    For code that reads a user's data with upstream readers (mmdet, mmseg, pycocotools, json
    report a malformed annotation file with ``ValueError`` / ``KeyError`` / ``AssertionError``)
    and turns their errors into one line: our own datasets raise :class:`UserError` for bad
    data, so anything else raised inside ``hybridvit/`` is a programming error and must keep
    its traceback.
    """
    if isinstance(err, (UserError, OSError)):
        return False
    frame = _innermost_frame(err)
    if frame is None:
        return False
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../hybridvit
    return os.path.abspath(frame.f_code.co_filename).startswith(own + os.sep)


def _raised_by_config_builder(err: BaseException) -> bool:
    """True when ``err`` was raised by the ``cls(**cfg)`` call of mmengine's registry itself
    (the arguments do not fit the signature), not from inside the class's ``__init__``."""
    frame = _innermost_frame(err)
    return (frame is not None and frame.f_code.co_name in _CONFIG_BUILDERS
            and 'mmengine' in frame.f_code.co_filename.replace('\\', '/'))


def _config_error(err: BaseException, text: str) -> Optional[str]:
    """Mistakes in a config file (or in ``--cfg-options``) that mmengine reports with a generic
    exception type."""
    match = _NOT_IN_REGISTRY.match(text)
    if isinstance(err, KeyError) and match:
        return (f"config: type={match.group('type')!r} is not in the "
                f"{match.group('registry')} registry (misspelt, another library's scope, or "
                'its module is missing from custom_imports)')
    if isinstance(err, TypeError) and _BAD_ARGUMENTS.search(text) \
            and _raised_by_config_builder(err):
        return (f'config: {text} (a key of that type= dict is misspelt or not accepted; '
                'check the config and --cfg-options)')
    if isinstance(err, TypeError) and 'in child config cannot inherit from base' in text:
        return f'config: {text}'
    if isinstance(err, KeyError) and (text.startswith('Duplicate key is not allowed among bases')
                                      or re.match(r'Index \d+ exceeds the length of list', text)):
        return f'config: {text}'
    if isinstance(err, SyntaxError) and 'syntax errors in config file' in text:
        return text
    cause = err.__cause__
    if isinstance(err, ImportError) and text.startswith('Failed to import custom modules') \
            and isinstance(cause, ModuleNotFoundError):
        return (f'config: custom_imports: {one_line(cause)} (misspelt, or the package is not '
                'installed / not on PYTHONPATH)')
    return None


def known_upstream_error(err: BaseException) -> Optional[str]:
    """One-line message for upstream errors that are really bad user input, else ``None``.

    * a config mistake mmengine reports as ``KeyError`` / ``TypeError`` / ``SyntaxError`` /
      ``ImportError``: a ``type=`` that is in no registry, a key the built class does not accept
      (only when raised by the registry's own ``cls(**cfg)`` call, not from inside
      ``__init__``), a dict merged onto a non-dict, duplicate keys among ``_base_`` files, a
      config that does not parse, a ``custom_imports`` module that does not exist;
    * mmcv's ``LoadImageFromFile`` raises ``AssertionError('failed to load image: PATH')`` for a
      file OpenCV cannot decode (corrupt, truncated - OpenCV 5 rejects truncated JPEGs - or
      not an image);
    * torch's cross-entropy raises ``IndexError('Target N is out of bounds.')`` for a
      segmentation label value >= ``num_classes`` (other than the ignore index); the label
      file is not known at that point, ``tools/misc/check_dataset.py`` lists them;
    * a checkpoint URL that cannot be downloaded (``urllib.error.URLError``).
    """
    text = one_line(err)
    message = _config_error(err, text)
    if message is not None:
        return message
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


def user_error_message(err: BaseException) -> Optional[str]:
    """The one line to print for a user mistake, or ``None`` for anything else (a bug: the
    caller re-raises it so that its traceback shows)."""
    if isinstance(err, _user_errors()):
        return one_line(err)
    return known_upstream_error(err)


# Deprecation chatter that mmseg 1.2 / mmengine 0.10 print on every run (Python warnings go to
# stderr, where the tools keep only what the user must act on; ``--debug`` shows them).
UPSTREAM_NOISE = (
    'pkg_resources is deprecated',
    '``build_loss`` would be deprecated soon',
    'Default ``avg_non_ignore`` is False',
    'The draw is False, it means that the hook for visualization will not take effect',
    '`reduce_zero_label` will be deprecated',
)


@contextlib.contextmanager
def trust_checkpoint_hint(option: str = '--trust-checkpoint {filename}') -> Iterator[None]:
    """Inside the block, a checkpoint refused by :func:`hybridvit.compat.safe_torch_load` says
    how to trust it with the tool's own command-line option.

    The library's message suggests :func:`hybridvit.compat.trust_checkpoint` (library code does
    not know the options of the tool that calls it); a tool that offers ``--trust-checkpoint``
    wraps its loading in this block so that the one-line error names the option instead.

    Args:
        option: the option as the user types it; ``{filename}`` is replaced by the refused file.
    """
    from hybridvit.compat import UnsafeCheckpointError
    try:
        yield
    except UnsafeCheckpointError as err:
        hint = 'pass ' + option.format(filename=err.filename)
        raise UnsafeCheckpointError(err.filename, err.detail, hint=hint) from err


def checkpoint_or_none(value: str, hint: str = 'use "none" for random weights'
                       ) -> Optional[str]:
    """A tool's checkpoint argument: ``None`` for ``'none'`` (random weights, any case), else
    the path, which must be a file (:class:`UserError` naming it and ``hint`` otherwise)."""
    if value.lower() == 'none':
        return None
    if not os.path.isfile(value):
        raise UserError(f'checkpoint not found: {value} ({hint})')
    return value


def run_cli(main: Callable[[], object], prog: str) -> None:
    """Run ``main()``; turn user errors into one line + exit status 2 (``--debug``: traceback).

    Anything :func:`user_error_message` does not recognise propagates with its traceback (exit
    status 1).
    """
    debug = '--debug' in sys.argv
    if not debug:
        for message in UPSTREAM_NOISE:
            warnings.filterwarnings('ignore', message=re.escape(message))
    try:
        _user_errors()  # import the error types first: a broken install is not a user error
        main()
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - classified below
        if debug:
            raise
        message = user_error_message(err)
        if message is None:
            raise
        print(f'{prog}: error: {message}', file=sys.stderr)
        sys.exit(2)
