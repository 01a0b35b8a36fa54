"""The one place hookline reaches into httpx's private attributes, and why.

``AsyncClient._cookies``, the client's cookie jar: a webhook sender keeps no cookies
(one receiver's cookies are nobody's business), and httpx has no switch for that:
``cookies=`` only seeds a new jar, and every response goes through the jar's
``extract_cookies``, which builds urllib's request and response wrappers, a visible
share of each request's cost. A jar that extracts nothing, put in the jar's place,
is the cheapest way out. ``tests/shared/test_httpx_internals.py`` fails when an
httpx upgrade moves the jar (the client would then keep cookies and pay for them).

(``services/delivery/_transport.py`` rebuilds ``AsyncHTTPTransport._pool`` to give
httpx's pool a guarded network backend; that module belongs to the destination
policy's owners, and the same test module guards the attribute.)
"""

from __future__ import annotations

import httpx


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing and parses nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def without_cookie_jar(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with its cookie jar replaced by :class:`NoCookies`."""
    client._cookies = NoCookies()
    return client
