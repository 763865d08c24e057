"""mesh.demo.tcp_echo: Istio's tcp-echo server (samples/tcp-echo/src/main.go) on loopback."""

from __future__ import annotations

import asyncio

from mesh.demo import tcp_echo


def test_each_line_comes_back_with_the_prefix_until_the_client_closes():
    async def scenario() -> list[bytes]:
        (server,) = await tcp_echo.serve([0], "hello", host="127.0.0.1")
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"world\nagain\n")
        got = [await reader.readline(), await reader.readline()]
        writer.write(b"no newline")  # EOF before a newline: dropped, as bufio's ReadBytes error is
        writer.write_eof()
        got.append(await reader.read())
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    assert asyncio.run(scenario()) == [b"hello world\n", b"hello again\n", b""]


def test_the_command_line_is_the_sample_programs(capsys):
    assert tcp_echo.main(["9000"]) == 1  # PORTS and PREFIX, or a usage line
    assert "PORTS" in capsys.readouterr().out
