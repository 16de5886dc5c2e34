"""What a failed connection to a database server means, read from the driver's message, and
the fix to print with it (shared by every command that opens a database and by ``aup setup``).
"""

from __future__ import annotations

#: Driver messages that mean the server was never reached.
NO_ANSWER = ("connection refused", "timeout expired", "timed out", "could not translate host",
             "name or service not known", "nodename nor servname", "no route to host",
             "network is unreachable", "no such file or directory", "can't connect",
             "could not connect", "unknown host")
#: Driver messages that mean the server refused the user name or password.
LOGIN_REFUSED = ("password authentication failed", "no password supplied",
                 "authentication failed", "access denied for user", "pg_hba.conf")


def connect_reason(first: str) -> str:
    """What a failed connection means, from the first line of the driver's message, with the
    fix (a wrong password is "refused the login", not "does not answer": the server answered).

    Args:
        first: the first line of the driver's error message.

    Returns:
        One sentence for the user, ending with ``Fix: ...`` when the cause is recognized.
    """
    low = first.lower()
    if any(m in low for m in LOGIN_REFUSED):
        return (f"the server refused the login: {first}. Fix: check the user name and password "
                "in the URL")
    if any(m in low for m in NO_ANSWER):
        return (f"the database does not answer: {first}. Fix: check the host and port, and that "
                "the server is running")
    if "does not exist" in low and "database" in low:
        return (f"the server refused the connection: {first}. Fix: check the database name "
                "in the URL, or create that database first (e.g. createdb NAME, as a user "
                "allowed to)")
    return f"the server refused the connection: {first}"
