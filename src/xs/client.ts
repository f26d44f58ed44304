// The xenstore requests we make (read-only: XS_READ, XS_DIRECTORY, XS_GET_DOMAIN_PATH),
// encoded by wire.ts and carried by any XsTransport, real or simulated.
import { XsError, XsMessage, XsType, errorCode, payloadStrings, requestPayload, xsTypeName } from './wire';
import type { XsTransport } from './transport';

export class XsClient {
  private nextReq = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly transport: XsTransport) {}

  /** One request, outside any transaction; requests are sent one after another. */
  private request(type: number, path: string, payload: Buffer): Promise<XsMessage> {
    const run = async (): Promise<XsMessage> => {
      const req: XsMessage = { type, reqId: this.nextReq++, txId: 0, payload };
      const rep = await this.transport.roundTrip(req);
      if (rep.type === XsType.error) throw new XsError(xsTypeName(type), path, errorCode(rep));
      if (rep.type !== type) throw new XsError(xsTypeName(type), path, `a reply of type ${xsTypeName(rep.type)}`);
      return rep;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** The value at `path`, or undefined where there is none (ENOENT). */
  async read(path: string): Promise<string | undefined> {
    try {
      return (await this.request(XsType.read, path, requestPayload(path))).payload.toString('utf8');
    } catch (e) {
      if (e instanceof XsError && e.code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** The children of `path` ([] where it does not exist). */
  async directory(path: string): Promise<string[]> {
    try {
      const p = (await this.request(XsType.directory, path, requestPayload(path))).payload;
      return p.length ? payloadStrings(p) : [];
    } catch (e) {
      if (e instanceof XsError && e.code === 'ENOENT') return [];
      throw e;
    }
  }

  /** XS_GET_DOMAIN_PATH: "/local/domain/<domid>". */
  async getDomainPath(domid: number): Promise<string> {
    const p = (await this.request(XsType.getDomainPath, String(domid), requestPayload(String(domid)))).payload;
    return payloadStrings(p)[0] ?? '';
  }

  close(): void {
    this.transport.close();
  }
}
