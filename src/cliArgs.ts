// What every `gdbsx <subcommand>` parser shares: unknown options refused, -h/--help, no
// --version of its own, and a mistake reported as one line (a UserError the caller prints).
import type { Argv } from 'yargs';
import { UserError } from './xg/errors';

export function subcommandParser<T>(y: Argv<T>): Argv<T> {
  return y
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version(false)
    .fail((msg, err) => {
      // One line: yargs puts "Invalid values:" and the details on separate lines.
      throw new UserError((err ? err.message : msg).replace(/\s*\n\s*/g, ' '));
    });
}

/** `--poll-us`, as both servers take it (src/gx/replyPoll.ts). */
export const POLL_US_OPTION = {
  type: 'string',
  describe: 'µs to keep polling for gdb\'s next packet after each reply (0: never); '
    + 'default 300 with 2 or more CPUs, else 0. A local gdb\'s round trips then skip a wakeup, for up to that much CPU per burst of packets',
} as const;

/** Upper bound for --poll-us: past a few ms, polling only burns CPU. */
const MAX_POLL_US = 100_000;

/** The --poll-us value: µs, or undefined for the default. */
export function parsePollUs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const us = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(us >= 0 && us <= MAX_POLL_US)) throw new UserError(`invalid --poll-us '${text}': give microseconds, 0 (never) to ${MAX_POLL_US}`);
  return us;
}
