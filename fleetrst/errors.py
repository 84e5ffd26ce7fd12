"""Typed errors. Library code raises these; only the CLI maps them to exit codes."""

from __future__ import annotations


class FleetrstError(Exception):
    """Root of every error fleetrst raises on purpose."""


class InventoryError(FleetrstError):
    """The inventory cannot be read; the message names the file (and line when known)."""


class HostError(FleetrstError):
    """One host failed; the run goes on without it. The message is one line for the user."""


class PcapError(FleetrstError):
    """A capture file cannot be read at all (a truncated tail is not an error)."""


class LabError(FleetrstError):
    """The namespace test fleet cannot be built or removed."""
