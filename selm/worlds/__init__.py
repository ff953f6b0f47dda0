"""The worlds selm can run in, by ``world.name``: ``tiny`` (generated tasks, rule judges), ``prompts`` (a prompts
file with dataset replies) and ``instructions`` (real instructions with IFEval constraints). ``register`` adds one;
see ``selm.worlds.base.World`` for what a world provides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from selm.worlds.base import ModelKind, World
from selm.worlds.instructions import InstructionsWorld
from selm.worlds.prompts import PromptsWorld
from selm.worlds.tiny import TinyWorld

if TYPE_CHECKING:
    from selm.config import Recipe

REGISTRY: dict[str, World] = {}


def register(world: World) -> World:
    """Make ``world`` available as ``world.name = "<its name>"`` in recipes."""
    REGISTRY[world.name] = world
    return world


def get(name: str) -> World:
    if name not in REGISTRY:
        raise KeyError(f"world.name = {name!r}: no such world; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def of(recipe: Recipe) -> World:
    """The recipe's world."""
    return get(recipe.world.name)


def builds(name: str) -> bool:
    """Whether model ``name`` is one a world builds itself (its name is the world's, e.g. "tiny")."""
    return name in REGISTRY and type(REGISTRY[name]).model is not World.model


def model_path(kind: ModelKind, name: str, recipe: Recipe) -> str:
    """The folder of model ``name``: built (once, cached) by the world of that name, imported if it is a packaged
    GGUF model (``selm.models.loading.PACKAGED_GGUF``), else ``name`` itself (a folder or hub id)."""
    from selm.models.loading import model_path as loaded

    path = REGISTRY[name].model(kind, recipe) if name in REGISTRY else None
    return str(path) if path is not None else loaded(name)


register(TinyWorld())
register(PromptsWorld())
register(InstructionsWorld())

__all__ = ["REGISTRY", "World", "builds", "get", "model_path", "of", "register"]
