"""One Atoll node process: the composition root that wires the engine, the multi-raft
host, the KV region and both servers together (shared/STYLE.md §2: only here are the
real clock, randomness and sockets created). Does I/O.

The public gRPC KV API is served by `kv_gateway_processes` child processes
(`atoll.kv.gateway`) that forward to the nodes over atoll.rpc, or, with 0, by a gRPC
server inside this process.

Group 1 is the single KV region covering the whole key space, replicated on every
initial member (group 0, the meta group, comes with the cluster-map issue).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from pathlib import Path

import grpc

from atoll.engine import open_engine
from atoll.kv.gateway import GatewaySpec
from atoll.kv.grpc_server import KvServicer, rpc_handlers
from atoll.kv.service import KvService, ServiceConfig
from atoll.kv.state_machine import KvStateMachine
from atoll.multiraft.host import HostConfig, RaftHost
from atoll.proto import kv_pb2_grpc
from atoll.raft import ConfState
from atoll.rpc import RpcServer
from atoll.server.config import NodeConfig, load

log = logging.getLogger("atoll.node")

REGION_ID = 1
GRPC_STOP_GRACE_S = 2.0
GATEWAY_START_TIMEOUT_S = 30.0
GATEWAY_STOP_TIMEOUT_S = 5.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(str(config.data_dir / "engine"), config.engine)
    try:
        host = RaftHost(
            HostConfig(
                node_id=config.node_id,
                tick_interval_s=config.tick_interval_ms / 1000,
                election_timeout_ticks=config.election_timeout_ticks,
                compact_after_entries=config.compact_after_entries,
            ),
            engine,
            {m.id: m.rpc for m in config.nodes},
            random.Random(int.from_bytes(os.urandom(8), "big")),
        )
        sm = KvStateMachine(engine, REGION_ID)
        voters = frozenset(m.id for m in config.nodes)
        host.add_group(REGION_ID, sm, ConfState(voters))
        service = KvService(host, sm, {m.id: m.kv for m in config.nodes}, ServiceConfig(REGION_ID))
        rpc_host, rpc_port = _split(config.rpc_address)
        handlers = {**host.rpc_handlers(), **rpc_handlers(service)}
        rpc_server = RpcServer(
            handlers, rpc_host, rpc_port, client_stream_handlers=host.rpc_stream_handlers()
        )
        await rpc_server.start()
        await host.start()
        gateways: list[asyncio.subprocess.Process] = []
        grpc_server: grpc.aio.Server | None = None
        try:
            if config.kv_gateway_processes:
                spec = GatewaySpec(
                    config.kv_address,
                    config.node_id,
                    {m.id: m.rpc for m in config.nodes},
                    os.getpid(),
                )
                started = await asyncio.gather(
                    *(_start_gateway(spec) for _ in range(config.kv_gateway_processes)),
                    return_exceptions=True,
                )
                gateways.extend(p for p in started if not isinstance(p, BaseException))
                for failure in started:
                    if isinstance(failure, BaseException):
                        raise failure
            else:
                grpc_server = grpc.aio.server()
                kv_pb2_grpc.add_KVServicer_to_server(KvServicer(service), grpc_server)  # type: ignore[no-untyped-call]
                if grpc_server.add_insecure_port(config.kv_address) == 0:
                    raise OSError(f"cannot listen on {config.kv_address}")
                await grpc_server.start()
            print(
                f"atoll node {config.node_id}: kv {config.kv_address} rpc {config.rpc_address}",
                flush=True,
            )
            stopped = asyncio.create_task(stop.wait())
            failed = asyncio.create_task(host.failed.wait())
            await asyncio.wait((stopped, failed), return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            failed.cancel()
            if host.failure is not None:
                raise RuntimeError(f"node {config.node_id}: the Raft host failed") from host.failure
        finally:
            if grpc_server is not None:
                await grpc_server.stop(GRPC_STOP_GRACE_S)
            for gateway in gateways:
                await _stop_gateway(gateway)
            await host.stop()
            await rpc_server.stop()
    finally:
        engine.close()


async def _start_gateway(spec: GatewaySpec) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "atoll.kv.gateway", spec.to_json(), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), GATEWAY_START_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if line.strip() != b"ready":
        process.kill()
        await process.wait()
        raise OSError(f"kv gateway for {spec.listen} did not start (exit {process.returncode})")
    return process


async def _stop_gateway(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), GATEWAY_STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def main(config_path: str | Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load(Path(config_path))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(run())
    sys.exit(0)
