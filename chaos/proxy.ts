/**
 * A TCP proxy in front of anvil that the payrail processes use as ETH_RPC_URL. `down()` makes it refuse service:
 * open connections are cut and new ones are closed at once (the RPC "fails" for payrail); `up()` restores it.
 * The simulator and the checks talk to anvil directly.
 */
import net from 'node:net';

export interface RpcProxy {
  readonly url: string;
  down(): void;
  up(): void;
  stop(): Promise<void>;
}

export async function startRpcProxy(target: { host: string; port: number }): Promise<RpcProxy> {
  let isDown = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    down() {
      isDown = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    up() {
      isDown = false;
    },
    stop() {
      isDown = true;
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
