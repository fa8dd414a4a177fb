"""Where the real services are: three URLs read from the environment, checked before use.

``MQLAB_AMQP_URL``      amqp://user:password@host:port/vhost   (amqps:// for TLS)
``MQLAB_REDIS_URL``     redis://host:port/db, rediss://, unix://, or fake:// for the in-process fakeredis
``MQLAB_DATABASE_URL``  sqlite:///relative.db, sqlite:////absolute.db, sqlite:///:memory:, or
                        postgresql://user@host:port/dbname
``MQLAB_OFFLINE=1``     use fakeredis whatever the Redis URL says
``MQLAB_CONNECT_TIMEOUT_S``  seconds to wait for a TCP connect (default 2)

A bad value raises ``InputError`` naming the variable, the value with its password masked, and
what is allowed.  Passwords never appear in ``repr``: use ``mask`` on any URL you print.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from simulator.errors import InputError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_SQLITE_PATH = os.path.join(tempfile.gettempdir(), "mqlab.sqlite")
DEFAULT_DATABASE_URL = "sqlite:///" + DEFAULT_SQLITE_PATH  # absolute path: four slashes
POSTGRES_EXAMPLE_URL = "postgresql://postgres@127.0.0.1:5432/test"

AMQP_SCHEMES = ("amqp", "amqps")
REDIS_SCHEMES = ("redis", "rediss", "unix", "fake")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
_SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pass|pwd|secret|token)=)[^&#]*", re.IGNORECASE)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def mask(url: str) -> str:
    """The URL with any password (in the userinfo or the query) replaced by ``***``.

    Edits the string in place rather than re-assembling it, so everything else (``sqlite:////``,
    percent-escapes) is shown exactly as given.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        # an unparseable URL may still hold a secret: show only its scheme
        return url.split(":", 1)[0] + ":<unparseable>" if ":" in url else "<unparseable>"
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            hidden = userinfo.split(":", 1)[0] + ":***@" + host
            url = url.replace("//" + netloc, "//" + hidden, 1)
    elif "@" in url:
        # malformed (no "//", scheme forgotten): whatever stands between the last ':' and the
        # '@' may be a password, so hide it rather than trust the parse
        head, tail = url.rsplit("@", 1)
        if ":" in head:
            url = head.rsplit(":", 1)[0] + ":***@" + tail
    return _SECRET_QUERY.sub(r"\1***", url)


def _split(field_name: str, url: str, schemes: tuple[str, ...], example: str):
    allowed = f"a URL with scheme {' / '.join(schemes)}, e.g. {mask(example)}"
    if not isinstance(url, str) or not url.strip():
        raise InputError(field_name, url, allowed)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise InputError(field_name, mask(url), allowed) from None
    if parts.scheme not in schemes:
        raise InputError(field_name, mask(url), allowed)
    return parts, allowed


def check_amqp_url(url: str, field_name: str = "MQLAB_AMQP_URL") -> str:
    parts, allowed = _split(field_name, url, AMQP_SCHEMES, DEFAULT_AMQP_URL)
    if not parts.hostname:
        raise InputError(field_name, mask(url), allowed + " (a host is required)")
    return url


def check_redis_url(url: str, field_name: str = "MQLAB_REDIS_URL") -> str:
    parts, allowed = _split(field_name, url, REDIS_SCHEMES, DEFAULT_REDIS_URL)
    if parts.scheme in ("redis", "rediss") and not parts.hostname:
        raise InputError(field_name, mask(url), allowed + " (a host is required)")
    if parts.scheme == "unix" and not parts.path:
        raise InputError(field_name, mask(url), allowed + " (unix:// needs a socket path)")
    db = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise InputError(field_name, mask(url), allowed + " (the path is a database number)")
    return url


def check_database_url(url: str, field_name: str = "MQLAB_DATABASE_URL") -> str:
    parts, allowed = _split(field_name, url, DATABASE_SCHEMES, POSTGRES_EXAMPLE_URL)
    if parts.scheme == "sqlite":
        if parts.netloc or not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise InputError(field_name, mask(url),
                             "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:")
    elif not parts.hostname or not parts.path.strip("/"):
        raise InputError(field_name, mask(url), allowed + " (a host and a database name are required)")
    return url


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///`` URL (SQLAlchemy's convention: four slashes = absolute)."""
    return check_database_url(url)[len("sqlite:///"):]


def _flag(field_name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(field_name, raw, "1/true/yes/on or 0/false/no/off")


def _seconds(field_name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InputError(field_name, raw, "a number of seconds, 0 < t <= 60") from None
    if not 0 < value <= 60:
        raise InputError(field_name, raw, "a number of seconds, 0 < t <= 60")
    return value


@dataclass(frozen=True)
class Settings:
    amqp_url: str = DEFAULT_AMQP_URL
    redis_url: str = DEFAULT_REDIS_URL
    database_url: str = DEFAULT_DATABASE_URL
    offline: bool = False
    connect_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        check_amqp_url(self.amqp_url)
        check_redis_url(self.redis_url)
        check_database_url(self.database_url)
        if not 0 < self.connect_timeout_s <= 60:
            raise InputError("MQLAB_CONNECT_TIMEOUT_S", self.connect_timeout_s, "0 < t <= 60")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        return cls(
            amqp_url=env.get("MQLAB_AMQP_URL") or DEFAULT_AMQP_URL,
            redis_url=env.get("MQLAB_REDIS_URL") or DEFAULT_REDIS_URL,
            database_url=env.get("MQLAB_DATABASE_URL") or DEFAULT_DATABASE_URL,
            offline=_flag("MQLAB_OFFLINE", env.get("MQLAB_OFFLINE", "")),
            connect_timeout_s=_seconds("MQLAB_CONNECT_TIMEOUT_S", env.get("MQLAB_CONNECT_TIMEOUT_S", "2")),
        )

    @property
    def fake_redis(self) -> bool:
        return self.offline or urlsplit(self.redis_url).scheme == "fake"

    @property
    def database_kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if urlsplit(self.database_url).scheme == "sqlite" else "postgresql"

    def __repr__(self) -> str:  # masked: a Settings may end up in a traceback or a log
        return (f"Settings(amqp_url={mask(self.amqp_url)!r}, redis_url={mask(self.redis_url)!r}, "
                f"database_url={mask(self.database_url)!r}, offline={self.offline}, "
                f"connect_timeout_s={self.connect_timeout_s})")

    __str__ = __repr__
