"""Which machines a lab runs on, and how to reach them: ``--hosts`` or an inventory file.

An inventory (``lab.yaml``) is YAML: ``hosts``, a list of machines, and optionally
``defaults`` that every host takes unless it says otherwise::

    defaults:
      user: root
      key: ~/.ssh/lab_ed25519
    hosts:
      - host: pc-07.lab.example
        set: lab-pc-07
        label: Lab PC 7
      - host: 10.0.0.8
        port: 2222

Each host may name ``host`` (required), ``user``, ``port``, ``key`` (a private key file),
``set`` and ``label`` (its result set's name and label; without ``set`` the set is named
after the host: ``pc-07.lab.example``, or ``10.0.0.8-2222`` with a port other than 22),
``folder`` (where its scratch folder is made, default ``/tmp``) and ``venv`` (a test seam:
an existing virtual environment on the host, used instead of running ``./bootstrap``).
Anything else is refused, so that a typo is not silently ignored.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from course.publish import report
from course.results import fingerprint, store

#: The most an inventory file may hold (a lab of 60 hosts is a few KiB).
MAX_BYTES = 1024 * 1024

#: The keys a host (or ``defaults``) may have.
KEYS = ("host", "user", "port", "key", "set", "label", "folder", "venv")

#: A host name or an IPv4 or IPv6 address; never an option ("-o...") for a tool.
_HOST = re.compile(r"[A-Za-z0-9_:][A-Za-z0-9_.:%-]{0,252}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class InventoryError(ValueError):
    """Hosts that cannot be used as given; the message names the host or line and what to fix."""


@dataclass(frozen=True)
class Host:
    """One machine of the lab and how to reach it."""

    host: str
    user: str | None = None  # default: ssh config, else the local user
    port: int = 22
    key: Path | None = None
    set: str | None = None  # the result set's name; default: what the host derives
    label: str | None = None
    folder: str = "/tmp"
    venv: str | None = None  # test seam: an existing virtual environment instead of ./bootstrap

    @property
    def address(self) -> str:
        """``user@host:port``, as the summary and the failures name it."""
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def parse_hosts(text: str, user: str | None = None, key: str | None = None) -> list[Host]:
    """Hosts of ``--hosts``: ``HOST[,HOST...]``, each ``[user@]host[:port]``."""
    hosts = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        entry: dict = {"user": user, "key": key}
        if "@" in item:
            entry["user"], item = item.split("@", 1)
        if bracketed := re.fullmatch(r"\[([^]]*)\](?::(.*))?", item):  # [IPv6]:port, as ssh writes it
            item, entry["port"] = bracketed[1], bracketed[2]
        elif item.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
            item, entry["port"] = item.split(":")
        elif ":" in item and not _ipv6(item):  # host:22:extra is neither
            raise InventoryError(
                f"--hosts: '{_shown(item)}' is not HOST, HOST:PORT or an IPv6 address (write [IPv6]:PORT for a port)"
            )
        entry["host"] = item
        hosts.append(_host(entry, f"--hosts {text!r}"))
    if not hosts:
        raise InventoryError(f"--hosts {text!r} names no host; give HOST[,HOST...]")
    return hosts


def _read(path: Path) -> str:
    """The inventory's text: a regular file of at most :data:`MAX_BYTES`, UTF-8."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # /dev/zero never ends, a FIFO blocks
            raise InventoryError(f"the inventory {path} is not a regular file; give a YAML file (lab.yaml)")
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as error:
        raise InventoryError(f"cannot read the inventory {path}: {error.strerror or error}") from error
    if len(data) > MAX_BYTES:
        raise InventoryError(f"the inventory {path} is over {MAX_BYTES // 1024} KiB; a lab's inventory is a few KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InventoryError(f"the inventory {path} is not UTF-8 text (byte {error.start})") from None


def _parse(path: Path, text: str) -> object:
    """The YAML document, refused if it uses aliases: an inventory has no need of them, and a few
    hundred bytes of nested aliases expand to gigabytes (a "billion laughs")."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise InventoryError(
                    f"{path} uses a YAML alias (*{_shown(event.anchor)}); an inventory takes none: write each "
                    "value out, or put what hosts share under `defaults:`"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InventoryError(f"{path} is not valid YAML: {_shown(' '.join(str(error).split()), 300)}") from None


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _shown(value: object, limit: int = 60) -> str:
    """A value of the inventory as a message shows it: a short text or number quoted, else its type."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"a {type(value).__name__}"
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return report.printable(text)


def load(path: Path, user: str | None = None, key: str | None = None) -> list[Host]:
    """The hosts of an inventory file; ``user`` and ``key`` (from the command line) are the last defaults."""
    content = _parse(path, _read(path))
    if isinstance(content, list):  # a bare list of hosts
        content = {"hosts": content}
    if not isinstance(content, dict) or not isinstance(content.get("hosts"), list) or not content["hosts"]:
        raise InventoryError(f"{path}: expected `hosts:`, a list of hosts (each with at least `host:`)")
    unknown = sorted(set(content) - {"hosts", "defaults"})
    if unknown:
        raise InventoryError(f"{path}: unknown top-level keys {unknown}; an inventory has `hosts` and `defaults`")
    defaults = content.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InventoryError(f"{path}: `defaults` must be a mapping (user:, port:, key:, ...)")
    base = {"user": user, "key": key, **{k: v for k, v in defaults.items() if v is not None}}
    if "host" in defaults or "set" in defaults:
        raise InventoryError(f"{path}: `defaults` cannot give `host` or `set` (each host has its own)")
    hosts = []
    for number, item in enumerate(content["hosts"], start=1):
        if isinstance(item, str):
            item = {"host": item}
        if not isinstance(item, dict):
            raise InventoryError(f"{path}: host {number} must be a mapping (host:, user:, ...) or a host name")
        hosts.append(_host({**base, **item}, f"{path}: host {number}", relative_to=path.parent))
    return hosts


def _host(entry: dict, where: str, relative_to: Path | None = None) -> Host:
    """One host, every field checked; ``where`` says which host in a message."""
    unknown = sorted(_shown(key) for key in set(entry) - set(KEYS))
    if unknown:
        raise InventoryError(f"{where}: unknown keys {unknown}; a host may have {', '.join(KEYS)}")
    for name in KEYS:  # each value a plain text (or a number): a list or a mapping is never shown whole
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise InventoryError(f"{where}: {name} must be a text, not {_shown(value)}")
    host = str(entry.get("host") or "").strip()
    if not _HOST.fullmatch(host) or (":" in host and not _ipv6(host)):
        raise InventoryError(f"{where}: '{_shown(host)}' is not a host name or address")
    where = f"{where} ({host})"
    user = entry.get("user")
    if user is not None and not _USER.fullmatch(str(user)):
        raise InventoryError(f"{where}: '{_shown(user)}' is not a user name")
    try:
        port = int(entry.get("port") or 22)
    except (TypeError, ValueError):
        raise InventoryError(f"{where}: port '{_shown(entry.get('port'))}' is not a number") from None
    if not 0 < port < 65536:
        raise InventoryError(f"{where}: port {port} is outside 1-65535")
    key = None
    if entry.get("key"):
        key = Path(str(entry["key"])).expanduser()
        if not key.is_absolute() and relative_to is not None:
            key = relative_to / key  # a key beside the inventory
        if not key.is_file():
            raise InventoryError(f"{where}: no key file {key}")
    set_name = fingerprint.set_name(host if port == 22 else f"{host}-{port}")  # default: the host's own name
    if entry.get("set") is not None:
        try:
            set_name = fingerprint.set_name(str(entry["set"]))  # as `invoke run --set` names the folder
        except fingerprint.SetNameError as error:
            raise InventoryError(f"{where}: {error}") from None
        if not store.slug_safe(set_name):
            raise InventoryError(f"{where}: '{_shown(entry['set'])}' cannot be a set name")
    label = entry.get("label")
    if label is not None and (not isinstance(label, str | int | float) or len(str(label)) > 200):
        raise InventoryError(f"{where}: label must be a short text")
    folder = str(entry.get("folder") or "/tmp")
    venv = str(entry["venv"]) if entry.get("venv") else None
    for name, value in (("folder", folder), ("venv", venv)):
        if value is not None and (not PurePosixPath(value).is_absolute() or "\n" in value):
            raise InventoryError(f"{where}: {name} must be an absolute path on the host, got '{_shown(value)}'")
    return Host(
        host=host,
        user=str(user) if user is not None else None,
        port=port,
        key=key,
        set=set_name,
        label=str(label) if label is not None else None,
        folder=folder.rstrip("/") or "/",
        venv=venv,
    )


def names(hosts: list[Host]) -> list[str]:
    """A short, unique, file-safe name per host (its set, else its host and port): logs and archives use it."""
    taken: set[str] = set()
    found = []
    for host in hosts:
        base = fingerprint.slug(host.set or (host.host if host.port == 22 else f"{host.host}-{host.port}"))
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(name)
        found.append(name)
    return found


def from_arguments(hosts: str | None, inventory: str | None, user: str | None, key: str | None) -> list[Host]:
    """The hosts of ``invoke lab``: ``--hosts`` or ``--inventory``, exactly one of them."""
    if bool(hosts) == bool(inventory):
        raise InventoryError("give the lab's hosts with either --hosts HOST[,HOST...] or --inventory lab.yaml")
    return parse_hosts(hosts, user, key) if hosts else load(Path(str(inventory)), user, key)
