"""OSC control over UDP (python-osc), for TouchDesigner, Max/MSP, Ableton or TouchOSC.

``osc: {host, port}`` turns it on (off by default; the host defaults to 127.0.0.1). One
worker (``osc``) owns the socket: ``step()`` waits at most ``POLL`` for a datagram, and
python-osc parses it and calls the handler its address maps to. Every control message
goes through the same verbs and argument checks as the HTTP API (``control.py``), so
``/streamdream/strength 0.5`` and ``POST /api/strength {"value": 0.5}`` are one request.

===========================================  =========================================
``/streamdream/strength <float>``            multiply the dream strength
``/streamdream/preset <string>``             switch to that preset
``/streamdream/preset/next``                 the playlist's next preset
``/streamdream/preset/previous``             the playlist's previous preset
``/streamdream/step_size <float>``           the dream's base step size
``/streamdream/carry <float>``               flow mode's carry
``/streamdream/crossfade <float>``           seconds the next switches blend
``/streamdream/blend <float>``               the second input's share (dream.blend, 0-1)
``/streamdream/layer/<name>/weight <float>``  one layer's weight
``/streamdream/query [<int port>]``          the state, answered to the sender (its address
                                             and source port, or the port given)
===========================================  =========================================

A message that is not OSC, has an unknown address, the wrong arguments or a value the
controller refuses is counted (``streamdream_osc_messages_total{result="invalid"}``),
logged (the first of a burst) and dropped: never fatal. Bound beyond loopback, only the
clients in ``osc.allow`` are heard (others: ``result="refused"``); without an ``allow``
list such a bind refuses to start. Bundle time tags are ignored (a bundle timed for
tomorrow must not hold the socket).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from ..config import OscConfig
from ..errors import ConfigError, ControlError
from ..runtime.workers import POLL, Worker
from ..web.origin import is_loopback
from .burstlog import BurstLog
from .control import Controller, perform

log = logging.getLogger(__name__)

PREFIX = "/streamdream"
RESULTS = ("applied", "invalid", "refused")
LOG_QUIET = 10.0  # seconds: one log line per burst of bad messages


class _Server(BlockingOSCUDPServer):
    """python-osc's UDP server, with the allow-list and a count of what it drops."""

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher, owner: OscServer) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.owner = owner
        super().__init__(address, dispatcher, timeout=POLL, family=family)

    def verify_request(self, request: Any, client_address: tuple[str, int] | str) -> bool:
        owner = self.owner
        host = client_address[0] if isinstance(client_address, tuple) else client_address  # UDP: (host, port)
        if not owner.allows(host):
            owner.count("refused", f"a message from {host}, which is not in osc.allow")
            return False
        data = request[0]
        try:
            OscPacket(data)
        except Exception as exc:  # noqa: BLE001 - python-osc raises more than ParseError on garbage (UnicodeDecodeError for
            # an address that is not UTF-8), and here, outside socketserver's own handling, it would end the worker
            owner.count("invalid", f"a datagram from {host} that is not OSC ({exc})")
            return False
        return True

    def handle_error(self, request: Any, client_address: tuple) -> None:  # never fatal, never a stack dump per packet
        self.owner.count("invalid", f"a message from {client_address[0]} failed", exc_info=True)


