"""The chat-completions shapes forgegit passes around, named (JSON, exactly as the openai SDK sends them)."""
from __future__ import annotations

from typing import Any

Message = dict[str, Any]  # one message: {"role", "content", and "tool_calls" or "tool_call_id"}
Conversation = list[Message]  # the agent's messages on one task, as recorded
ToolSchema = dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}
