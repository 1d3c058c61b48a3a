"""The upstream ``multitask_bert`` (Jenga-AI) import paths, served by :mod:`trainhub.text`.

Documented modules: ``multitask_bert.core.config``, ``multitask_bert.core.model``,
``multitask_bert.data.data_processing``, ``multitask_bert.training.trainer``,
``multitask_bert.utils.metrics``, ``multitask_bert.tasks``, ``multitask_bert.deployment.inference``;
``python -m multitask_bert --config CONFIG.yaml`` trains from a config.
"""
