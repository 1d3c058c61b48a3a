from trainhub.text.heads import BaseTask  # noqa: F401
