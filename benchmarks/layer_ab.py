"""The baked project's channel layer against channels-redis' stock pub/sub layer, same run.

config/channel_layer.py replaces the stock layer's receive loop (and gives publishing a socket
timeout). This measures what that costs on the message path: a room of MEMBERS channels in one
process, group_send of MESSAGES messages, each delivered to every member, against a real
redis-server on 127.0.0.1. The layers alternate, ROUNDS times each, so machine noise hits
all alike; it prints deliveries per second for each round, the medians and their ratios.

Usage (from the template checkout, after scripts/bench.sh or scripts/test.sh made .venv):
    .venv/bin/python benchmarks/layer_ab.py [PROJECT_DIR] [--rounds N] [--also NAME=FILE ...]
PROJECT_DIR defaults to a fresh bake of the defaults. Each --also adds a variant of the project's
layer to the same alternation: FILE is another config/channel_layer.py (an older commit's, an
experiment), measured and reported beside the two, each with its ratio to stock.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.processes import free_ports, wait_until  # noqa: E402

MEMBERS = 20
MESSAGES = 2_000
ROUNDS = 3


def bake(into: Path) -> Path:
    """A default bake of the template, for its config/channel_layer.py and settings."""
    cookiecutter = Path(sys.executable).parent / "cookiecutter"
    subprocess.run(
        [str(cookiecutter), "--no-input", "-o", str(into), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(path for path in into.iterdir() if path.is_dir())


async def deliveries_per_second(layer) -> float:
    """group_send MESSAGES messages to MEMBERS channels; deliveries per second until the last
    member has all of them."""
    channels = [await layer.new_channel() for _ in range(MEMBERS)]
    for channel in channels:
        await layer.group_add("bench", channel)

    async def drain(channel: str) -> None:
        for _ in range(MESSAGES):
            await layer.receive(channel)

    readers = [asyncio.create_task(drain(channel)) for channel in channels]
    started = time.perf_counter()
    for number in range(MESSAGES):
        await layer.group_send("bench", {"type": "bench.message", "n": number})
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    seconds = time.perf_counter() - started
    await layer.flush()
    return MEMBERS * MESSAGES / seconds


def variant(spec: str) -> tuple[str, type]:
    """NAME=FILE: the ResilientPubSubChannelLayer of another channel_layer.py, as NAME."""
    name, _, file = spec.partition("=")
    module_spec = importlib.util.spec_from_file_location(f"layer_variant_{name}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return name, module.ResilientPubSubChannelLayer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", nargs="?", help="a baked project (default: bake one)")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"each (default {ROUNDS})")
    args = parser.parse_args(argv[1:])
    work = Path(tempfile.mkdtemp(prefix="layer-ab-"))
    (port,) = free_ports(1)
    redis = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        project = Path(args.project).resolve() if args.project else bake(work)
        sys.path.insert(0, str(project))
        # settings.py refuses to load without a key; nothing here signs anything.
        os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + "x" * 50)
        from channels_redis.pubsub import RedisPubSubChannelLayer
        from config.channel_layer import ResilientPubSubChannelLayer
        from config.settings import redis_channel_layer

        wait_until(
            lambda: (
                subprocess.run(  # noqa: S603, S607 - fixed argv
                    ["redis-cli", "-p", str(port), "PING"], capture_output=True, check=False
                ).returncode
                == 0
            ),
            timeout=10,
            what="redis-server",
        )
        config = redis_channel_layer(f"redis://127.0.0.1:{port}/0", "pubsub")["CONFIG"]
        layers = {"stock": RedisPubSubChannelLayer, "project": ResilientPubSubChannelLayer}
        layers.update(variant(spec) for spec in args.also)
        rates: dict[str, list[float]] = {name: [] for name in layers}
        for round_number in range(1, args.rounds + 1):
            for name, layer_class in layers.items():
                rate = asyncio.run(deliveries_per_second(layer_class(**config)))
                rates[name].append(rate)
                print(f"round {round_number}: {name:8} {rate:10,.0f} deliveries/s", flush=True)
        medians = {name: statistics.median(values) for name, values in rates.items()}
        print(f"{MEMBERS} members x {MESSAGES} messages, median of {args.rounds}:")
        for name, median in medians.items():
            low, high = min(rates[name]), max(rates[name])
            print(f"  {name:8} {median:10,.0f} deliveries/s  (min-max {low:,.0f}-{high:,.0f})")
        for name in layers:
            if name != "stock":
                print(f"  {name} / stock = {medians[name] / medians['stock']:.2f}")
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
