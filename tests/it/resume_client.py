"""A phasecast Python-client subscriber that prints every state it yields as one JSON
line on stdout (seq, kind, epoch and the state) and exits once it has yielded the
state with producer step FINAL_STEP. Run by tests/it/restart.rs with a venv's python
that has the phasecast client installed.

    resume_client.py URL FINAL_STEP
"""

import asyncio
import json
import sys

from phasecast import Subscriber


async def main(url: str, final_step: int) -> None:
    async with Subscriber(url) as sub:
        async for update in sub:
            print(
                json.dumps(
                    {
                        "seq": update.seq,
                        "kind": update.kind,
                        "epoch": update.epoch,
                        "step": update.step,
                        "phases": list(update.phases),
                        "spins": list(update.spins),
                        "energy": update.energy,
                    }
                ),
                flush=True,
            )
            if update.step == final_step:
                break
        if sub.stats.resyncs:
            raise SystemExit(f"{sub.stats.resyncs} resyncs: a delta did not fit the state held")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
