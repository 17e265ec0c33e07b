"""asyncio peers for concur-bench W6/W7: an echo server and an HTTP hello-world server
written with asyncio Protocols (the fastest pure-asyncio style), one thread.

    python3 py_asyncio.py echo|http PORT
Prints "ready" once listening; runs until killed."""
import asyncio
import sys

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
            b"Hello, World!")


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(RESPONSE * n)


async def main(kind, port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo if kind == "echo" else Http, "127.0.0.1", port,
                                      backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
