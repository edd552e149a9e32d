"""Head name -> Hugging Face model class, resolved from the bundle contract's one table."""
from __future__ import annotations

from mobile_app.runtime.contract import FAMILY_ARCHITECTURES


def model_class(head: str, family: str = "bert"):
    """The transformers class of a head ('classification' or 'qa') in a model family ('bert', 'distilbert');
    transformers is imported only here."""
    import transformers

    return getattr(transformers, FAMILY_ARCHITECTURES[family][head])


def head_of_architecture(architecture: str, family: str = "bert") -> str | None:
    """'classification' or 'qa' for a config's architecture name in `family`; None for anything else."""
    names = FAMILY_ARCHITECTURES.get(family, {})
    return next((head for head, name in names.items() if name == architecture), None)
