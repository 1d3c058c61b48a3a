"""Upstream `multitask_bert` path; the code lives in trainhub.text."""
