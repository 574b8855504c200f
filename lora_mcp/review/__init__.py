"""Caption review: deterministic rules, an optional LLM reviewer, a LangGraph workflow, a YAML review and apply.

`models`, `params`, `rules`, `collect`, `reviewfile`, `apply`, `service` and `cli` are light; `reviewer`, `graph`,
`runner` and `worker` import pydantic-ai and LangGraph and run inside the review worker process.
"""
