"""The task registry: `task:` in a search space → the Task that handles it.

Adding a task is one module implementing `automl.tasks.base.Task` and one line here.
"""

from __future__ import annotations

from automl.errors import AutomlError
from automl.tasks.base import Task
from automl.tasks.image import ImageClassification
from automl.tasks.text import TextClassification

TASKS: dict[str, Task] = {
    "image": ImageClassification(),
    "text": TextClassification(),
}


def get_task(name: str) -> Task:
    """The registered task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise AutomlError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None



