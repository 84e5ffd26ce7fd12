"""Ansible inventories as `Host` records, and `--limit` patterns as Ansible reads them.

Static inventories are YAML or INI (told apart by their content, as Ansible tries one plugin after
the other). Variables follow Ansible's precedence: inventory-file group vars (all < parent < child,
siblings by `ansible_group_priority` then name), then `group_vars/` next to the inventory in the
same order, then the host's own vars, then `host_vars/`. Dynamic sources (an executable inventory
script, or a YAML plugin configuration such as `plugin: amazon.aws.aws_ec2`) are read through
`ansible-inventory -i SRC --list`, whose host variables Ansible has already merged.

Variables that look like settings (`ansible_*`, `fleetrst_*`) but that fleetrst does not know, or
knows and cannot honour, are not errors: each becomes one line of `Inventory.warnings`, with the
file and line where it is set.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import ipaddress
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InventoryError
from .model import Host

_GROUP_KEYS = ("hosts", "children", "vars")
_VAR_FILE_SUFFIXES = ("", ".yml", ".yaml", ".json")
_MAX_RANGE = 100_000  # a typo like web[1:9999999] should fail, not eat the memory
_DECIMAL = re.compile(r"[0-9]+")  # not str.isdigit(), which takes "²" that int() refuses
_TRUE = frozenset({"true", "yes", "y", "on", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "off", "0", "f", ""})


# --- YAML with line numbers ----------------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers its own (1-based) line and the line of each key."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}

    @classmethod
    def single(cls, key: Any, line: int) -> _Map:
        """The mapping {key: None}, as Ansible reads a bare name where a mapping is expected."""
        out = cls(line)
        out[key] = None
        out.key_lines[key] = line
        return out


class _Seq(list[Any]):
    """A YAML sequence that remembers its (1-based) line."""

    line = 0


class Vaulted(str):
    """An inline `!vault` value: kept opaque, never usable as a connection setting."""


class _Unsafe(str):
    """An `!unsafe` string: Ansible never templates it, so neither does fleetrst."""


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> Vaulted:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a !vault value must be a string", node.start_mark
        )
    return Vaulted(loader.construct_scalar(node))


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return _construct_map(loader, node)
    raise yaml.constructor.ConstructorError(None, None, "bad !unsafe value", node.start_mark)


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_sequence(node, deep=True))
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


def _read_text(path: Path, shown: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InventoryError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise InventoryError(f"{shown}: is a directory, not an inventory file") from None
    except OSError as e:
        raise InventoryError(f"{shown}: cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InventoryError(f"{shown}: not UTF-8 text (byte {e.start})") from None


def _is_vault(text: str) -> bool:
    return text.startswith("$ANSIBLE_VAULT")


def _parse_yaml(text: str, shown: str) -> Any:
    """Parse YAML text; every failure is an InventoryError naming `shown` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        problem = " ".join(str(e.problem or e.context or "invalid YAML").split())
        raise InventoryError(f"{where}: YAML error: {problem}") from None
    except yaml.YAMLError as e:
        raise InventoryError(f"{shown}: YAML error: {' '.join(str(e).split())}") from None


