"""First-party plugin: bridges from encoder frames to LLM prompt vectors (conv, Q-Former, CTC-compress)."""
