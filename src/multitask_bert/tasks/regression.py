from multitask_bert.tasks import RegressionTask  # noqa: F401
