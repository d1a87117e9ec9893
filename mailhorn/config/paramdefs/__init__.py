"""Parameter declarations, one module per subsystem; ``ALL`` is their union."""

from __future__ import annotations

from mailhorn.config.paramdefs import core

ALL = (*core.PARAMS,)