def _plain(value: Any) -> Any:
    """Deep copy of a loaded value with ordinary dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _line_of(value: Any, default: int | None) -> int | None:
    return getattr(value, "line", None) or default


# --- host names and ranges ------------------------------------------------------------------------


def check_host_name(name: Any) -> str | None:
    """Why `name` cannot be a host name (it becomes a directory name), or None if it can."""
    if name is None:
        return "empty host name (a null key)"
    if not isinstance(name, str):
        return f"host name {name!r} is not a string"
    if not name.strip():
        return "empty host name"
    if name in (".", ".."):
        return f"host name {name!r} is not allowed"
    if "/" in name:
        return f"host name {name!r} contains '/'"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return f"host name {name!r} contains control characters"
    if name.startswith("-"):
        return f"host name {name!r} starts with '-'"
    return None


def _split_port(pattern: str) -> tuple[str, int | None]:
    """"web:2222" -> ("web", 2222); IPv6 literals, bare or "[v6]:port", are kept whole."""
    try:
        ipaddress.IPv6Address(pattern)
        return pattern, None
    except ValueError:
        pass
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", pattern)
    if bracketed:
        try:
            ipaddress.IPv6Address(bracketed[1])
            return bracketed[1], int(bracketed[2]) if bracketed[2] else None
        except ValueError:
            pass  # a range such as [1:3]
    with_port = re.fullmatch(r"(.+):(\d+)", pattern)
    if with_port and ":" not in re.sub(r"\[[^\]]*\]", "", with_port[1]):
        return with_port[1], int(with_port[2])
    return pattern, None


def expand_host_range(pattern: str) -> list[str]:
    """Expand Ansible host ranges: "web[01:03]", "db[a:c]", "n[1:10:2]", several per name.

    Raises ValueError on a malformed range.
    """
    match = re.search(r"\[([^\[\]]*:[^\[\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    parts = match[1].split(":")
    if len(parts) > 3:
        raise ValueError(f"bad host range [{match[1]}]")
    beg, end = parts[0] or "0", parts[1]
    step_text = parts[2] if len(parts) == 3 else "1"
    if not end:
        raise ValueError(f"host range [{match[1]}] has no end")
    if not _DECIMAL.fullmatch(step_text) or int(step_text) < 1:
        raise ValueError(f"host range [{match[1]}] has a bad step")
    step = int(step_text)
    if _DECIMAL.fullmatch(beg) and _DECIMAL.fullmatch(end):
        width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
        if width and len(end) != width:
            raise ValueError(f"host range [{match[1]}]: begin and end must have the same width")
        first, last = int(beg), int(end)
        if first > last:
            raise ValueError(f"host range [{match[1]}] runs backwards")
        if (last - first) // step >= _MAX_RANGE:
            raise ValueError(f"host range [{match[1]}] is too large")
        items = [str(i).zfill(width) for i in range(first, last + 1, step)]
    elif len(beg) == len(end) == 1 and beg in string.ascii_letters and end in string.ascii_letters:
        first, last = string.ascii_letters.index(beg), string.ascii_letters.index(end)
        if first > last:
            raise ValueError(f"host range [{match[1]}] runs backwards")
        items = list(string.ascii_letters[first : last + 1 : step])
    else:
        raise ValueError(f"bad host range [{match[1]}]")
    rests = expand_host_range(tail)
    if len(items) * len(rests) > _MAX_RANGE:
        raise ValueError(f"host range in {pattern!r} is too large")
    return [head + item + rest for item in items for rest in rests]


# --- building -------------------------------------------------------------------------------------


_Origin = tuple[str, int]  # (file as shown, line)


@dataclass
class _Vars:
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, _Origin] = field(default_factory=dict)

    def update(self, other: _Vars) -> None:
        self.values.update(other.values)
        self.origins.update(other.origins)


@dataclass
class _Group:
    name: str
    line: int
    vars: _Vars = field(default_factory=_Vars)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@dataclass
class _HostDef:
    name: str
    line: int
    vars: _Vars = field(default_factory=_Vars)


def _typename(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


class _Builder:
    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _HostDef] = {}
        self.link_lines: dict[tuple[str, str], int] = {}

    def fail(self, line: int | None, message: str) -> InventoryError:
        where = f"{self.shown}:{line}" if line else self.shown
        return InventoryError(f"{where}: {message}")

    def group(self, name: Any, line: int) -> _Group:
        if not isinstance(name, str) or not name.strip():
            raise self.fail(line, f"group name {name!r} is not a non-empty string")
        if name not in self.groups:
            self.groups[name] = _Group(name, line)
        return self.groups[name]

    def link(self, parent: str, child: str, line: int) -> None:
        if parent == child:
            raise self.fail(line, f"group {child!r} is listed as its own child")
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)
            self.link_lines[(parent, child)] = line

    def vars_of(self, data: Any, line: int, owner: str) -> _Vars:
        if data is None:
            return _Vars()
        if not isinstance(data, _Map):
            raise self.fail(line, f"{owner}: vars must be a mapping, not {_typename(data)}")
        out = _Vars()
        for key, value in data.items():
            out.values[str(key)] = _plain(value)
            out.origins[str(key)] = (self.shown, data.key_lines.get(key, line))
        return out

    def parse(self, data: Any) -> None:
        if data is None:
            return
        if not isinstance(data, _Map):
            raise self.fail(
                _line_of(data, None), f"the inventory must be a mapping of groups, "
                f"not {_typename(data)}"
            )
        self.group("all", data.line)
        for name, body in data.items():
            line = data.key_lines[name]
            self.parse_group(name, body, None if name == "all" else "all", line)

    def parse_group(self, name: Any, body: Any, parent: str | None, line: int) -> None:
        group = self.group(name, line)
        if parent is not None:
            self.link(parent, group.name, line)
        if body is None:
            return
        if not isinstance(body, _Map):
            raise self.fail(
                line, f"group {name!r} must be a mapping with hosts, children or vars, "
                f"not {_typename(body)}"
            )
        for key in body:
            if key not in _GROUP_KEYS:
                raise self.fail(
                    body.key_lines[key],
                    f"group {name!r}: unexpected key {key!r} (expected hosts, children or vars)",
                )
        if "vars" in body:
            group.vars.update(self.vars_of(body["vars"], body.key_lines["vars"], f"group {name!r}"))
        if "hosts" in body:
            self.parse_hosts(group, body["hosts"], body.key_lines["hosts"])
        if "children" in body:
            children = body["children"]
            kline = body.key_lines["children"]
            if isinstance(children, str):  # Ansible accepts a single name
                children = _Map.single(children, kline)
            if children is None:
                return
            if not isinstance(children, _Map):
                raise self.fail(
                    kline, f"group {name!r}: children must be a mapping of group names, "
                    f"not {_typename(children)}"
                )
            for child, child_body in children.items():
                self.parse_group(child, child_body, group.name, children.key_lines[child])

    def parse_hosts(self, group: _Group, hosts: Any, line: int) -> None:
        if hosts is None:
            return
        if isinstance(hosts, str):  # Ansible accepts a single name
            hosts = _Map.single(hosts, line)
        if not isinstance(hosts, _Map):
            raise self.fail(
                line, f"group {group.name!r}: hosts must be a mapping of host names "
                f"(name: or name: {{vars}}), not {_typename(hosts)}"
            )
        for pattern, host_vars in hosts.items():
            hline = hosts.key_lines[pattern]
            problem = check_host_name(pattern)
            if problem is not None and not isinstance(pattern, str):
                raise self.fail(hline, problem)
            try:
                base, port = _split_port(pattern)
                names = expand_host_range(base)
            except ValueError as e:
                raise self.fail(hline, str(e)) from None
            if host_vars is not None and not isinstance(host_vars, _Map):
                raise self.fail(
                    hline, f"host {pattern!r}: vars must be a mapping, not {_typename(host_vars)}"
                )
            parsed = self.vars_of(host_vars, hline, f"host {pattern!r}")
            for name in names:
                problem = check_host_name(name)
                if problem is not None:
                    raise self.fail(hline, problem)
                # As Ansible: a "host:port" pattern sets the port only where the host is first
                # named; later mentions keep whatever port it has.
                first = name not in self.hosts
                host = self.hosts.setdefault(name, _HostDef(name, hline))
                if port is not None and first:
                    host.vars.values["ansible_port"] = port
                    host.vars.origins["ansible_port"] = (self.shown, hline)
                host.vars.update(parsed)
                if name not in group.hosts:
                    group.hosts.append(name)

    def finish(self) -> None:
        """Add the implicit groups and check that children do not loop."""
        self.group("all", 1)
        ungrouped = self.group("ungrouped", 1)
        if "ungrouped" not in self.groups["all"].children:
            self.link("all", "ungrouped", 1)
        # As Ansible: ungrouped holds exactly the hosts that are in no other group.
        grouped = {h for g in self.groups.values() if g.name not in ("all", "ungrouped")
                   for h in g.hosts}
        ungrouped.hosts = [h for h in self.hosts if h not in grouped]
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str) -> None:
            state[name] = 1
            for child in self.groups[name].children:
                if state.get(child) == 1:
                    raise self.fail(
                        self.link_lines.get((name, child)),
                        f"group {child!r} is listed under {name!r}, which is inside it "
                        "(children loop)",
                    )
                if child not in state:
                    visit(child)
            state[name] = 2

        visit("all")
        for name in list(self.groups):  # groups that loop among themselves hang off nothing
            if name not in state:
                visit(name)


# --- INI inventories ------------------------------------------------------------------------------

# As Ansible's ini plugin: a section is a group name (no blanks, ':' or ']') and an optional type.
_INI_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_INI_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_INI_COMMENT = ("#", ";")


def ini_value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one ("42", "True", "[1, 2]"),
    else the string itself ("true", "yes" and "web01" stay strings)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _ini_plain(value)


def _ini_plain(value: Any) -> Any:
    # What Ansible keeps of a literal: lists for tuples and sets, text for bytes, and strings
    # for the literal types it has no variable type for.
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_ini_plain(v) for v in value]
    if isinstance(value, dict):  # keys as they are: a tuple key must stay hashable
        return {k: _ini_plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


class _IniParser:
    """One pass over the lines, as Ansible's ini plugin makes it, into a `_Builder`."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        # Groups Ansible would know by now; `[g:vars]` adds its group, but only on credit.
        self.known: set[str] = {"all", "ungrouped"}
        # Forward references: {group: (line, "vars" | "children", parents)}, in order seen.
        self.pending: dict[str, tuple[int, str, list[str]]] = {}

    def parse(self, text: str) -> None:
        self.b.group("all", 1)
        self.b.group("ungrouped", 1)
        group, state = "ungrouped", "hosts"
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(_INI_COMMENT):
                continue
            section = _INI_SECTION.match(line)
            if section:
                group, state = section[1], section[2] or "hosts"
                self.section(group, state, lineno, line)
            elif line.startswith("[") and line.endswith("]"):
                raise self.b.fail(
                    lineno, f"invalid section {line!r}: a section is [group], [group:vars] or "
                    "[group:children], with no spaces in it"
                )
            elif state == "hosts":
                self.host_line(group, line, lineno)
            elif state == "vars":
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise self.b.fail(lineno, f"[{group}:vars]: expected key=value, got {line!r}")
                self.b.groups[group].vars.values[key.strip()] = ini_value(value.strip())
                self.b.groups[group].vars.origins[key.strip()] = (self.b.shown, lineno)
            else:
                child = _INI_GROUP_NAME.match(line)
                if child is None:
                    raise self.b.fail(
                        lineno, f"[{group}:children]: expected a group name, got {line!r}"
                    )
                name = child[1]
                if name in self.known:
                    self.b.link(group, name, lineno)
                elif name in self.pending:
                    self.pending[name][2].append(group)
                else:
                    self.pending[name] = (lineno, "children", [group])
        for name, (lineno, kind, parents) in self.pending.items():
            if kind == "vars":
                raise self.b.fail(
                    lineno, f"section [{name}:vars] is for group {name!r}, which is defined "
                    "nowhere (no [" + name + "] or [" + name + ":children] section)"
                )
            raise self.b.fail(
                lineno, f"section [{parents[-1]}:children] names group {name!r}, which is "
                "defined nowhere"
            )
        # As Ansible: every group that has no parent is a child of all.
        for name, grp in list(self.b.groups.items()):
            if name != "all" and not grp.parents:
                self.b.link("all", name, grp.line)

    def section(self, name: str, state: str, lineno: int, line: str) -> None:
        if state not in ("hosts", "vars", "children"):
            raise self.b.fail(
                lineno, f"section {line.split(']')[0]}] has unknown type {state!r} "
                "(expected vars or children)"
            )
        if name not in self.known:
            if state == "vars" and name not in self.pending:
                self.pending[name] = (lineno, "vars", [])
            self.known.add(name)
            self.b.group(name, lineno)
        if name in self.pending and state != "vars":
            if self.pending[name][1] == "children":
                self.resolve_children(name)
            else:
                del self.pending[name]

    def resolve_children(self, name: str) -> None:
        entry = self.pending.pop(name, None)
        if entry is None:
            return
        for parent in entry[2]:
            self.b.link(parent, name, entry[0])
            if parent in self.pending and self.pending[parent][1] == "children":
                self.resolve_children(parent)

    def host_line(self, group: str, line: str, lineno: int) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as e:
            raise self.b.fail(lineno, f"cannot read host line {line!r}: {e}") from None
        if not tokens:
            return
        pattern = tokens[0]
        try:
            base, port = _split_port(pattern)
            names = expand_host_range(base)
        except ValueError as e:
            raise self.b.fail(lineno, str(e)) from None
        if pattern.endswith(":") and port is None:
            raise self.b.fail(
                lineno, f"host {pattern!r} ends in ':', which is kept for a port number"
            )
        if pattern == "---":
            raise self.b.fail(lineno, "'---' is not a host name: is this a YAML file?")
        parsed = _Vars()
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise self.b.fail(
                    lineno, f"host {pattern!r}: expected key=value after the host name, "
                    f"got {token!r}"
                )
            parsed.values[key] = ini_value(value)
            parsed.origins[key] = (self.b.shown, lineno)
        grp = self.b.groups[group]
        for name in names:
            problem = check_host_name(name)
            if problem is not None:
                raise self.b.fail(lineno, problem)
            first = name not in self.b.hosts  # as in YAML: the port counts only there
            host = self.b.hosts.setdefault(name, _HostDef(name, lineno))
            if port is not None and first:
                host.vars.values["ansible_port"] = port
                host.vars.origins["ansible_port"] = (self.b.shown, lineno)
            host.vars.update(parsed)
            if name not in grp.hosts:
                grp.hosts.append(name)


