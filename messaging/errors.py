"""Domain errors of the messaging app."""

from programs.errors import BatonError


class MessagingError(BatonError):
    """Base class of messaging errors."""


class TemplateNotFound(MessagingError):
    """No published template for the program, key, channel and locale."""


class MessageNotFound(MessagingError):
    """No such message for this connector's organization."""


class ConnectorNotFound(MessagingError):
    """No such enabled connector."""
