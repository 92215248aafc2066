"""Utilities shared by tools and the demo."""
from .cli import UserError, one_line, run_cli

__all__ = ['UserError', 'one_line', 'run_cli']