def _first_line(text: str) -> str | None:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(_INI_COMMENT):
            return line
    return None


def _yamlish(line: str) -> bool:
    """Does a line look like YAML ("key:", "---", "- item") rather than an INI host line?"""
    return (
        line.startswith(("---", "- ", "%", "{"))
        or re.match(r"^[^\s=]+:(\s|$)", line) is not None
        or re.match(r"^(['\"]).*\1:(\s|$)", line) is not None
    )


def _detect(text: str, shown: str) -> tuple[str, Any]:
    """("yaml", data), ("ini", None) or ("plugin", data) for an inventory file's text."""
    first = _first_line(text)
    if first is None:
        return "yaml", None
    if _INI_SECTION.match(first):
        return "ini", None
    try:
        data = _parse_yaml(text, shown)
    except InventoryError:
        if _yamlish(first):
            raise
        return "ini", None
    if isinstance(data, _Map) and "plugin" in data:
        return "plugin", data
    if data is None or isinstance(data, (_Map, _Seq)):
        return "yaml", data
    return "ini", None  # a scalar: bare host lines, which YAML reads as one string


# --- dynamic inventories --------------------------------------------------------------------------

DYNAMIC_TIMEOUT = 300.0  # seconds; cloud inventories can be slow, but not forever
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def ansible_inventory_command() -> str | None:
    """Path of `ansible-inventory`: on PATH, or beside the running Python (a virtualenv)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def ansible_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment Ansible's commands run in: no colours, and a UTF-8 locale (Ansible refuses
    to start under a plain C locale, which is what cron jobs and CI often have)."""
    env = dict(os.environ if base is None else base)
    env.update(ANSIBLE_NOCOLOR="True", ANSIBLE_FORCE_COLOR="False")
    effective = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or ""
    if effective and not re.search(r"utf-?8", effective, re.IGNORECASE):
        env["LC_ALL"] = "C.UTF-8"
    return env


