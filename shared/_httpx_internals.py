"""The one place hookline reaches into httpx's private attributes, and why.

``AsyncClient._cookies``, the client's cookie jar: a webhook sender keeps no cookies
(one receiver's cookies are nobody's business), and httpx has no switch for that:
``cookies=`` only seeds a new jar, and every response goes through the jar's
``extract_cookies``, which builds urllib's request and response wrappers, a visible
share of each request's cost. A jar that extracts nothing, put in the jar's place,
is the cheapest way out. ``tests/shared/test_httpx_internals.py`` fails when an
httpx upgrade moves the jar (the client would then keep cookies and pay for them).

``AsyncHTTPTransport._pool``, the transport's connection pool: httpx builds it with no
way to pass a network backend, and the destination guard must run inside the connect
step (so the socket goes to the address that was checked). :func:`with_pool` puts a
pool built with the guarded backend in its place; the same test module fails when an
upgrade renames the attribute (the transport would then connect unguarded).
"""

from __future__ import annotations

import httpcore
import httpx


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing and parses nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def without_cookie_jar(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with its cookie jar replaced by :class:`NoCookies`."""
    client._cookies = NoCookies()
    return client


def with_pool(
    transport: httpx.AsyncHTTPTransport, pool: httpcore.AsyncConnectionPool
) -> httpx.AsyncHTTPTransport:
    """``transport`` sending through ``pool`` instead of the one it built itself."""
    transport._pool = pool
    return transport
