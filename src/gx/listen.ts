// The TCP listening both servers share (gdbsx -a's one domain, gdbsx serve's many):
// bind, report the port, and log later server errors instead of throwing them.
import net from 'net';
import { defaultPollUs, ReplyPoll } from './replyPoll';

/** Where a server listens, and how its connections wait for packets. */
export interface ListenOptions {
  host: string;
  port: number;
  /** µs to poll for a client's next packet after each reply (replyPoll.ts); 0: never; default: defaultPollUs(). */
  pollUs?: number;
}

/** A new connection's reply poller, for a window of `pollUs` (undefined: the default). */
export function replyPollFor(pollUs: number | undefined): ReplyPoll | undefined {
  const us = pollUs ?? defaultPollUs();
  return us > 0 ? new ReplyPoll(us) : undefined;
}

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