def _is_script(path: Path) -> bool:
    """An executable file with a #! line: Ansible runs it as an inventory script."""
    try:
        if not path.is_file() or not os.access(path, os.X_OK):
            return False
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


_STATIC_PLUGINS = frozenset({"yaml", "ini", "toml", "host_list", "advanced_host_list"})


def _ansible_failure(stderr: str, script: bool, limit: int = 300) -> str:
    """The one line of ansible-inventory's complaints that says what went wrong with the source:
    the script plugin's for a script, the plugin's own for a plugin configuration."""
    text = _ANSI.sub("", stderr)
    reason = None
    for match in re.finditer(r"Failed to parse inventory with '([^']+)' plugin: (.*)", text):
        plugin = match[1].rsplit(".", 1)[-1]
        if (plugin == "script") if script else (plugin not in _STATIC_PLUGINS):
            reason = match[2]
            break
    if reason is not None and "Standard error from inventory script:" in text:
        said = text.split("Standard error from inventory script:", 1)[1].strip().splitlines()
        if said and said[0].strip():
            reason += f" (it said: {said[0].strip()})"
    if reason is None:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln]
        reason = errors[-1] if errors else (lines[-1] if lines else "no message")
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _run_ansible_inventory(path: Path, shown: str, what: str, script: bool) -> tuple[Any, list[str]]:
    exe = ansible_inventory_command()
    if exe is None:
        raise InventoryError(
            f"{shown}: {what}, which only Ansible can read, and ansible-inventory is not installed "
            "(pip install ansible-core)"
        )
    env = ansible_env()
    env.update(ANSIBLE_INVENTORY_UNPARSED_FAILED="True")
    if script:
        # Only the script plugin: otherwise Ansible also tries to read the script as INI and
        # buries the script's own error under that one.
        env.update(ANSIBLE_INVENTORY_ENABLED="script")
    try:
        r = subprocess.run(
            [exe, "-i", str(path), "--list"], capture_output=True, text=True, env=env,
            stdin=subprocess.DEVNULL, timeout=DYNAMIC_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{shown}: ansible-inventory did not answer within {DYNAMIC_TIMEOUT:g} s"
        ) from None
    except OSError as e:
        raise InventoryError(f"{shown}: cannot run {exe}: {e.strerror or e}") from None
    if r.returncode != 0:
        raise InventoryError(
            f"{shown}: ansible-inventory failed (exit {r.returncode}): "
            f"{_ansible_failure(r.stderr, script)}"
        )
    try:
        data = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise InventoryError(f"{shown}: ansible-inventory printed no valid JSON ({e})") from None
    notes = [
        f"{shown}: ansible-inventory: {' '.join(ln.split())}"
        for ln in _ANSI.sub("", r.stderr).splitlines() if "WARNING" in ln
    ]
    return data, notes


