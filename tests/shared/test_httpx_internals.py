"""What ``shared._httpx_internals`` assumes of httpx; these fail when an upgrade breaks it."""

from __future__ import annotations

import httpcore
import httpx

from shared._httpx_internals import NoCookies, with_pool, without_cookie_jar


class _CountingJar(NoCookies):
    def __init__(self) -> None:
        super().__init__()
        self.extracted = 0

    def extract_cookies(self, response: httpx.Response) -> None:
        self.extracted += 1


def _sets_a_cookie(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"}, text="ok")


async def test_the_client_reads_its_jar_from_the_attribute_that_is_replaced() -> None:
    """If httpx stops reading ``_cookies`` on each response, the replaced jar is never
    asked, the client keeps cookies again, and this fails."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(_sets_a_cookie))
    jar = _CountingJar()
    client._cookies = jar  # the very assignment without_cookie_jar makes
    async with client:
        for _ in range(3):
            response = await client.post("http://receiver.test/hook", content=b"{}")
            assert response.status_code == 200
    assert jar.extracted == 3
    assert client.cookies is jar and not list(jar.jar)


async def test_a_client_without_a_jar_keeps_no_cookie() -> None:
    client = without_cookie_jar(httpx.AsyncClient(transport=httpx.MockTransport(_sets_a_cookie)))
    async with client:
        await client.post("http://receiver.test/hook", content=b"{}")
        await client.post("http://receiver.test/hook", content=b"{}")
    assert isinstance(client.cookies, NoCookies) and not list(client.cookies.jar)


async def test_a_transport_given_a_pool_sends_through_it() -> None:
    """The guarded transport gives httpx's transport a pool with a guarded network
    backend; if httpx moves the attribute, requests would bypass the guard."""
    transport = httpx.AsyncHTTPTransport()
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
    used: list[str] = []

    class Recording(httpcore.AsyncConnectionPool):
        async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
            used.append(request.url.host.decode())
            return httpcore.Response(204)

    with_pool(transport, Recording())
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.post("http://receiver.test/hook")).status_code == 204
    assert used == ["receiver.test"]