class OscServer(Worker):
    """The OSC worker (see the module docstring); binds in the constructor, so a taken port fails the start."""

    def __init__(self, config: OscConfig, controller: Controller, registry: CollectorRegistry) -> None:
        super().__init__("osc")
        if config.port is None:
            raise ConfigError("osc.port: give a UDP port to turn OSC on")
        if not is_loopback(config.host) and not config.allow:
            raise ConfigError(
                f"osc: listening on {config.host} (not loopback) needs osc.allow, the client addresses to accept, "
                "e.g. allow: [192.168.1.20] or [192.168.1.0/24]"
            )
        self.controller = controller
        self._allowed = [ipaddress.ip_network(entry, strict=False) for entry in config.allow]
        self.messages = Counter("streamdream_osc_messages", "OSC messages received, by result.", ["result"], registry=registry)
        for result in RESULTS:
            self.messages.labels(result=result)
        self._drops = BurstLog(log, "OSC", "streamdream_osc_messages_total", LOG_QUIET)
        dispatcher = Dispatcher(strict_timing=False)
        for verb, address in (("strength", "strength"), ("preset", "preset"), ("next", "preset/next"),
                              ("previous", "preset/previous"), ("step_size", "step_size"), ("carry", "carry"),
                              ("crossfade", "crossfade"), ("blend", "blend"), ("layer", "layer/*/weight")):
            dispatcher.map(f"{PREFIX}/{address}", self._control, verb, needs_reply_address=True)
        dispatcher.map(f"{PREFIX}/query", self._query, needs_reply_address=True)
        dispatcher.set_default_handler(self._unknown, needs_reply_address=True)
        try:
            self._server = _Server((config.host.strip("[]"), config.port), dispatcher, self)
        except OSError as exc:
            raise ConfigError(f"osc: cannot listen on UDP {config.host}:{config.port}: {exc.strerror or exc}") from None
        self.host = config.host
        self.port = int(self._server.server_address[1])
        log.info("OSC control on udp://%s:%d (addresses %s/...)", config.host, self.port, PREFIX)

    # --- the worker ---------------------------------------------------------------------------

    def step(self) -> bool:
        self._server.handle_request()  # waits at most POLL (the server's timeout)
        return True

    def end(self) -> None:
        self._server.server_close()

    # --- counting and the allow-list ----------------------------------------------------------

    def allows(self, host: str) -> bool:
        """This machine (no network can forge a loopback sender), or a client in ``osc.allow``."""
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback or any(address in network for network in self._allowed)

    def count(self, result: str, what: str = "", exc_info: bool = False) -> None:
        self.messages.labels(result=result).inc()
        if result != "applied":
            self._drops.dropped(what, exc_info=exc_info)

    # --- handlers (on the osc worker) ---------------------------------------------------------

    def _control(self, client: tuple, address: str, fixed: list, *args: Any) -> None:
        verb = fixed[0]
        layer = address[len(PREFIX) + len("/layer/"):-len("/weight")] if verb == "layer" else None
        takes = 0 if verb in ("next", "previous") else 1
        try:
            if len(args) != takes:
                raise ControlError(f"{address} takes {takes} argument{'s' if takes != 1 else ''}, got {len(args)}")
            perform(self.controller, verb, _decimal(args[0]) if args else None, layer)
        except ControlError as exc:
            self.count("invalid", f"{address} {list(args)[:4]} from {client[0]}: {exc}")
            return
        self.count("applied")

    def _query(self, client: tuple, address: str, *args: Any) -> None:
        port = client[1]
        if args:
            if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int) or not 1 <= args[0] <= 65535:
                self.count("invalid", f"{address} {list(args)[:4]} from {client[0]}: give no argument or a port 1-65535")
                return
            port = args[0]
        try:
            bundle = state_bundle(self.controller.state())
        except ControlError as exc:
            self.count("invalid", f"{address} from {client[0]}: {exc}")
            return
        self._server.socket.sendto(bundle, (client[0], port))
        self.count("applied")

    def _unknown(self, client: tuple, address: str, *args: Any) -> None:
        self.count("invalid", f"unknown address {address[:80]!r} from {client[0]} (addresses start with {PREFIX}/)")


def _decimal(value: Any) -> Any:
    """An OSC float (32 bits: 0.9 arrives as 0.89999998) as the shortest decimal it stands for."""
    return float(str(np.float32(value))) if isinstance(value, float) else value


def state_bundle(state: dict[str, Any]) -> bytes:
    """The answer to a query: one OSC bundle, one message per value."""
    messages: list[tuple[str, list[Any]]] = [
        ("preset", [str(state.get("preset", ""))]),
        ("presets", [str(name) for name in state.get("presets", [])][:64]),
        ("strength", [float(state.get("strength", 1.0))]),
    ]
    dream = state.get("dream") or {}
    if dream.get("step_size") is not None:
        messages.append(("step_size", [float(dream["step_size"])]))
    if state.get("carry") is not None:
        messages.append(("carry", [float(state["carry"])]))
    if state.get("blend") is not None:
        messages.append(("blend", [float(state["blend"])]))
    for name, weight in list((state.get("layer_weights") or {}).items())[:64]:
        messages.append((f"layer/{name}/weight", [float(weight)]))
    source = state.get("source") or {}
    messages.append(("source/up", [int(bool(source.get("up")))]))
    messages.append(("frames", [int((state.get("frames") or {}).get("out", 0))]))
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, values in messages:
        message = OscMessageBuilder(f"{PREFIX}/{address}")
        for value in values:
            message.add_arg(value)
        bundle.add_content(message.build())
    return bundle.build().dgram


__all__ = ["OscServer", "PREFIX", "state_bundle"]