def _parse_listing(builder: _Builder, data: Any) -> None:
    """Fill `builder` from `ansible-inventory --list` JSON (hostvars are already merged)."""
    shown = builder.shown

    def bad(what: str) -> InventoryError:
        return InventoryError(f"{shown}: unexpected answer from ansible-inventory: {what}")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    meta = data.get("_meta") or {}
    hostvars = (meta.get("hostvars") or {}) if isinstance(meta, dict) else None
    if not isinstance(hostvars, dict):
        raise bad("_meta.hostvars is not an object")
    builder.group("all", 0)
    order: list[tuple[str, str]] = []  # (group, host) in the order Ansible lists them
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        body = data.get(name) or {}
        if not isinstance(body, dict):
            raise bad(f"group {name!r} is not an object")
        group = builder.group(name, 0)
        vars_ = body.get("vars") or {}
        hosts = body.get("hosts") or []
        children = body.get("children") or []
        if not isinstance(vars_, dict) or not isinstance(hosts, list) or not isinstance(
            children, list
        ):
            raise bad(f"group {name!r} has vars, hosts or children of the wrong type")
        for key, value in vars_.items():
            group.vars.values[str(key)] = value
            group.vars.origins[str(key)] = (shown, 0)
        for host in hosts:
            if not isinstance(host, str):
                raise bad(f"group {name!r} lists a host that is not a name")
            order.append((name, host))
        for child in children:
            if not isinstance(child, str):
                raise bad(f"group {name!r} has a child that is not a name")
            builder.group(child, 0)
            builder.link(name, child, 0)
            walk(child)

    walk("all")
    for name in data:
        if name not in ("_meta", "all") and name not in seen:
            builder.group(name, 0)
            builder.link("all", name, 0)
            walk(name)
    # Hosts in groups in the order listed, then any host only _meta knows (finish() puts those
    # in ungrouped).
    names = [name for _, name in order] + list(hostvars)
    for name in names:
        if name in builder.hosts:
            continue
        problem = check_host_name(name)
        if problem is not None:
            raise InventoryError(f"{shown}: {problem}")
        own = hostvars.get(name) or {}
        if not isinstance(own, dict):
            raise bad(f"the variables of host {name!r} are not an object")
        host = builder.hosts[name] = _HostDef(name, 0)
        for key, value in own.items():
            host.vars.values[str(key)] = value
            host.vars.origins[str(key)] = (shown, 0)
    for group_name, name in order:
        group = builder.groups[group_name]
        if name not in group.hosts:
            group.hosts.append(name)


# --- the inventory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """Hosts in inventory order, and every group's members (descendant groups included)."""

    path: str
    hosts: list[Host]
    groups: dict[str, set[str]]
    warnings: tuple[str, ...] = ()  # one line each, "FILE[:LINE]: ...", for the user to read

    def select(self, limit: str | None = None) -> list[Host]:
        """Hosts an Ansible `--limit` pattern matches, in inventory order; all for no limit."""
        if limit is None or not limit.strip():
            return list(self.hosts)
        selected = self._evaluate(limit)
        if not selected:
            raise InventoryError(f"limit {limit!r} matches no host")
        return [h for h in self.hosts if h.name in selected]

    def unmatched(self, limit: str | None) -> list[str]:
        """Terms of `limit` that match nothing (Ansible ignores them; worth a warning)."""
        if limit is None:
            return []
        return [t for t in split_limit(limit) if not self._match(t.lstrip("&!"))]

    def _evaluate(self, limit: str) -> set[str]:
        terms = split_limit(limit)
        # Ansible's order: every union, then every intersection, then every exclusion.
        unions = [t for t in terms if not t.startswith(("&", "!"))] or ["all"]
        selected: set[str] = set()
        for term in unions:
            selected.update(self._match(term))
        for term in terms:
            if term.startswith("&"):
                selected &= set(self._match(term[1:]))
        for term in terms:
            if term.startswith("!"):
                selected -= set(self._match(term[1:]))
        return selected

    def _match(self, term: str) -> list[str]:
        """Host names one term matches, in inventory order (before any subscript)."""
        if not term:
            return []
        pattern, subscript = _split_subscript(term)
        order = [h.name for h in self.hosts]
        if pattern in self.groups:
            members = self.groups[pattern]
            found = [n for n in order if n in members]
        elif pattern in order:
            found = [pattern]
        else:
            try:
                regex = pattern[1:] if pattern.startswith("~") else fnmatch.translate(pattern)
                rx = re.compile(regex)
            except re.error as e:
                raise InventoryError(f"limit: bad pattern {term!r}: {e}") from None
            names: set[str] = set()
            groups = [g for g in self.groups if rx.match(g)]
            for group in groups:
                names |= self.groups[group]
            # As Ansible: host names are tried when no group matched or the term is a pattern.
            if not groups or pattern.startswith("~") or any(c in pattern for c in ".?*["):
                names |= {n for n in order if rx.match(n)}
            found = [n for n in order if n in names]
        if subscript is None:
            return found
        start, end = subscript
        if end is None:
            return [found[start]] if -len(found) <= start < len(found) else []
        return found[start : (end + 1) if end >= 0 else None]


def split_limit(limit: str) -> list[str]:
    """Split a limit as Ansible does: on commas if any, else on colons outside brackets."""
    limit = limit.strip()
    if "," in limit:
        terms = limit.split(",")
    else:
        try:
            ipaddress.IPv6Address(limit.lstrip("&!"))
            terms = [limit]
        except ValueError:
            terms = re.findall(r"(?:[^\s:\[\]]|\[[^\]]*\])+", limit)
    return [t.strip() for t in terms if t.strip()]


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    """"web[0]" -> ("web", (0, None)); "web[1:3]" -> ("web", (1, 3)), inclusive as in Ansible."""
    if term.startswith("~"):
        return term, None
    match = re.fullmatch(r"(.+)\[(?:(-?\d+)|(\d+):(\d*))\]", term)
    if match is None:
        return term, None
    if match[2] is not None:
        return match[1], (int(match[2]), None)
    return match[1], (int(match[3]), int(match[4]) if match[4] else -1)


