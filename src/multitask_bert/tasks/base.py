from multitask_bert.tasks import BaseTask  # noqa: F401
