"""A load generator for ``nue serve``: N concurrent closed-loop clients in one process (asyncio).

    python benchmarks/load_clients.py URL CLIPS_DIR --clients 16 --per-client 4

Each client sends ``--per-client`` requests one after the other (clip k = client * per_client + r,
modulo the clips in ``CLIPS_DIR``, named 0.wav, 1.wav ...) to ``URL/v1/audio/transcriptions``.
Prints one JSON document: {"wall": seconds, "done": [[clip, latency s, text], ...]}. It runs in a
process of its own, as wrk or locust would: client threads inside the server's process would share
its interpreter lock and measure the harness as much as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path


async def _client(http, url: str, clips: list[bytes], c: int, per_client: int) -> list[list]:  # type: ignore[no-untyped-def]
    out = []
    for r in range(per_client):
        k = (c * per_client + r) % len(clips)
        start = time.perf_counter()
        res = await http.post(url + "/v1/audio/transcriptions", data={"model": "default"},
                              files={"file": ("clip.wav", clips[k], "audio/wav")})
        res.raise_for_status()
        out.append([k, time.perf_counter() - start, res.json()["text"]])
    return out


async def run(url: str, clips: list[bytes], clients: int, per_client: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        parts = await asyncio.gather(*[_client(http, url, clips, c, per_client) for c in range(clients)])
        return {"wall": time.perf_counter() - start, "done": [x for part in parts for x in part]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("clips_dir", type=Path)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--per-client", type=int, default=4)
    args = parser.parse_args()
    count = len(list(args.clips_dir.glob("*.wav")))
    clips = [(args.clips_dir / f"{k}.wav").read_bytes() for k in range(count)]
    print(json.dumps(asyncio.run(run(args.url, clips, args.clients, args.per_client))))


if __name__ == "__main__":
    main()