# --- variables and Host records -------------------------------------------------------------------


def _var_files(base: Path, kind: str, name: str) -> list[Path]:
    """group_vars/NAME{,.yml,.yaml,.json} files, or every such file under group_vars/NAME/."""
    out: list[Path] = []
    if "/" in name or "\0" in name or name in (".", ".."):
        return out  # a group name, not a path
    for suffix in _VAR_FILE_SUFFIXES:
        path = base / kind / f"{name}{suffix}"
        if path.is_file():
            out.append(path)
        elif suffix == "" and path.is_dir():
            out += [
                sub for sub in sorted(path.rglob("*"))
                if sub.is_file() and not sub.name.startswith(".")
                and sub.suffix in _VAR_FILE_SUFFIXES
            ]
    return out


def _load_var_files(base: Path, kind: str, name: str, warnings: list[str]) -> _Vars:
    out = _Vars()
    for path in _var_files(base, kind, name):
        shown = str(path)
        text = _read_text(path, shown)
        if _is_vault(text):
            # Usually secrets fleetrst does not need: say so and go on.
            warnings.append(f"{shown}: encrypted with ansible-vault; skipped")
            continue
        data = _parse_yaml(text, shown)
        if data is None:
            continue
        if not isinstance(data, _Map):
            raise InventoryError(f"{shown}:1: variables must be a mapping, not {_typename(data)}")
        for key, value in data.items():
            out.values[str(key)] = _plain(value)
            out.origins[str(key)] = (shown, data.key_lines[key])
    return out


def _group_priority(builder: _Builder, group: _Group) -> int:
    value = group.vars.values.get("ansible_group_priority", 1)
    if isinstance(value, bool) or not _DECIMAL.fullmatch(str(value)):
        file, line = group.vars.origins.get("ansible_group_priority", (builder.shown, group.line))
        raise InventoryError(f"{file}:{line}: ansible_group_priority {value!r} is not an integer")
    return int(value)


def _depths(builder: _Builder) -> dict[str, int]:
    """Longest distance from `all`, as Ansible counts a group's depth."""
    depth = {"all": 0}
    pending = ["all"]
    while pending:
        name = pending.pop()
        for child in builder.groups[name].children:
            if depth.get(child, -1) < depth[name] + 1:
                depth[child] = depth[name] + 1
                pending.append(child)
    return depth


_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


# --- variables fleetrst does not know -------------------------------------------------------------

# Settings fleetrst reads: in _make_host and _value_warnings, and the ssh args in
# transport.jump_spec.
_READ_VARS = frozenset({
    "ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
    "ansible_ssh_user", "ansible_ssh_private_key_file", "ansible_private_key_file",
    "ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become",
    "ansible_become_user", "ansible_become_method", "ansible_connection",
    "ansible_host_key_checking", "ansible_ssh_host_key_checking", "ansible_ssh_common_args",
    "ansible_ssh_extra_args", "ansible_group_priority",
})
# Settings of playbooks/capture.yml (roles/fleetrst/defaults/main.yml), often kept in group_vars/
# of the very inventory `fleetrst scan` reads.
_PLAYBOOK_VARS = frozenset({
    "fleetrst_out", "fleetrst_duration", "fleetrst_interfaces", "fleetrst_cap_mb",
    "fleetrst_trace", "fleetrst_remote_tmp", "fleetrst_collect_timeout", "fleetrst_arm_margin",
    "fleetrst_script", "fleetrst_run_id", "fleetrst_namespaces", "fleetrst_max_namespaces",
})
# Ansible's own settings that change nothing in how fleetrst reaches a host or captures on it.
_HARMLESS_VARS = frozenset({
    "ansible_python_interpreter", "ansible_shell_type", "ansible_shell_executable",
    "ansible_pipelining", "ansible_ssh_pipelining", "ansible_ssh_args", "ansible_ssh_executable",
    "ansible_scp_extra_args", "ansible_sftp_extra_args", "ansible_sftp_batch_mode",
    "ansible_scp_if_ssh", "ansible_ssh_transfer_method", "ansible_ssh_retries",
    "ansible_remote_tmp", "ansible_async_dir", "ansible_become_exe", "ansible_become_flags",
    "ansible_sudo_exe", "ansible_sudo_flags", "ansible_network_os", "ansible_module_compression",
})
# Interpreters, and the options of connection plugins other than ssh (their ansible_connection
# gets a warning of its own).
_HARMLESS_PATTERN = re.compile(
    r"ansible_(?:\w+_interpreter|(?:winrm|psrp|docker|kubectl|podman|lxd|httpapi|netconf"
    r"|paramiko)_\w+)"
)
_SUDO_PASSWORD = "fleetrst takes the sudo password from -K or --become-password-file"
# Settings Ansible honours and fleetrst does not: taking them in silence would mislead.
_NOT_USED = {
    "ansible_become_password": _SUDO_PASSWORD,
    "ansible_become_pass": _SUDO_PASSWORD,
    "ansible_sudo_pass": _SUDO_PASSWORD,
    "ansible_sudo_user": "fleetrst reads ansible_become_user",
    "ansible_timeout": "fleetrst has its own connect timeout (10 s)",
    "ansible_ssh_timeout": "fleetrst has its own connect timeout (10 s)",
}
_SSH_CONNECTIONS = frozenset({
    "ssh", "ansible.builtin.ssh", "paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh",
    "smart",
})
_LOCAL_CONNECTIONS = frozenset({"local", "ansible.builtin.local"})
_SUDO_METHODS = frozenset({"sudo", "ansible.builtin.sudo"})
_KNOWN_VARS = sorted(_READ_VARS | _PLAYBOOK_VARS | _HARMLESS_VARS | set(_NOT_USED))
# What a misspelt prefix (ansbile_port) is compared with: only names fleetrst itself cares about.
_TYPO_TARGETS = sorted(_READ_VARS | _PLAYBOOK_VARS | set(_NOT_USED))
_PREFIXES = ("ansible_", "fleetrst_")


