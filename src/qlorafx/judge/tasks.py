"""Many requests at once, stopped together: the first failure cancels the rest.

(asyncio.TaskGroup does this from Python 3.11 on, but wraps the failure in an ExceptionGroup;
qlorafx supports 3.10 and wants the failure itself, to print its message.)
"""

from __future__ import annotations

import asyncio
from typing import Awaitable


async def run_together(jobs: list[Awaitable[None]]) -> None:
    """Run the jobs concurrently; re-raise the first failure after cancelling the others (what they finished is kept)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
