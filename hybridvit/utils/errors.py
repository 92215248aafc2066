"""The user-error type of hybridvit: the one exception family the tools print as one line.

A :class:`UserError` means "the input is wrong and the message says what to change": a file that
is missing or unreadable, a config key or value outside what is accepted, a checkpoint that does
not fit. Library code raises it (or a subclass) where the mistake is detected; the command-line
wrapper :func:`hybridvit.utils.cli.run_cli` prints it as ONE line and exits with status 2.
Everything else (programming errors) keeps its traceback.

``UserError`` subclasses :class:`ValueError`, so callers that catch ``ValueError`` around our
library functions keep working.
"""

__all__ = ['UserError']


class UserError(ValueError):
    """An error in the user's input; the message names the file / key / value and what was
    expected."""
