#!/bin/sh
# Entrypoint of the lora-trainer image.
# `serve` (the default command) runs the MCP server over streamable HTTP on 0.0.0.0:8765 (endpoint /mcp, probe
# /healthz) and refuses to start without LORA_MCP_HTTP_TOKEN; lora-mcp itself refuses too, this says it first and
# says where to set it. Anything else goes to the lora-mcp CLI, e.g.
#   docker compose run --rm lora-trainer doctor
#   docker compose exec lora-trainer lora-mcp export JOB_ID
set -eu

if [ "$#" -gt 0 ] && [ "$1" != "serve" ]; then
  exec lora-mcp "$@"
fi
if [ "$#" -gt 0 ]; then
  shift
fi

if [ -z "${LORA_MCP_HTTP_TOKEN:-}" ]; then
  cat >&2 <<'MSG'
lora-trainer: refusing to start: LORA_MCP_HTTP_TOKEN is not set.
The MCP server listens on 0.0.0.0 inside the container, so every request must carry this bearer token.
Set it in docker/.env (e.g. the output of `openssl rand -hex 32`), then run `docker compose up -d` again,
and give MCP clients the header "Authorization: Bearer <token>" (see docs/deployment.md).
MSG
  exit 64
fi

exec lora-mcp serve --transport streamable-http --host 0.0.0.0 --port 8765 "$@"
