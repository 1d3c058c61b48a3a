from trainhub.text.heads import NERTask  # noqa: F401