def _name_warning(key: str, owner: str) -> str | None:
    """The warning a variable's name deserves (`owner`: "host web01", "group web"), if any.

    Only names that look like settings count; the user's own variables are theirs."""
    if key in _NOT_USED:
        return f"{key} for {owner} is not used: {_NOT_USED[key]}"
    if key in _READ_VARS or key in _PLAYBOOK_VARS or key in _HARMLESS_VARS:
        return None
    if _HARMLESS_PATTERN.fullmatch(key):
        return None
    if key.startswith(_PREFIXES):
        close = difflib.get_close_matches(key, _KNOWN_VARS, n=1, cutoff=0.85)
    else:
        # Ansible_Port, ansbile_port: a misspelt setting only when very close to one.
        close = difflib.get_close_matches(key.lower(), _TYPO_TARGETS, n=1, cutoff=0.9)
        if not close:
            return None
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown variable {key} for {owner}{hint}"


class _Warnings:
    """Warnings about variables: one per variable and place where it is set, however many hosts
    inherit it from there."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.found: dict[tuple[str, _Origin], str] = {}

    def add(self, key: str, origin: _Origin, message: str) -> None:
        file, line = origin
        where = f"{file}:{line}" if line else file
        self.found.setdefault((key, origin), f"{where}: {message}")

    def names(self, vars_: _Vars, owner: str) -> None:
        for key in vars_.values:
            message = _name_warning(key, owner)
            if message is not None:
                self.add(key, vars_.origins.get(key, (self.shown, 0)), message)

    def lines(self) -> list[str]:
        """In file order: the inventory first, then the files beside it."""
        order = sorted(self.found, key=lambda k: (k[1][0] != self.shown, k[1][0], k[1][1]))
        return [self.found[k] for k in order]


class _HostVars:
    """A host's merged variables, read the way connection settings need them."""

    def __init__(self, name: str, merged: _Vars, shown: str, line: int) -> None:
        self.name, self.merged, self.shown, self.line = name, merged, shown, line

    def fail(self, key: str, message: str) -> InventoryError:
        file, line = self.merged.origins.get(key, (self.shown, self.line))
        where = f"{file}:{line}" if line else file
        return InventoryError(f"{where}: host {self.name!r}: {key} {message}")

    def render(self, key: str, value: Any, depth: int = 0) -> Any:
        """Resolve plain `{{ var }}` references; anything richer needs Ansible itself."""
        if isinstance(value, Vaulted):
            raise self.fail(key, "is vault-encrypted, which fleetrst cannot open")
        if not isinstance(value, str) or isinstance(value, _Unsafe) or "{" not in value:
            return value
        if depth > 10:
            raise self.fail(key, "refers to itself through templates")

        def lookup(match: re.Match[str]) -> str:
            ref = match[1]
            if ref == "inventory_hostname":
                return self.name
            if ref == "inventory_hostname_short":
                return self.name.split(".", 1)[0]
            if ref not in self.merged.values:
                raise self.fail(key, f"uses undefined variable {ref!r}")
            resolved = self.render(key, self.merged.values[ref], depth + 1)
            if isinstance(resolved, (dict, list)):
                raise self.fail(key, f"uses {ref!r}, which is not a plain value")
            return str(resolved)

        rendered = _TEMPLATE_VAR.sub(lookup, value)
        if "{{" in rendered or "{%" in rendered:
            raise self.fail(key, f"uses a template fleetrst cannot render: {value!r}")
        return rendered

    def first(self, *keys: str) -> tuple[str, Any] | None:
        for key in keys:
            if key in self.merged.values and self.merged.values[key] is not None:
                return key, self.render(key, self.merged.values[key])
        return None

    def checked(self, key: str) -> Any:
        """A variable fleetrst only checks: None when unset or when it cannot be rendered (that
        is no reason to stop a scan that does not need it)."""
        try:
            found = self.first(key)
        except InventoryError:
            return None
        return None if found is None else found[1]

    def warn(self, found: _Warnings, key: str, message: str) -> None:
        found.add(key, self.merged.origins.get(key, (self.shown, self.line)),
                  f"{key} {message}")

    def text(self, *keys: str) -> str | None:
        found = self.first(*keys)
        if found is None:
            return None
        key, value = found
        if isinstance(value, (dict, list)):
            raise self.fail(key, "must be a plain value")
        return str(value)

    def port(self) -> int:
        found = self.first("ansible_port", "ansible_ssh_port")
        if found is None:
            return 22
        key, value = found
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(key, f"{value!r} is not an integer")
        text = str(value).strip()
        if not _DECIMAL.fullmatch(text):
            raise self.fail(key, f"{value!r} is not an integer")
        if not 1 <= int(text) <= 65535:
            raise self.fail(key, f"{value!r} is not a TCP port (1-65535)")
        return int(text)

    def flag(self, *keys: str) -> bool:
        found = self.first(*keys)
        if found is None:
            return False
        key, value = found
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.fail(key, f"{value!r} is not a boolean")


