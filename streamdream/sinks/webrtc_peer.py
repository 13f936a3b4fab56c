"""One viewer of the WebRTC output: an aiortc peer connection answering a browser's offer.

Imported only when a viewer comes (aiortc is the ``webrtc`` extra). Each viewer gets a
``PacketTrack`` per stream, which hands aiortc the packets the hub encoded once
(``webrtc_media.Fanout``): aiortc only splits them into RTP packets for this viewer. The
answer names VP8 only, since that is what the packets are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .webrtc_media import Fanout

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0  # a viewer whose connection is not up by then is closed


class PacketTrack(MediaStreamTrack):
    """One viewer's view of a ``Fanout``: every packet, or after a miss, the next keyframe (video)."""

    def __init__(self, kind: str, fanout: Fanout) -> None:
        super().__init__()
        self.kind = kind
        self._fanout = fanout
        self._seq = 0
        self._needs_key = kind == "video"

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            got = await self._fanout.after(self._seq)
            if got is None:
                self.stop()
                raise MediaStreamError
            seq, packet = got
            missed = self._seq and seq != self._seq + 1
            self._seq = seq
            if self.kind == "video" and (missed or self._needs_key):
                self._needs_key = not packet.keyframe
                if self._needs_key:
                    self._fanout.keyframe_wanted = True
                    continue
            return packet.packet


async def answer(offer_sdp: str, video: Fanout, audio: Fanout | None,
                 on_end: Callable[[RTCPeerConnection], Awaitable[None]]) -> tuple[RTCPeerConnection, str]:  # fmt: skip
    """A peer connection sending ``video`` (and ``audio``) to the browser that sent ``offer_sdp``,
    and its answer. ``on_end(pc)`` runs once when it fails, closes or never connects. ValueError
    for an offer that is not one."""
    pc = RTCPeerConnection()
    ended = False

    async def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            await pc.close()
            await on_end(pc)

    @pc.on("connectionstatechange")
    async def changed() -> None:
        log.debug("webrtc viewer: connection %s", pc.connectionState)
        if pc.connectionState in ("failed", "closed"):
            await end()

    def never_connected() -> None:
        if pc.connectionState != "connected":
            asyncio.ensure_future(end())

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise ValueError("the offer asks for no video (add a recvonly video transceiver)")
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.sender.replaceTrack(PacketTrack("video", video))
                transceiver.direction = "sendonly"
                vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/vp8"]
                transceiver.setCodecPreferences(vp8)
            elif transceiver.kind == "audio" and audio is not None:
                transceiver.sender.replaceTrack(PacketTrack("audio", audio))
                transceiver.direction = "sendonly"
                opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
                transceiver.setCodecPreferences(opus)
            else:
                transceiver.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        await pc.close()
        raise ValueError(f"not a usable WebRTC offer: {exc}") from None
    asyncio.get_running_loop().call_later(CONNECT_TIMEOUT_S, never_connected)
    return pc, pc.localDescription.sdp


__all__ = ["PacketTrack", "answer"]
