// What the project's own commands (discover, trust) share: strict flags whose every error shows the
// usage, the checked --port, and the exit on an error with the command's name in front.
import { parseArgs, ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** An error that shows the command's usage under the message. */
export const usageError = (message: string, usage: string) => new Error(`${message}\n\n${usage}`);

/** util.parseArgs, strict and without positionals; an unknown or malformed flag is reported with the usage. */
export function parseFlags<O extends Options>(argv: readonly string[], options: O, usage: string) {
  try {
    return parseArgs({ args: [...argv], options, strict: true as const, allowPositionals: false as const }).values;
  } catch (error) {
    throw usageError((error as Error).message, usage);
  }
}

/** A port given as text (a --port flag, a stack's vfio-host:port): 1 to 65535, 22 when not given. */
export function parsePort(what: string, text: string | undefined): number {
  if (text === undefined) return 22;
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(value >= 1 && value <= 65535)) throw new Error(`${what} "${text}" is not a port number from 1 to 65535`);
  return value;
}

/** Runs a command's main when the file is run as a script: its error on stderr after its name, exit code 1. */
export function runCommand(name: string, main: () => Promise<void>): void {
  main().catch((error: Error) => {
    process.stderr.write(`${name}: ${error.message}\n`);
    process.exitCode = 1;
  });
}