def _value_warnings(hv: _HostVars, connection: str | None, become: bool,
                    found: _Warnings) -> None:
    """Settings fleetrst reads but whose value it cannot honour."""
    owner = f"for host {hv.name}"
    if connection and connection not in _SSH_CONNECTIONS | _LOCAL_CONNECTIONS:
        hv.warn(found, "ansible_connection",
                f"{connection!r} {owner} is not supported: fleetrst connects over SSH")
    method = hv.checked("ansible_become_method")
    if become and method and str(method) not in _SUDO_METHODS:
        hv.warn(found, "ansible_become_method",
                f"{method!r} {owner} is not supported: fleetrst only uses sudo")
    for key in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
        value = hv.checked(key)
        if value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
            hv.warn(found, key, f"{value!r} {owner} is not used: fleetrst always checks host "
                    "keys (--accept-new-host-keys accepts new ones)")


def _make_host(
    builder: _Builder, host: _HostDef, groups: Iterable[_Group], base: Path,
    depth: dict[str, int], group_files: dict[str, _Vars], host_files: _Vars, found: _Warnings,
) -> Host:
    ordered = sorted(
        groups, key=lambda g: (depth.get(g.name, 0), _group_priority(builder, g), g.name)
    )
    merged = _Vars()
    for group in ordered:
        merged.update(group.vars)
    for group in ordered:
        merged.update(group_files[group.name])
    merged.update(host.vars)
    merged.update(host_files)
    merged.values.pop("ansible_group_priority", None)  # Ansible consumes it; not a host var
    hv = _HostVars(host.name, merged, builder.shown, host.line)
    key_file = hv.text("ansible_ssh_private_key_file", "ansible_private_key_file")
    if key_file:
        # Relative to the inventory, not to wherever fleetrst happens to run.
        key_file = os.path.abspath(os.path.join(base, os.path.expanduser(key_file)))
    become = hv.flag("ansible_become")
    connection = hv.text("ansible_connection")
    _value_warnings(hv, connection, become, found)
    return Host(
        name=host.name,
        address=hv.text("ansible_host", "ansible_ssh_host") or host.name,
        port=hv.port(),
        user=hv.text("ansible_user", "ansible_ssh_user"),
        key_file=key_file,
        password=hv.text("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
        become=become,
        become_user=hv.text("ansible_become_user") or "root",
        connection="local" if connection in _LOCAL_CONNECTIONS else "ssh",
        groups=tuple(sorted(g.name for g in ordered if g.name != "all")),
        vars=dict(merged.values),
    )


def load_inventory(path: str | Path) -> Inventory:
    """Read an Ansible inventory: YAML or INI (plus group_vars/ and host_vars/ beside it), or a
    dynamic source (script or plugin configuration) through `ansible-inventory --list`."""
    shown = str(path)
    path = Path(path)
    if _is_script(path):
        return _load_dynamic(path, shown, "an inventory script", script=True)
    text = _read_text(path, shown)
    if _is_vault(text):
        raise InventoryError(f"{shown}: encrypted with ansible-vault, which fleetrst cannot open")
    builder = _Builder(shown)
    kind, data = _detect(text, shown)
    if kind == "plugin":
        plugin = data["plugin"]
        return _load_dynamic(
            path, shown, f"an inventory plugin configuration ({plugin})", script=False
        )
    if kind == "yaml":
        builder.parse(data)
    else:
        _IniParser(builder).parse(text)
    if not builder.hosts:
        raise InventoryError(f"{shown}: no hosts in the inventory")
    builder.finish()
    return _build_inventory(builder, path.parent, load_files=True)


def _load_dynamic(path: Path, shown: str, what: str, script: bool) -> Inventory:
    data, notes = _run_ansible_inventory(path, shown, what, script)
    builder = _Builder(shown)
    _parse_listing(builder, data)
    if not builder.hosts:
        raise InventoryError(f"{shown}: no hosts in the inventory (as ansible-inventory lists it)")
    builder.finish()
    inventory = _build_inventory(builder, path.parent, load_files=False)
    return Inventory(inventory.path, inventory.hosts, inventory.groups,
                     tuple(notes) + inventory.warnings)


def _build_inventory(builder: _Builder, base: Path, load_files: bool) -> Inventory:
    """Host records from a finished builder; `load_files`: read group_vars/ and host_vars/
    beside the inventory (Ansible has already merged them into a dynamic listing)."""
    shown = builder.shown
    depth = _depths(builder)
    notes: list[str] = []
    group_files = {
        name: _load_var_files(base, "group_vars", name, notes) if load_files else _Vars()
        for name in builder.groups
    }
    host_files = {
        name: _load_var_files(base, "host_vars", name, notes) if load_files else _Vars()
        for name in builder.hosts
    }
    found = _Warnings(shown)
    for group in builder.groups.values():
        found.names(group.vars, f"group {group.name}")
        found.names(group_files[group.name], f"group {group.name}")
    for host in builder.hosts.values():
        found.names(host.vars, f"host {host.name}")
        found.names(host_files[host.name], f"host {host.name}")

    parents_of: dict[str, set[str]] = {}

    def ancestors(name: str) -> set[str]:
        if name not in parents_of:
            parents_of[name] = set()
            for parent in builder.groups[name].parents:
                parents_of[name] |= {parent} | ancestors(parent)
        return parents_of[name]

    member_of: dict[str, set[str]] = {name: {"all"} for name in builder.hosts}
    for group in builder.groups.values():
        for name in group.hosts:
            member_of[name] |= {group.name} | ancestors(group.name)
    hosts = [
        _make_host(
            builder, host, [builder.groups[g] for g in member_of[name]], base, depth, group_files,
            host_files[name], found,
        )
        for name, host in builder.hosts.items()
    ]
    groups: dict[str, set[str]] = {name: set() for name in builder.groups}
    for name, names in member_of.items():
        for group_name in names:
            groups[group_name].add(name)
    return Inventory(shown, hosts, groups, tuple(notes) + tuple(found.lines()))
