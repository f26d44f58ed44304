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
