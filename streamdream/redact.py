"""Credentials out of every text that leaves: one gate, built on a real URL parse.

``redact`` is the gate: the logging filter (``log.py``), the API's answers and errors
(``service/http.py``) and /metrics pass everything through it, so a new message cannot
leak whatever its call site does. It applies ``redact_url`` and, outside URLs, hides the
value of a secret-named ``name=value`` and of a secret-named YAML key quoted from a file
(``password: ...`` on a line of its own, as a parser's error snippet shows it, or inside a
``{flow: mapping}``).

``redact_url`` takes a URL, or any text with URLs in it (a log line, an error message),
and returns it with every secret replaced by ``***``:

- userinfo, whatever characters it holds (``@`` and ``:`` included: the host starts after
  the *last* ``@`` of the authority, as in FFmpeg and ``urllib.parse``). ``user:pass``
  keeps the user name; userinfo without a colon is often a token and goes whole;
- query and fragment parameters whose names suggest a secret (token, key, signature,
  passphrase, password, auth, sig, secret, credential, session, streamid, ...);
- the stream key of an RTMP URL (the last path segment after the application).

Everything else is kept verbatim, so a redacted line still says which camera or server it
is about. Call sites may apply it to what they display; the gate applies it anyway.

A name is secret when it contains token, key, sig, sas, secret, pass, pwd, auth,
credential, session, cookie, jwt, otp, streamid, private or bearer (case and punctuation
ignored).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

REDACTED = "***"

# Where a URL starts in free text; it ends at the first whitespace.
_URL_START = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://")
_WHITESPACE = re.compile(r"\s")
# Punctuation that closes a sentence or a quotation rather than belonging to the URL's tail.
_TRAILING = "'\")]}>,;."
_SECRET_WORDS = (
    "token", "key", "sig", "sas", "secret", "pass", "pwd", "auth", "credential", "session",
    "cookie", "jwt", "otp", "streamid", "private", "bearer",
)  # fmt: skip
_FRAGMENT_SCHEMES = frozenset({"http", "https"})
_RTMP_SCHEMES = frozenset({"rtmp", "rtmps", "rtmpe", "rtmpt", "rtmpte", "rtmpts"})


# Names that hold a secret word but no secret: ``coherence.passes``, a count of ``signals``
_NOT_SECRET = frozenset({"passes", "signal", "signals"})


def is_secret_name(name: str) -> bool:
    """True for a parameter name that suggests a secret (case and punctuation ignored)."""
    name = unquote(name)
    if re.split(r"[.\-]", name.lower())[-1] in _NOT_SECRET:
        return False
    normal = re.sub(r"[^a-z0-9]", "", name.lower())
    return any(word in normal for word in _SECRET_WORDS)


def _redact_params(text: str) -> str:
    """``a=1&token=x;b`` -> ``a=1&token=***;b``: secret-named values hidden, the rest verbatim."""
    parts = re.split(r"([&;])", text)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and value != REDACTED and is_secret_name(name):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def _redact_userinfo(netloc: str) -> str:
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"


def _redact_rtmp_path(path: str) -> str:
    """``/app/STREAMKEY`` -> ``/app/***``: publish URLs carry the key as the stream name."""
    segments = path.split("/")
    named = [i for i, segment in enumerate(segments) if segment]
    if len(named) >= 2:
        segments[named[-1]] = REDACTED
    return "/".join(segments)


def _redact_tail(after: str) -> str:
    """Path, query and fragment of an unparsable URL: the parameters redacted as text."""
    before_fragment, hash_, fragment = after.partition("#")
    path, question, query = before_fragment.partition("?")
    return path + question + _redact_params(query) + hash_ + _redact_params(fragment)


def _redact_one(url: str) -> str:
    """One URL (``scheme://...`` without whitespace), secrets replaced."""
    tail = len(url) - len(url.rstrip(_TRAILING))
    url, closing = (url[:-tail], url[-tail:]) if tail else (url, "")
    scheme, _, rest = url.partition("://")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        parts = None
    if parts is None or not rest.startswith(parts.netloc):  # unparsable: hide the whole authority
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]  # up to the path, query or fragment
        return f"{scheme}://{REDACTED}{_redact_tail(rest[len(authority):])}{closing}"
    after = rest[len(parts.netloc):]
    if parts.scheme not in _FRAGMENT_SCHEMES:  # FFmpeg passes '#' on (SRT stream ids: '#!::r=...')
        path, question, query = after.partition("?")
        if parts.scheme in _RTMP_SCHEMES:
            path = _redact_rtmp_path(path)
        return f"{scheme}://{_redact_userinfo(parts.netloc)}{path}{question}{_redact_params(query)}{closing}"
    query = "?" + _redact_params(parts.query) if "?" in after.partition("#")[0] else ""
    fragment = "#" + _redact_params(parts.fragment) if "#" in after else ""
    return f"{scheme}://{_redact_userinfo(parts.netloc)}{parts.path}{query}{fragment}{closing}"


def redact_url(text: Any) -> str:
    """``text`` (a URL or any text with URLs in it) with every credential replaced by ``***``."""
    text = str(text)
    if "://" not in text:
        return text
    out, position = [], 0
    for match in _URL_START.finditer(text):
        if match.start() < position:
            continue  # inside a URL already handled (e.g. a URL in another URL's query)
        end = _WHITESPACE.search(text, match.end())
        stop = end.start() if end else len(text)
        out.append(text[position:match.start()])
        out.append(_redact_one(text[match.start():stop]))
        position = stop
    out.append(text[position:])
    return "".join(out)


# ``  - password: hunter2`` (a YAML line, as a parser's snippet quotes it) and ``{password: x, ...}``
_YAML_LINE = re.compile(r"""^(?P<lead>[ \t]*(?:-[ \t]+)?)(?P<q>["']?)(?P<name>[A-Za-z0-9_.\-]+)(?P=q)(?P<sep>[ \t]*:[ \t]+)(?P<value>\S.*)$""",
                        re.MULTILINE)
_YAML_FLOW = re.compile(r"""(?P<lead>[{,][ \t]*)(?P<q>["']?)(?P<name>[A-Za-z0-9_.\-]+)(?P=q)(?P<sep>[ \t]*:[ \t]*)(?P<value>[^,}\]\n]+)""")
# ``password=x`` outside a URL: a command line, a connection string, an FFmpeg option
_ASSIGNMENT = re.compile(r"""(?P<lead>(?<![A-Za-z0-9_.\-]))(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>=)(?P<value>[^\s&;,'"]+)""")


def _hide_value(match: re.Match[str]) -> str:
    if not is_secret_name(match["name"]) or match["value"].strip(" \t'\"") == REDACTED:
        return match.group(0)
    quote = match.groupdict().get("q") or ""
    return f"{match['lead']}{quote}{match['name']}{quote}{match['sep']}{REDACTED}"


def _redact_outside_urls(text: str) -> str:
    for pattern in (_YAML_LINE, _YAML_FLOW, _ASSIGNMENT):
        text = pattern.sub(_hide_value, text)
    return text


def redact(text: Any) -> str:
    """The gate: ``text`` with URL credentials, secret-named parameters and YAML keys replaced by ``***``."""
    text = redact_url(text)
    if not any(c in text for c in ":="):
        return text
    out, position = [], 0
    for match in _URL_START.finditer(text):  # URLs are done: the patterns below work between them
        if match.start() < position:
            continue
        end = _WHITESPACE.search(text, match.end())
        stop = end.start() if end else len(text)
        out.append(_redact_outside_urls(text[position:match.start()]))
        out.append(text[match.start():stop])
        position = stop
    out.append(_redact_outside_urls(text[position:]))
    return "".join(out)


def redact_data(data: Any) -> Any:
    """A JSON-like structure with ``redact`` applied to every string in it (keys kept)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(value) for value in data]
    return data
