"""Errors of the protocol core, named for whose fault they are."""

from __future__ import annotations


class ProtocolError(Exception):
    """A datagram from the network is malformed or not allowed (the remote side's fault).

    Raised only inside the decoding boundary; callers count it and drop the datagram.
    """


class MessageTooLarge(ValueError):
    """The local program asked to send a message that cannot be sent that way (our fault)."""


class NotConnected(RuntimeError):
    """The local program called a method that needs a session, or a peer that is not there."""
