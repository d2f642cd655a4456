// Reading the JSON arrays that `ip -j` prints, one element at a time.

import { CommandError } from "../errors.js";
import type { CommandResult, System } from "../system/system.js";
import { JsonArraySplitter } from "../system/json-arrays.js";

/** The outcome of streamJsonArrays. */
export interface StreamedArrays {
  result: CommandResult;
  /** Number of complete top-level arrays read. */
  arrays: number;
  /** The first error of the JSON or of the element handler, if any. */
  failure?: unknown;
}

/**
 * Runs `argv` with `input` on stdin and passes each element of each JSON
 * array it prints to `onElement`, parsed, with the index of its array, while
 * the command still runs. Parsing element by element keeps memory to about
 * what the caller keeps: reading main of 100,000 routes whole held ip's
 * 11 MB of JSON and its parsed tree, about 40 MB more, on top of the routes.
 * Returns the command's and the JSON's errors instead of throwing them.
 */
export async function streamJsonArrays(
  system: System,
  argv: readonly string[],
  input: string | undefined,
  onElement: (element: unknown, arrayIndex: number) => void,
): Promise<StreamedArrays> {
  let failure: unknown;
  const splitter = new JsonArraySplitter((text, arrayIndex) => onElement(JSON.parse(text), arrayIndex));
  // An error thrown here would escape from the stream's event handler, so
  // the first one is kept and the rest of the output is ignored.
  const onData = (chunk: string) => {
    if (failure !== undefined) {
      return;
    }
    try {
      splitter.write(chunk);
    } catch (error) {
      failure = error;
    }
  };

  let result: CommandResult;
  if (system.stream === undefined) {
    result = await system.run(argv, input);
    onData(result.stdout);
  } else {
    result = await system.stream(argv, onData, input);
  }
  if (failure === undefined) {
    try {
      return { result, arrays: splitter.end() };
    } catch (error) {
      failure = error;
    }
  }
  return { result, arrays: 0, failure };
}

/**
 * Runs `argv`, an `ip -j route show` command, and passes each printed route
 * to `onEntry` as a parsed JSON value with its index. A table that has never
 * held a route makes ip fail with "FIB table does not exist", which reads
 * as an empty table. Throws CommandError when ip fails otherwise, and the
 * error of `onEntry` or of the JSON when ip succeeded.
 */
export async function readRouteEntries(system: System, argv: readonly string[], onEntry: (entry: unknown, index: number) => void): Promise<void> {
  let count = 0;
  const { result, arrays, failure } = await streamJsonArrays(system, argv, undefined, (entry) => {
    onEntry(entry, count);
    count += 1;
  });
  if (result.exitCode !== 0 && /FIB table does not exist/.test(result.stderr)) {
    return;
  }
  if (result.exitCode !== 0) {
    throw new CommandError(argv, result.exitCode, result.stderr);
  }
  if (failure !== undefined) {
    throw failure;
  }
  // An empty output, which some test fakes print for an empty table, reads
  // as no routes.
  if (arrays > 1) {
    throw new Error(`invalid JSON from ${argv.join(" ")}: expected one array of routes`);
  }
}
