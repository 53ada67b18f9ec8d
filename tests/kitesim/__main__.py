"""Run kitesim standalone, ticker and REST: `python -m tests.kitesim --port 8765 --tick-hz 2`."""

from __future__ import annotations

import argparse
import logging
import random
import threading

from tests.kitesim.rest import DEFAULT_API_SECRET, KiteRestSim
from tests.kitesim.ticker import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY, TickerSim

# A few NSE instruments and an index with their tokens in tests/data/instruments_nse_sample.csv
# (which the REST half trades by) and rough prices.
INSTRUMENTS = {
    23381249: ("RELIANCE", 1364.0),
    23267585: ("INFY", 1523.45),
    23457025: ("TCS", 3901.05),
    23201281: ("HDFCBANK", 1688.8),
    23400193: ("SBIN", 811.15),
    23295753: ("NIFTY 50", 22514.65),
}
TICK_SIZE = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kitesim",
        description="A local Kite ticker websocket for KiteTicker(root='ws://HOST:PORT').",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the API key to accept")
    parser.add_argument(
        "--access-token",
        action="append",
        help=f"an access token to accept (repeatable; default {DEFAULT_ACCESS_TOKEN})",
    )
    parser.add_argument(
        "--tick-hz", type=float, default=1.0, help="random-walk steps per second (0: none)"
    )
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="heartbeat interval")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random walk")
    parser.add_argument(
        "--rest-port", type=int, default=8766, help="REST port (0: any free one; -1: no REST)"
    )
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET, help="the app's API secret")
    parser.add_argument("--redirect-url", default=None, help="where /connect/login sends users")
    parser.add_argument("--postback-url", default=None, help="where order updates are POSTed")
    parser.add_argument("--cash", type=float, default=1_000_000.0, help="the account's cash")
    args = parser.parse_args(argv)
    if args.tick_hz < 0:
        parser.error("--tick-hz must be zero or positive")
    if args.heartbeat_s <= 0:
        parser.error("--heartbeat-s must be positive")
    return args


def random_walk(sim: TickerSim, hz: float, seed: int | None, stop: threading.Event) -> None:
    """Move every instrument by a small Gaussian step, on the tick grid, `hz` times a second."""
    rng = random.Random(seed)
    prices = {token: price for token, (_symbol, price) in INSTRUMENTS.items()}
    volumes = dict.fromkeys(INSTRUMENTS, 0)
    while not stop.wait(1.0 / hz):
        for token, price in prices.items():
            step = price * rng.gauss(0.0, 0.0005)
            prices[token] = max(TICK_SIZE, round(round((price + step) / TICK_SIZE) * TICK_SIZE, 2))
            volumes[token] += rng.randint(1, 500)
            index = token & 0xFF == 9
            sim.set_price(token, prices[token], send=False, volume=0 if index else volumes[token])
        sim.broadcast()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tokens = args.access_token or [DEFAULT_ACCESS_TOKEN]
    sim = TickerSim(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        access_tokens=tokens,
        heartbeat_interval_s=args.heartbeat_s,
    ).start()
    rest = None
    if args.rest_port >= 0:
        rest = KiteRestSim(
            api_key=args.api_key,
            api_secret=args.api_secret,
            access_token=tokens[0],
            ticker=sim,
            redirect_url=args.redirect_url,
            postback_url=args.postback_url,
            cash=args.cash,
            host=args.host,
            port=args.rest_port,
        ).start()
        for token in reversed(tokens):  # every token is valid; the first is the current one
            rest.renew_token(token)
    for token, (_symbol, price) in INSTRUMENTS.items():
        sim.set_price(token, price, send=False)
    stop = threading.Event()
    if args.tick_hz:
        threading.Thread(
            target=random_walk,
            args=(sim, args.tick_hz, args.seed, stop),
            name="kitesim-walk",
            daemon=True,
        ).start()
    print(f"kitesim ticker on {sim.url}  (api_key={args.api_key}, access tokens: {tokens})")
    print(f"  KiteTicker({args.api_key!r}, {tokens[0]!r}, root={sim.url!r})")
    if rest is not None:
        print(f"kitesim REST on {rest.url}  (api_secret={args.api_secret})")
        print(f"  KiteConnect({args.api_key!r}, access_token={tokens[0]!r}, root={rest.url!r})")
    for token, (symbol, _price) in INSTRUMENTS.items():
        print(f"  {token:>8}  {symbol}")
    print("Ctrl-C stops it.", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if rest is not None:
            rest.stop()
        sim.stop()


if __name__ == "__main__":
    main()
