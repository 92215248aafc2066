"""Python inference API shared by the demo and users."""
from .inference import inference_model, init_model, task_of

__all__ = ['inference_model', 'init_model', 'task_of']
