"""Tasks: everything that depends on what the data is (image folders and manifests, text
tables) behind one `Task` protocol (`base`): scan, prepare, collate, forward, predict,
export extras. Nothing outside this package branches on the task. `registry` maps a
space's `task:` to its Task."""

from automl.tasks.base import Task
from automl.tasks.registry import TASKS, get_task

__all__ = ["TASKS", "Task", "get_task"]
