"""Credentials never leave through logs, metrics, API answers or error messages: one redaction, many URL shapes."""

from __future__ import annotations

import logging

import pytest

from streamdream.log import RedactingFilter
from streamdream.redact import redact, redact_data, redact_url

# (URL or text, what must be gone, what must stay)
CASES = [
    ("rtsp://admin:hunter2@cam/stream", "hunter2", "rtsp://admin:***@cam/stream"),
    ("rtsp://admin:Sup3r@Secret9@10.0.0.5:554/live", "Sup3r", "rtsp://admin:***@10.0.0.5:554/live"),
    ("rtsp://admin:p:a:ss@cam/x", "p:a:ss", "rtsp://admin:***@cam/x"),
    ("https://ghp_tokenonly123@github.com/x.git", "ghp_tokenonly123", "https://***@github.com/x.git"),
    ("rtsp://user%40corp:pa%2Fss@cam/x", "pa%2Fss", "rtsp://user%40corp:***@cam/x"),
    ("http://[fe80::1]:8080/s?token=abc123", "abc123", "http://[fe80::1]:8080/s?token=***"),
    ("rtmp://live.twitch.tv/app/live_123456_AbCdEf", "live_123456_AbCdEf", "rtmp://live.twitch.tv/app/***"),
    ("rtmps://a.rtmp.youtube.com:443/live2/abcd-efgh-ijkl-mnop", "abcd-efgh", "rtmps://a.rtmp.youtube.com:443/live2/***"),
    ("rtmp://u:pw0rd@h/live/key9?x=1", "key9", "rtmp://u:***@h/live/***?x=1"),
    ("http://cam/video.mjpg?access_token=eyJhbGciOi", "eyJhbGciOi", "http://cam/video.mjpg?access_token=***"),
    ("https://api.example/hls.m3u8?api_key=K3Y&quality=hd", "K3Y", "?api_key=***&quality=hd"),
    ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIA%2F20&X-Amz-Signature=f00d&X-Amz-Expires=60",
     "f00d", "X-Amz-Signature=***&X-Amz-Expires=60"),
    ("https://h/v.mp4?X-Amz-Security-Token=FQoGZXIvYXdzE", "FQoGZXIvYXdzE", "X-Amz-Security-Token=***"),
    ("srt://relay:9000?mode=caller&passphrase=longsecret123&latency=200", "longsecret123",
     "srt://relay:9000?mode=caller&passphrase=***&latency=200"),
    ("srt://relay:9000?streamid=#!::r=live/cam,m=publish,s=s3ss10n", "s3ss10n", "srt://relay:9000?streamid=***"),
    ("https://cdn/x.m3u8?sig=5ca1ab1e&exp=1", "5ca1ab1e", "?sig=***&exp=1"),
    ("http://h/x?password=open%20sesame", "open%20sesame", "?password=***"),
    ("http://h/x?auth=Basic%20Zm9v", "Zm9v", "?auth=***"),
    ("http://h/x;jsessionid=1?SESSIONID=99abc", "99abc", "?SESSIONID=***"),
    ("https://h/cb#access_token=frag123&state=ok", "frag123", "#access_token=***&state=ok"),
    ("udp://239.0.0.1:1234?pkt_size=1316", "", "udp://239.0.0.1:1234?pkt_size=1316"),
    ("cannot open rtsp://a:b3cr3t@cam:554/x: FFmpeg says: 401", "b3cr3t", "rtsp://a:***@cam:554/x: FFmpeg says: 401"),
    ("output 'rtmp://h/live/sk_999' refused", "sk_999", "output 'rtmp://h/live/***' refused"),
    ("two: http://u:one1@a/ and https://tok2@b/?key=k3", "one1", "http://u:***@a/ and https://***@b/?key=***"),
    ("https://[broken/path?token=leak", "leak", "https://***/path?token=***"),
    ("/var/recordings/dream.mkv", "", "/var/recordings/dream.mkv"),
    ("rtsp://admin:***@cam/x", "", "rtsp://admin:***@cam/x"),  # idempotent
]


@pytest.mark.parametrize("text, secret, expected", CASES, ids=[c[0][:40] for c in CASES])
def test_redaction_of_url_shapes(text: str, secret: str, expected: str) -> None:
    redacted = redact_url(text)
    if secret:
        assert secret not in redacted
    assert expected in redacted
    assert redact_url(redacted) == redacted


def test_two_secrets_in_one_text_both_go() -> None:
    assert "k3" not in redact_url(CASES[23][0]) and "tok2" not in redact_url(CASES[23][0])


def test_filter_redacts_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("source %s lost", "rtsp://admin:Sup3r@Secret9@cam/x")
        try:
            raise ValueError("open failed for rtmp://h/live/streamkey42")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "Sup3r" not in text and "Secret9" not in text and "streamkey42" not in text
    assert "rtsp://admin:***@cam/x" in text and "rtmp://h/live/***" in text and "ValueError" in text


def test_api_answers_are_redacted_deeply() -> None:
    state = {"source": {"uri": "rtsp://a:pw1@c/x"}, "outputs": ["rtmp://h/app/key"], "n": 3, "ok": True}
    assert redact_data(state) == {"source": {"uri": "rtsp://a:***@c/x"}, "outputs": ["rtmp://h/app/***"], "n": 3, "ok": True}


def test_a_config_field_named_like_a_secret_keeps_its_value_in_errors() -> None:
    """`coherence.passes` holds "pass": its error must still say what was wrong; real secrets still go."""
    assert redact("c.yaml:3: coherence.passes: must be <= 2, got 3") == "c.yaml:3: coherence.passes: must be <= 2, got 3"
    assert redact("  passes: 3") == "  passes: 3"
    assert redact("password: hunter2") == "password: ***"
    assert redact("coherence.passwd: hunter2") == "coherence.passwd: ***"
    assert redact("passes_token=abc") == "passes_token=***"
    assert redact("{'kind': 'sighup_storm', 'signals': 40}") == "{'kind': 'sighup_storm', 'signals': 40}"
    assert redact("https://x.blob.core.windows.net/c?sv=1&sig=abc") == "https://x.blob.core.windows.net/c?sv=1&sig=***"
