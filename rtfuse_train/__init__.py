"""rtfuse training: datasets of degraded real pairs, a reusable trainer, and the training stages.

A sibling of the runtime package: it imports ``rtfuse`` (model, degradations, checkpoints),
never the other way round. Command line: ``python -m rtfuse_train stage1 ...``.
"""
