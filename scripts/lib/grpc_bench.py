#!/usr/bin/env python3
"""gRPC unary load for scripts/bench's http2 suite: a grpcio server and a grpcio (asyncio) load generator.

Usage: python3 scripts/lib/grpc_bench.py serve --port PORT
       python3 scripts/lib/grpc_bench.py load --target HOST:PORT -dDURATION [--channels N] [--streams N]
           [--size BYTES]

The service has one method, /pilotfish.bench.Echo/Unary, with raw bytes for its messages (grpcio's generic
handlers, no protobuf): the request is --size bytes of zeros, the response as many zeros. The wire is plain gRPC
over h2c (application/grpc, length-prefixed messages, grpc-status trailers), so a proxy sees what any gRPC unary
call looks like.

`serve` answers on 127.0.0.1:PORT (an asyncio server, one process) until SIGTERM or SIGINT.
`load` keeps --streams calls in flight on each of --channels channels (each its own HTTP/2 connection: a local
subchannel pool) for DURATION (wrk's format: 10s, 500ms, 1m), every call with a 5 s deadline, then prints one line:
  grpc-load: calls=N ok=N failed=N seconds=S rps=R p50_ms=X p99_ms=Y errors=CODE:N,...
(rps counts OK calls; latencies are those of OK calls). Exit status 1 if no call succeeded.
"""

import argparse
import asyncio
import collections
import re
import signal
import sys
import time

import grpc

METHOD = "/pilotfish.bench.Echo/Unary"
SERVICE, NAME = METHOD[1:].split("/")
CALL_TIMEOUT = 5.0


def duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("not a duration: %r (e.g. 10s, 500ms, 1m)" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


async def serve(port):
    cache = {}

    async def unary(request, context):
        n = len(request)
        if n not in cache:
            cache[n] = b"\0" * n
        return cache[n]

    handler = grpc.method_handlers_generic_handler(SERVICE, {NAME: grpc.unary_unary_rpc_method_handler(unary)})
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port("127.0.0.1:%d" % port) != port:
        raise SystemExit("grpc_bench: cannot bind 127.0.0.1:%d" % port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print("grpc_bench: serving %s on 127.0.0.1:%d" % (METHOD, port), flush=True)
    await stop.wait()
    await server.stop(1)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


async def load(target, seconds, channels, streams, size):
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    chans = [grpc.aio.insecure_channel(target, options=opts) for _ in range(channels)]
    try:
        for ch in chans:
            await asyncio.wait_for(ch.channel_ready(), 5)
        calls = [ch.unary_unary(METHOD) for ch in chans]
        request = b"\0" * size
        latencies = []
        errors = collections.Counter()
        deadline = time.monotonic() + seconds

        async def worker(call):
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    await call(request, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as e:
                    errors[e.code().name] += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        start = time.monotonic()
        await asyncio.gather(*(worker(c) for c in calls for _ in range(streams)))
        took = time.monotonic() - start
    finally:
        for ch in chans:
            await ch.close()
    latencies.sort()
    ok = len(latencies)
    failed = sum(errors.values())
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print("grpc-load: calls=%d ok=%d failed=%d seconds=%.3f rps=%.2f p50_ms=%s p99_ms=%s errors=%s" % (
        ok + failed, ok, failed, took, ok / took if took else 0.0,
        "n/a" if p50 is None else "%.3f" % (p50 * 1000), "n/a" if p99 is None else "%.3f" % (p99 * 1000),
        ",".join("%s:%d" % kv for kv in sorted(errors.items())) or "-"), flush=True)
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--target", required=True, help="HOST:PORT")
    lo.add_argument("-d", "--duration", type=duration, required=True, help="e.g. 10s")
    lo.add_argument("--channels", type=int, default=4, help="connections (default 4)")
    lo.add_argument("--streams", type=int, default=8, help="calls in flight per connection (default 8)")
    lo.add_argument("--size", type=int, default=64, help="request and response message bytes (default 64)")
    a = ap.parse_args(argv)
    if a.mode == "serve":
        asyncio.run(serve(a.port))
        return 0
    try:
        return asyncio.run(load(a.target, a.duration, a.channels, a.streams, a.size))
    except asyncio.TimeoutError:
        print("grpc-load: no connection to %s within 5 s" % a.target, file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
