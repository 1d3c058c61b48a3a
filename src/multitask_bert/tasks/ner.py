from multitask_bert.tasks import NERTask  # noqa: F401
