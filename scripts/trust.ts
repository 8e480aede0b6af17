// `npm run trust -- (--stack NAME | --host HOST [--port N]) [--expect SHA256:... | --yes] [--type ed25519|ecdsa|rsa]`:
// the host keys a server offers, with their fingerprints as `ssh-keygen -lf` prints them, and after
// a confirmation one of them pinned as the stack's vfio-host:hostKey. Nothing logs in: each key is
// read from a key exchange of its own, signed by the server, and the connection closes there.
import * as readline from "node:readline/promises";
import { fingerprintLine, HostKey, hostKeyFile, scanHostKeys } from "../providers/ssh/hostKeys";
import { pinnedHostKey } from "../providers/ssh/connection";
import { CONFIG_NAMESPACE } from "../stacks/config";
import { parseFlags, parsePort, runCommand, usageError as sharedUsageError } from "./cli";
import { pulumiCli, pulumiEnv } from "./pulumiEnv";

export const USAGE = `Usage: npm run trust -- (--stack NAME | --host HOST [--port N]) [options]

Shows the host keys the server offers, with their SHA256 fingerprints as \`ssh-keygen -lf\` prints them,
and pins one as the stack's vfio-host:hostKey. Nothing logs in.

Where to connect (one of):
  --stack NAME        the stack's vfio-host:host and vfio-host:port; the key is written into its config
  --host HOST         with optionally --port (22): shows the keys and the line to pin, writes nothing

Options:
  --expect SHA256:..  pin the key with this fingerprint, read on the host's console
                      (\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`); refuse if the host has none
  --type TYPE         ed25519, ecdsa or rsa: the key to pin (default: the first the host has, in that order)
  --yes               pin without asking (scripts); otherwise a terminal is asked to confirm
