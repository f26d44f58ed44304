// V8 optimizes a function after it has run a budget of bytecode a few times over. A
// stub's hot path is short code run once per packet, so under the default budget
// (66 KB) it runs interpreted for thousands of packets: on the simulator a `stepi`
// took 1.1 ms for the first thousand and 0.63 ms after four thousand. A sixteenth of
// the budget gets the stop path optimized within the first few hundred stops; what it
// costs is a little more compiling early, on V8's background threads.
import v8 from 'v8';

const BUDGET = 4096;
let tuned = false;

/**
 * Once per process, before serving. GDBSX_V8_DEFAULT_TIERING=1 keeps V8's defaults
 * (for comparing the two in the benchmark).
 */
export function tuneForServing(): void {
  if (tuned) return;
  tuned = true;
  if (process.env.GDBSX_V8_DEFAULT_TIERING === '1') return;
  v8.setFlagsFromString(`--interrupt-budget=${BUDGET}`);
}
