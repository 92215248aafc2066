"""Python inference API shared by the demo, the tools and users; task adapters."""
from .inference import inference_model, init_model
from .tasks import TASKS, Task, get_task

__all__ = ['inference_model', 'init_model', 'get_task', 'Task', 'TASKS']