`;

const options = {
  stack: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  expect: { type: "string" },
  type: { type: "string" },
  yes: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const KEY_NAMES = { ed25519: "ED25519", ecdsa: "ECDSA", rsa: "RSA" } as const;

export interface TrustArgs {
  readonly target: { kind: "stack"; stack: string } | { kind: "host"; host: string; port: number };
  /** The fingerprint read on the console, padding dropped as OpenSSH prints it. */
  readonly expect?: string;
  readonly type?: keyof typeof KEY_NAMES;
  readonly yes: boolean;
}

const usageError = (message: string) => sharedUsageError(message, USAGE);

/** The command line, checked; "help" for --help. */
export function parseTrustArgs(argv: readonly string[]): TrustArgs | "help" {
  const values = parseFlags(argv, options, USAGE);
  if (values.help) return "help";
  if ((values.stack === undefined) === (values.host === undefined)) throw usageError("Say where to connect: exactly one of --stack NAME or --host HOST");
  if (values.stack !== undefined && values.port !== undefined) throw usageError("--port goes with --host; --stack reads vfio-host:port");
  if (values.expect !== undefined && !/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(values.expect)) {
    throw usageError(`--expect "${values.expect}" is not a fingerprint such as SHA256:pRif6pS47xcrW1dELlEDO8wLobjERTW4sbPFoBCtIvw (ssh-keygen -lf prints them)`);
  }
  if (values.type !== undefined && !(values.type in KEY_NAMES)) throw usageError(`--type "${values.type}" is not one of ed25519, ecdsa, rsa`);
  return {
    target: values.stack !== undefined ? { kind: "stack", stack: values.stack } : { kind: "host", host: values.host!, port: parsePort("--port", values.port) },
    ...(values.expect !== undefined ? { expect: values.expect.replace(/=$/, "") } : {}),
    ...(values.type !== undefined ? { type: values.type as keyof typeof KEY_NAMES } : {}),
    yes: values.yes === true,
  };
}

/** Pure: the key to pin among the host's (in the order scanHostKeys gives them): by --expect, else --type, else the first. */
export function chooseKey(keys: readonly HostKey[], args: Pick<TrustArgs, "expect" | "type">, where: string): HostKey {
  const matching = keys.filter((k) => (args.expect === undefined || k.fingerprint === args.expect) && (args.type === undefined || k.name === KEY_NAMES[args.type]));
  if (matching.length > 0) return matching[0];
  if (args.expect !== undefined) {
    throw new Error(
      `none of the keys ${where} offers has the fingerprint ${args.expect}${args.type ? ` (of type ${args.type})` : ""}; nothing was pinned. ` +
        "Read the fingerprint again on the host's console; if it is right, something else answers at this address",
    );
  }
  throw new Error(`${where} offers no ${args.type} key; nothing was pinned. Pin one of the keys above (--type)`);
}

export interface TrustIo {
  out(text: string): void;
  /** Asks a yes/no question on the terminal; undefined when there is none to ask. */
  confirm?: (question: string) => Promise<boolean>;
  /** Runs the Pulumi CLI in the project, as `npm run pulumi` does, and returns its stdout. */
  pulumi(args: string[]): string;
}

/** The keys trust reads from a stack: where to connect, the pin if any, and the accept-any keys a pin replaces. */
interface StackTrust {
  host: string;
  port: number;
  hostKey?: string;
  acceptAnyKeys: string[];
}

function readStackTrust(io: TrustIo, stack: string): StackTrust {
  const config = JSON.parse(io.pulumi(["config", "--json", "-s", stack])) as Record<string, { value?: string }>;
  const value = (key: string) => config[`${CONFIG_NAMESPACE}:${key}`]?.value;
  const host = value("host");
  if (!host) throw new Error(`stack ${stack} has no ${CONFIG_NAMESPACE}:host; set it first: npm run pulumi -- config set host HOST -s ${stack}`);
  return {
    host,
    port: parsePort(`${CONFIG_NAMESPACE}:port`, value("port")),
    ...(value("hostKey") !== undefined ? { hostKey: value("hostKey") } : {}),
    acceptAnyKeys: ["insecureAcceptAnyHostKey", "insecureTrustOnFirstUse"].filter((key) => value(key) !== undefined),
  };
}

export async function runTrust(args: TrustArgs, io: TrustIo): Promise<void> {
  const stack = args.target.kind === "stack" ? args.target.stack : undefined;
  const trust: StackTrust = stack !== undefined ? readStackTrust(io, stack) : { ...(args.target as { host: string; port: number }), acceptAnyKeys: [] };
  const where = `${trust.host}:${trust.port}`;
  const scan = await scanHostKeys(trust.host, trust.port);
  io.out(`Host keys of ${where} (as \`ssh-keyscan -p ${trust.port} ${trust.host} | ssh-keygen -lf -\` prints them):\n`);
  for (const key of scan.keys) io.out(`  ${fingerprintLine(key, trust.host, trust.port)}\n`);
  if (scan.notRead.length > 0) io.out(`Also offered, not read (no key this project can pin): ${scan.notRead.join(", ")}\n`);

  const pinned = trust.hostKey === undefined ? undefined : pinnedHostKey(trust.hostKey).fingerprint;
  const pinnedKey = scan.keys.find((k) => k.fingerprint === pinned);
  if (pinned !== undefined && pinnedKey === undefined) {
    io.out(
      `The pinned ${CONFIG_NAMESPACE}:hostKey, ${pinned}, is none of these: the host's keys changed (a reinstall?), or something else ` +
        "answers at this address. Check on the host's own console before pinning another.\n",
    );
  }
  const key = chooseKey(scan.keys, args, where);
  if (pinnedKey === key && trust.acceptAnyKeys.length === 0) {
    io.out(`${CONFIG_NAMESPACE}:hostKey of stack ${stack} is already this ${key.name} key (${key.fingerprint}); nothing to change.\n`);
    return;
  }
  if (stack === undefined) {
    io.out(`To pin the ${key.name} key: npm run pulumi -- config set hostKey '${key.line}' -s STACK\n`);
    return;
  }
  const check = `\`ssh-keygen -lf ${hostKeyFile(key)}\` on the host's console must print ${key.fingerprint}`;
  // --expect is that check, made by the user: the fingerprint came from the console, not from this connection.
  if (args.expect === undefined && !args.yes) {
    if (!io.confirm) throw new Error(`not pinning without a confirmation and there is no terminal to ask: check that ${check}, then pass --expect ${key.fingerprint} (or --yes)`);
    if (!(await io.confirm(`Pin the ${key.name} key ${key.fingerprint} as ${CONFIG_NAMESPACE}:hostKey of stack ${stack}? First check that ${check}. [y/N] `))) {
      throw new Error("not pinned; nothing was written");
    }
  }
  io.pulumi(["config", "set", "-s", stack, "--", `${CONFIG_NAMESPACE}:hostKey`, key.line]);
  // A pin makes accepting any key pointless, and its warning would go on every run.
  for (const name of trust.acceptAnyKeys) io.pulumi(["config", "rm", "-s", stack, `${CONFIG_NAMESPACE}:${name}`]);
  io.out(
    `Pinned: ${CONFIG_NAMESPACE}:hostKey of stack ${stack} is the ${key.name} key ${key.fingerprint}` +
      (trust.acceptAnyKeys.length > 0 ? `; removed ${trust.acceptAnyKeys.map((k) => `${CONFIG_NAMESPACE}:${k}`).join(" and ")}` : "") +
      ".\n",
  );
}

/** The Pulumi CLI of `npm run pulumi`, in the current directory (npm runs scripts at the project's root). */
function pulumiHere(): (args: string[]) => string {
  let env: Record<string, string> | undefined;
  return (args) => {
    env ??= pulumiEnv();
    try {
      return pulumiCli(env, args, { cwd: process.cwd() });
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? "").trim();
      throw new Error(`\`pulumi ${args.slice(0, 2).join(" ")} ...\` failed${stderr ? `: ${stderr}` : ""}`, { cause: error });
    }
  };
}

async function askOnTerminal(question: string): Promise<boolean> {
  const terminal = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await terminal.question(question)).trim());
  } finally {
    terminal.close();
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const args = parseTrustArgs(argv);
  if (args === "help") {
    process.stdout.write(USAGE);
    return;
  }
  await runTrust(args, {
    out: (text) => process.stdout.write(text),
    ...(process.stdin.isTTY ? { confirm: askOnTerminal } : {}),
    pulumi: pulumiHere(),
  });
}

if (require.main === module) runCommand("trust", () => main(process.argv.slice(2)));
