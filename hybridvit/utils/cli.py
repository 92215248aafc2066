"""Command-line error handling shared by the tools and the demo.

A mistake the user can fix (a missing or unreadable file, a wrong config key or value, a checkpoint
that does not fit the model) ends the program with ONE line on stderr naming the file / key /
value, and exit status 2, without a traceback. ``--debug`` shows the traceback instead.
"""
import sys
from typing import Callable

__all__ = ['UserError', 'USER_ERRORS', 'run_cli', 'one_line']


class UserError(Exception):
    """An error in the user's input: message says what is wrong and what was expected."""


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
    return ' '.join(part.strip() for part in text.splitlines() if part.strip())


def run_cli(main: Callable[[], object], prog: str) -> None:
    """Run ``main()``; turn user errors into one line + exit status 2 (``--debug``: traceback)."""
    debug = '--debug' in sys.argv
    try:
        errors = _user_errors()
        main()
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - classified below
        if debug or not isinstance(err, errors):
            raise
        print(f'{prog}: error: {one_line(err)}', file=sys.stderr)
        sys.exit(2)
