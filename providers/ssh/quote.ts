// The one place where shell command lines are built. Every argument is single-quoted as bytes,
// so nothing a user writes (paths, names, ids) is ever interpreted by the remote shell.
// POSIX sh: inside '...' every byte is literal except ' itself, written as '\''.

export type ShellArg = string | Uint8Array;

const SINGLE_QUOTE = 0x27;
const QUOTE_ESCAPE = Buffer.from("'\\''");

/** Quotes one argument for /bin/sh. Throws on a NUL byte: no POSIX argv can carry one. */
export function shellQuote(arg: ShellArg): Buffer {
  const bytes = typeof arg === "string" ? Buffer.from(arg, "utf8") : Buffer.from(arg);
  if (bytes.includes(0)) {
    throw new Error("A shell argument cannot contain a NUL byte");
  }
  const parts: Buffer[] = [Buffer.from("'")];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === SINGLE_QUOTE) {
      parts.push(bytes.subarray(start, i), QUOTE_ESCAPE);
      start = i + 1;
    }
  }
  parts.push(bytes.subarray(start), Buffer.from("'"));
  return Buffer.concat(parts);
}

/** A command line for /bin/sh that runs `argv` exactly, word for word. */
export function shellCommand(argv: readonly ShellArg[]): Buffer {
  if (argv.length === 0) {
    throw new Error("A command needs at least one word");
  }
  return Buffer.concat(argv.flatMap((arg, i) => (i === 0 ? [shellQuote(arg)] : [Buffer.from(" "), shellQuote(arg)])));
}

/** A readable rendering of a command for logs and error messages (never executed). */
export function describeCommand(argv: readonly ShellArg[]): string {
  return argv
    .map((arg) => {
      const text = typeof arg === "string" ? arg : Buffer.from(arg).toString("utf8");
      return /^[A-Za-z0-9_./:=,@+-]+$/.test(text) ? text : shellQuote(text).toString("utf8");
    })
    .join(" ");
}
