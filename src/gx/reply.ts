// What a packet handler gets and gives back: a leaf the session and the handlers both
// import, so neither needs the other at run time.

/** Largest packet we accept (advertised as PacketSize): gdb then reads 2 MiB per `m`. */
export const PACKET_SIZE = 0x400000;

/** A reply already framed ($payload#cs), sent as it is. */
export class Framed {
  constructor(readonly bytes: Buffer) {}
}

export type Reply = string | Buffer | Framed | null;

export interface Packet {
  /** The payload as latin1 text (command letters, hex). */
  text: string;
  /** The raw payload (for binary X data). */
  raw: Buffer;
}
