"""The notifier: one thread, started and stopped with the job manager, running the outbox's followers.

It does nothing (and imports nothing heavy) unless LORA_MCP_WEBHOOK_URLS or LORA_MCP_UPLOAD_ON_SUCCESS is set.
Each pass takes new events in, then delivers what is due; between passes it sleeps POLL_SECONDS, so a webhook
leaves about that long after its event is written.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from lora_mcp.notify.outbox import Outbox, outbox_path

if TYPE_CHECKING:
    from lora_mcp.jobs.manager import JobManager
    from lora_mcp.notify.webhooks import Backoff, WebhookFollower
    from lora_mcp.storage.autoupload import UploadFollower

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02


class Notifier:
    """Follows the job event log for webhooks and automatic uploads; `run_once` is one pass (tests drive it)."""

    def __init__(self, manager: JobManager, *, backoff: Backoff | None = None, upload_retry: float = 30.0) -> None:
        self.manager = manager
        settings = manager.settings
        self.enabled = bool(settings.webhook_urls) or settings.upload_on_success
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.outbox: Outbox | None = None
        self.webhooks: WebhookFollower | None = None
        self.uploads: UploadFollower | None = None
        if not self.enabled:
            return
        self.outbox = Outbox(outbox_path(settings.home))
        if settings.webhook_urls:
            from lora_mcp.notify.webhooks import Backoff, WebhookFollower

            try:
                self.webhooks = WebhookFollower(settings, manager.store, self.outbox, backoff or Backoff())
            except ImportError as exc:  # the session still starts; events wait in jobs.db for the next start
                log.error("LORA_MCP_WEBHOOK_URLS is set but %s is missing: pip install 'lora-mcp[notify]'", exc.name)
        if settings.upload_on_success:
            from lora_mcp.storage.autoupload import UploadFollower

            self.uploads = UploadFollower(manager, self.outbox, retry_base=upload_retry)

    def run_once(self) -> None:
        """Take new events in and deliver what is due."""
        if self.webhooks is not None:
            while self.webhooks.take_in():
                pass
            self.webhooks.deliver_due()
        if self.uploads is not None:
            while self.uploads.take_in():
                pass
            self.uploads.run_due()

    def start(self) -> None:
        """Start the thread (no-op when nothing is configured or it already runs)."""
        if not self.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="lora-mcp-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the thread after its current pass (undelivered rows stay in notify.db for the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.webhooks is not None:
            self.webhooks.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a locked or damaged db, a bug: logged, and the next pass tries again
                log.exception("notifier pass failed")
                self._stop.wait(1.0)
            self._stop.wait(POLL_SECONDS)
