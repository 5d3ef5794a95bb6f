"""racoon's `script "PATH" phase1_up|phase1_down|phase1_dead;` hooks.

The script is called with the event name as its only argument and racoon's environment variables
(LOCAL_ADDR, LOCAL_PORT, REMOTE_ADDR, REMOTE_PORT, REMOTE_ID); it never sees a key.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("pyike.hooks")

HOOK_TIMEOUT_S = 30.0


async def run_hook(path: str, event: str, env: dict[str, str]) -> int | None:
    """Run one hook to completion (bounded); its exit status, or None if it could not run."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env}
    try:
        proc = await asyncio.create_subprocess_exec(
            path, event, env=full_env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        log.error("script %s (%s) cannot run: %s", path, event, exc)
        return None
    try:
        code = await asyncio.wait_for(proc.wait(), HOOK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("script %s (%s) killed after %.0f s", path, event, HOOK_TIMEOUT_S)
        return None
    if code:
        log.warning("script %s (%s) exited with %d", path, event, code)
    return code
