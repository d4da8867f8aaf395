"""The one exception type users see: its message becomes the CLI's `bitlens: error:` line."""


class BitlensError(Exception):
    """Bad input or an undecodable file; the message is one sentence for the user."""
