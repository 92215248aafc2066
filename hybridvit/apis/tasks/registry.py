"""The task adapters, keyed by the configs' ``default_scope``."""
from typing import Dict, Type

from hybridvit.utils.errors import UserError

from .base import Task

__all__ = ['TASKS', 'register_task', 'get_task']

TASKS: Dict[str, Task] = {}


def register_task(cls: Type[Task]) -> Type[Task]:
    """Class decorator: register one instance of ``cls`` under its ``scope``."""
    if not cls.scope or not cls.name:
        raise ValueError(f'{cls.__name__} needs a scope and a name')
    if cls.scope in TASKS or any(t.name == cls.name for t in TASKS.values()):
        raise ValueError(f'a task for scope {cls.scope!r} / name {cls.name!r} is registered')
    TASKS[cls.scope] = cls()
    return cls


def get_task(obj) -> Task:
    """The adapter of a config, a model built by :func:`hybridvit.apis.init_model`, a scope
    (``'mmseg'``) or a task name (``'seg'``).

    Raises:
        UserError: the config's ``default_scope`` names no task.
    """
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, str):
        by_name = {t.name: t for t in TASKS.values()}
        if obj in by_name:
            return by_name[obj]
        scope = obj
        where = 'task'
    else:
        cfg = getattr(obj, 'cfg', obj)  # a model from init_model carries its config
        scope = cfg.get('default_scope')
        where = 'config default_scope'
    if scope not in TASKS:
        raise UserError(f'{where}={scope!r} is not one of {sorted(TASKS)} (tasks: '
                        f'{sorted(t.name for t in TASKS.values())})')
    return TASKS[scope]
