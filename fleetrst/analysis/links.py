"""Cross-host links: when the peer of a reset is another host of the same run, say so on both sides."""

from __future__ import annotations

import ipaddress
from typing import Any


def _addr_of(peer: str) -> str:
    """'198.18.0.7', '198.18.0.7:80', '198.18.0.7:*' or '[::1]:80' -> the address."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    return peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer


def _port_of(endpoint: str) -> int | None:
    port = endpoint.rsplit(":", 1)[-1] if ":" in endpoint else ""
    return int(port) if port.isdigit() else None


def _say(f: dict[str, Any], *sentences: str) -> None:
    """Add sentences to a finding's summary."""
    text = f["summary"].rstrip()
    f["summary"] = " ".join([text if text.endswith(".") else text + ".", *sentences])


def host_addresses(hosts: list[dict[str, Any]]) -> dict[str, str]:
    """Every non-loopback address of the run's hosts -> the host's name."""
    by_addr: dict[str, str] = {}
    for h in hosts:
        for i in (h.get("facts") or {}).get("interfaces", []):
            for a in i.get("addresses", []):
                try:
                    ip = ipaddress.ip_address(a)
                except ValueError:
                    continue
                if not (ip.is_loopback or ip.is_link_local):
                    by_addr[a] = h["name"]
        addr = h.get("address") or ""
        try:
            ipaddress.ip_address(addr)
            by_addr.setdefault(addr, h["name"])
        except ValueError:
            pass
    return by_addr


def _peer_hosts(h: dict[str, Any], f: dict[str, Any], by_addr: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for peer in f.get("peers", []):
        addr = _addr_of(peer)
        other = by_addr.get(addr)
        if other and other != h["name"] and (addr, other) not in out:
            out.append((addr, other))
    return out


def link_hosts(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark each finding whose peer is another host of the run (peer_host, and a sentence in its
    summary, on both sides), and return the run's links: who resets whom."""
    by_addr = host_addresses(hosts)
    by_name = {h["name"]: h for h in hosts}
    pairs: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for h in hosts:
        for f in h.get("findings", []):
            found = _peer_hosts(h, f, by_addr)
            if not found:
                continue
            f["peer_host"] = found[0][1]
            if len(found) > 1:
                f["peer_hosts"] = [name for _, name in found]
            _say(f, *(f"{addr} is {name} of this run." for addr, name in found[:3]))
            for _, other in found:
                # Links point from the host that sent the resets to the one that got them.
                key = (other, h["name"]) if f["kind"].startswith("received_") else (h["name"], other)
                pairs.setdefault(key, []).append((h, f))
    links = []
    for (sender, receiver), items in pairs.items():
        sent = [f for h, f in items if h["name"] == sender]
        got = [f for h, f in items if h["name"] == receiver]
        for f in sent:
            link = {"from": sender, "to": receiver, "kind": f["kind"], "count": f["count"],
                    "port": _port_of(f["local"])}
            if f.get("ports"):
                link["ports"] = f["ports"]
            links.append(link)
            # The sender's finding names the process behind the peer's connections, when the
            # peer's own trace or sockets saw it.
            for g in got:
                if g.get("process") and not f.get("peer_process"):
                    f["peer_process"] = {"host": receiver, **g["process"]}
                    _say(f, f"On {receiver}, {g['process']['name']} made these connections."
                         if g["kind"] == "received_refused" else
                         f"On {receiver}, the connections belong to {g['process']['name']}.")
        if not sent:
            # Only the receiving side saw them (the sender was not captured, say).
            for f in got:
                links.append({"from": sender, "to": receiver, "kind": f["kind"], "count": f["count"],
                              "port": _port_of(f["peers"][0]) if f.get("peers") else None,
                              "seen_by": receiver})
        for f in got:
            if sender in by_name:
                f["next_step"] = (f"Look at {sender} ({_addr_of(f['peers'][0]) if f.get('peers') else ''}), "
                                  "a host of this run: its page explains why.")
    return links
