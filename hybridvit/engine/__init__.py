"""Engine extensions: hooks for reproducible resume and diverged-loss detection."""
from .hooks import NonFiniteLossError, NonFiniteLossHook, ReproducibleResumeHook

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'ReproducibleResumeHook']
