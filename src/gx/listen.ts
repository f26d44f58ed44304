// The TCP listening both servers share (gdbsx -a's one domain, gdbsx serve's many):
// bind, report the port, and log later server errors instead of throwing them.
import net from 'net';

/** Listens on host:port; resolves with the server once bound (a bind error rejects). */
export function listenTcp(port: number, host: string | undefined, onConnection: (sock: net.Socket) => void, onEvent: (message: string) => void): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer(onConnection);
    srv.once('error', reject);
    srv.listen(port, host, () => {
      srv.off('error', reject);
      srv.on('error', (e) => onEvent(`server error: ${e.message}`));
      resolve(srv);
    });
  });
}

/** The address and port a server actually listens on (a host name resolves to one address). */
export function boundAddress(srv: net.Server | undefined): net.AddressInfo | undefined {
  const a = srv?.address();
  return a && typeof a === 'object' ? a : undefined;
}
