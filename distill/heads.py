"""Head name -> Hugging Face model class, resolved from the bundle contract's one table."""
from __future__ import annotations

from mobile_app.runtime.contract import HEAD_ARCHITECTURES


def model_class(head: str):
    """The transformers class of a head ('classification' or 'qa'); transformers is imported only here."""
    import transformers

    return getattr(transformers, HEAD_ARCHITECTURES[head])


def head_of_architecture(architecture: str) -> str | None:
    """'classification' or 'qa' for a config's architecture name; None for anything else."""
    return next((head for head, name in HEAD_ARCHITECTURES.items() if name == architecture), None)
