"""A subscriber that reads one frame every INTERVAL seconds for DURATION seconds and
reports how old each state it read was (now - the producer's timestamp), as one JSON
line on stdout. Run by tests/it/freshness.rs with a venv's python that has the
phasecast client installed.

    slow_reader.py plain|client URL INTERVAL DURATION

plain:  the `websockets` library with a one-frame queue (max_queue=1) and nothing
        else, as any plain WebSocket client; frames are applied with the phasecast
        codec, so every state is checked against its checksum.
client: phasecast's own asyncio Subscriber (which checks checksums itself).
"""

import asyncio
import json
import sys
import time

import websockets

from phasecast import Delta, Full, Subscriber, apply_delta, decode_frame


def report(ages: list[float], seqs: list[int]) -> None:
    print(json.dumps({"ages": ages, "first_seq": seqs[0], "last_seq": seqs[-1], "frames": len(seqs)}))


async def plain(url: str, interval: float, duration: float) -> None:
    fmt = "protobuf" if "format=protobuf" in url else "json"
    ages, seqs = [], []
    state, held = None, None
    async with websockets.connect(url, max_queue=1, max_size=None) as ws:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            frame = decode_frame(await ws.recv(), fmt)
            now = time.time()
            if isinstance(frame, Full):
                state = frame.state
            elif isinstance(frame, Delta):
                if frame.base_seq != held:
                    raise SystemExit(f"delta on seq {frame.base_seq}, held {held}")
                state = apply_delta(state, frame)  # raises on a checksum mismatch
            else:
                continue
            held = frame.seq
            ages.append(now - state.timestamp)
            seqs.append(frame.seq)
            await asyncio.sleep(interval)
    report(ages, seqs)


async def client(url: str, interval: float, duration: float) -> None:
    ages, seqs = [], []
    async with Subscriber(url) as sub:
        end = time.monotonic() + duration
        async for update in sub:
            ages.append(time.time() - update.timestamp)
            seqs.append(update.seq)
            if time.monotonic() >= end:
                break
            await asyncio.sleep(interval)
        if sub.stats.resyncs:
            raise SystemExit(f"{sub.stats.resyncs} resyncs: a state was not exact")
    report(ages, seqs)


if __name__ == "__main__":
    mode, url, interval, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    asyncio.run({"plain": plain, "client": client}[mode](url, interval, duration))
