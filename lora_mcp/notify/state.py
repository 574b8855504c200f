"""What get_job shows about a job's webhooks: counts by state and the last error."""

from __future__ import annotations

from pydantic import Field

from lora_mcp.jobs.status import StatusPart
from lora_mcp.notify.outbox import DELIVERED, FAILED, PENDING, outbox_path, read_rows
from lora_mcp.settings import Settings


class DeliveryState(StatusPart):
    """The webhook deliveries of one job's events (one per event and URL)."""

    configured: bool = Field(description="Whether LORA_MCP_WEBHOOK_URLS is set.")
    delivered: int = 0
    pending: int = Field(0, description="Waiting to be sent or retried (the receiver was down or answered non-2xx).")
    failed: int = Field(0, description="Given up after every retry.")
    last_error: str | None = None
    last_delivered_at: float | None = None


def delivery_state(settings: Settings, job_id: str) -> DeliveryState:
    """Counts of a job's webhook deliveries by state and the newest error."""
    state = DeliveryState(configured=bool(settings.webhook_urls))
    path = outbox_path(settings.home)
    counts = read_rows(
        path, "SELECT state, COUNT(*), MAX(delivered_at) FROM deliveries WHERE job_id = ? GROUP BY state", (job_id,)
    )
    error = read_rows(
        path,
        "SELECT last_error FROM deliveries WHERE job_id = ? AND last_error IS NOT NULL ORDER BY event_seq DESC LIMIT 1",
        (job_id,),
    )
    for row in counts:
        if row[0] == DELIVERED:
            state.delivered, state.last_delivered_at = row[1], row[2]
        elif row[0] == PENDING:
            state.pending = row[1]
        elif row[0] == FAILED:
            state.failed = row[1]
    state.last_error = error[0][0] if error else None
    return state
