from trainhub.text.heads import RegressionTask  # noqa: F401
