"""Errors shared by every world.

``InputError`` carries the one line a user sees for bad input (field, value, what is
allowed); the CLI prints it and exits with status 2.  The other exceptions are what a port
operation raises when the component behind it is down, so the shared flow can react to
them the same way in the SimPy world and against real services.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """Escape line breaks, so user-supplied text cannot split an error over several lines."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class InputError(ValueError):
    """Bad user input: one line naming the field, the value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(one_line(f"{field}: got {value!r}; allowed: {allowed}"))


class ServiceDown(RuntimeError):
    """The component behind a port is not reachable (crashed, restarting, cut off)."""

    def __init__(self, component: str, detail: str = ""):
        # args stay (component, detail) so a re-raise that rebuilds the exception from its
        # args (SimPy does) gives the same message, not "x is down is down"
        self.component, self.detail = component, detail
        super().__init__(component, detail)

    def __str__(self) -> str:
        return f"{self.component} is down" + (f" ({self.detail})" if self.detail else "")


class ChannelClosed(ServiceDown):
    """An AMQP channel or connection closed under the caller (broker restart, consumer crash)."""


class Crashed(BaseException):
    """Thrown into a process to stop it dead, like ``kill -9``.

    A ``BaseException`` so that ``except Exception`` in a flow step does not swallow it.
    """


class UsageError(InputError):
    """A command line that does not parse (unknown option, missing scenario)."""

    def __init__(self, message: str):
        self.field, self.value, self.allowed = "command line", None, message
        ValueError.__init__(self, one_line(message))
