"""Activations by name: the one spelling of an activation, shared by the networks, the specs and the CLI."""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATIONS", "activation_class"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def activation_class(activation: str | type[nn.Module]) -> type[nn.Module]:
    """The module class of ``activation``: a name of :data:`ACTIVATIONS` (``"silu"``), or an ``nn.Module``
    class (``nn.SiLU``), which is returned as it is."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)} (or an "
                             "nn.Module class such as nn.SiLU)")
        return ACTIVATIONS[activation]
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise TypeError(f"activation must be a name ({', '.join(ACTIVATIONS)}) or an nn.Module class, got "
                    f"{activation!r}")
