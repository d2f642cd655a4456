// An incremental reader for the JSON that `ip -j` prints: one or more
// top-level arrays, one per command. It hands over each element's text as
// soon as the element is complete. So a caller can parse a table of a
// million routes one route at a time and never keeps the whole output or
// its whole parsed tree.

/** Receives the text of one complete element of the `arrayIndex`-th top-level array. */
export type ElementHandler = (text: string, arrayIndex: number) => void;

/**
 * Splits a stream of JSON arrays into their elements. Elements are only cut
 * out, not parsed: the handler calls JSON.parse on each, which also checks
 * it. Anything between arrays other than whitespace is an error.
 */
export class JsonArraySplitter {
  private arrays = 0;
  /** Bracket depth: 0 between arrays, 1 between elements, deeper inside one. */
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The unfinished element: pieces of earlier chunks, then the current chunk from `start`. */
  private pending: string[] = [];

  constructor(private readonly onElement: ElementHandler) {}

  write(chunk: string): void {
    let start = this.depth > 1 ? 0 : -1;
    for (let index = 0; index < chunk.length; index += 1) {
      const code = chunk.charCodeAt(index);
      if (this.inString) {
        if (this.escaped) {
          this.escaped = false;
        } else if (code === BACKSLASH) {
          this.escaped = true;
        } else if (code === QUOTE) {
          this.inString = false;
        }
        continue;
      }
      if (this.depth === 0) {
        if (code === OPEN_SQUARE) {
          this.depth = 1;
        } else if (!isWhitespace(code)) {
          throw new Error(`invalid JSON from ip: expected "[" between arrays, found ${JSON.stringify(chunk[index])}`);
        }
        continue;
      }
      if (this.depth === 1) {
        if (code === CLOSE_SQUARE) {
          this.depth = 0;
          this.arrays += 1;
          continue;
        }
        if (code === COMMA || isWhitespace(code)) {
          continue;
        }
        // The first character of an element. ip prints objects, and arrays
        // inside them, never bare values at the top level.
        if (code !== OPEN_CURLY && code !== OPEN_SQUARE) {
          throw new Error(`invalid JSON from ip: array elements must be objects or arrays, found ${JSON.stringify(chunk[index])}`);
        }
        start = index;
        this.depth = 2;
        continue;
      }
      if (code === QUOTE) {
        this.inString = true;
      } else if (code === OPEN_CURLY || code === OPEN_SQUARE) {
        this.depth += 1;
      } else if (code === CLOSE_CURLY || code === CLOSE_SQUARE) {
        this.depth -= 1;
        if (this.depth === 1) {
          this.emit(chunk.slice(start, index + 1));
          start = -1;
        }
      }
    }
    if (start >= 0 && this.depth > 1) {
      this.pending.push(chunk.slice(start));
    }
  }

  /** Returns how many arrays were read. Throws when the input stopped inside one. */
  end(): number {
    if (this.depth !== 0 || this.inString) {
      throw new Error("invalid JSON from ip: the output ended inside an array");
    }
    return this.arrays;
  }

  private emit(tail: string): void {
    const text = this.pending.length === 0 ? tail : this.pending.join("") + tail;
    this.pending = [];
    this.onElement(text, this.arrays);
  }
}

const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const COMMA = 0x2c;
const OPEN_SQUARE = 0x5b;
const CLOSE_SQUARE = 0x5d;
const OPEN_CURLY = 0x7b;
const CLOSE_CURLY = 0x7d;

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}
