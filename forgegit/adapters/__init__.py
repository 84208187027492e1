"""Thin adapters from a `forgegit.toolbox.Toolbox` to agent SDKs (each an optional extra)."""
