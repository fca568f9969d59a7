"""The one exception type users see: its message is a single line that names the problem and the fix."""


class ElasticCodeError(Exception):
    """An error meant for the user: the CLI prints it as one line, a magic raises it as UsageError."""


class NotFound(ElasticCodeError):
    """A named object (processor, socket, queue, ...) does not exist."""


class AlreadyExists(ElasticCodeError):
    """An object with that name already exists for this owner."""


class ServiceUnavailable(ElasticCodeError):
    """A service (database, broker, embedded stack) cannot be reached or started."""
