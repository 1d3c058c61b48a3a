"""trainhub: recommendation and multi-task models on one small PyTorch training engine.

Importing the package is light; submodules load on first use.
"""

__version__ = "0.1.0"
