"""A TLS terminator in front of a plain-TCP Kafka broker, as a load balancer or a broker's
TLS listener would be: clients speak TLS to LISTEN_PORT, bytes go on to BROKER_PORT.

Tansu 0.6.0's own TLS listener (--cert/--key) never completes a handshake, so the tests put
this in front of it (the broker advertises the proxy's address). Python standard library only.

usage: python3 tls_proxy.py CERT KEY LISTEN_PORT BROKER_PORT
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(cert, key, listen_port, broker_port):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def client(reader, writer):
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", broker_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, broker_writer), pipe(broker_reader, writer))

    server = await asyncio.start_server(client, "127.0.0.1", listen_port, ssl=context)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    cert, key, listen_port, broker_port = sys.argv[1:5]
    asyncio.run(main(cert, key, int(listen_port), int(broker_port)))
