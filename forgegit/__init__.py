"""forgegit: train an LLM agent's functions on git."""
from __future__ import annotations

__version__ = "0.1.0"
