"""orchestrator: the OpenAI-compatible front door with model routing and three-tier memory."""
