"""Bridges to other libraries' models and training loops; each needs its optional extra.

* `lrtransfer.integrations.transformers` (``pip install -e ".[hf]"``): width-scaled param groups
  for any Hugging Face ``PreTrainedModel`` and an ``AlignmentCallback`` for its ``Trainer``.

Nothing here is imported by ``import lrtransfer``, so the core package never needs these libraries.
"""
