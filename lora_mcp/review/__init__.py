"""Caption review: deterministic rules, an optional LLM reviewer, a LangGraph workflow, a YAML review and apply.

Only `models`, `rules`, `reviewfile`, `apply` and `job` are light; `reviewer`, `graph` and `worker` import
pydantic-ai and LangGraph and run inside the review worker process.
"""
