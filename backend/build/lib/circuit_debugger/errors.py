"""Errors that describe bad input. The server turns them into 4xx responses."""


class UserError(ValueError):
    """A request the engine cannot honour because of what the caller asked for.

    `status` is the HTTP status a server should answer with (422 unless said otherwise).
    """

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(UserError):
    def __init__(self, message: str):
        super().__init__(message, status=404)
