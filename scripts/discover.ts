// `npm run discover -- --stack NAME | --lab | --host H --key FILE --host-key KEY [--group N] [--json]`:
// what a host can pass through, before writing its stack: the IOMMU groups, the USB buses, and the
// config that selects a group. Reads only; nothing on the host changes.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { discoverHost } from "../providers/discovery/discoverHost";
import { renderGroupConfig, renderIommuGroups, renderUsbTable, suggestedGroup } from "../providers/discovery/render";
import { HostDiscovery } from "../providers/discovery/inventory";
import { ConnectionInput } from "../providers/ssh/connection";
import { closeAllConnections } from "../providers/ssh/host";
import { parseConnectionConfig } from "../stacks/config";
import { parseFlags, parsePort, runCommand, usageError as sharedUsageError } from "./cli";
import { readLabState } from "./lab/labState";

export const USAGE = `Usage: npm run discover -- (--stack NAME | --lab | --host HOST (--key FILE | --agent) --host-key KEY) [options]

Where to connect (one of):
  --stack NAME          the stack's connection keys (host, port, user, hostKey, sshPrivateKey, sshAgent...,
                        read with \`npm run pulumi -- config --show-secrets --json -s NAME\`)
  --lab                 the lab VM, from ~/.cache/vfio-host/lab-state/lab.json (\`npm run lab -- up\`)
  --host HOST           with --key FILE (a private key without passphrase) or --agent (the keys of the
                        ssh-agent at SSH_AUTH_SOCK, e.g. a key with a passphrase after \`ssh-add\`),
                        --host-key "ssh-ed25519 AAAA..." or SHA256:... (\`npm run trust -- --host HOST\` lists the
                        host's keys; check the one you pin on its console),
                        and optionally --port (22), --user (root)

Options:
  --group N             print the stack config for IOMMU group N (default: the first group of USB controllers)
  --json                print the discovery as JSON instead of the tables
  --insecure-accept-any-host-key  accept whatever host key the server shows (no --host-key): anyone in
                                  between can answer in the host's place
`;

const options = {
  stack: { type: "string" },
  lab: { type: "boolean" },
  host: { type: "string" },
  port: { type: "string" },
  user: { type: "string" },
  key: { type: "string" },
  agent: { type: "boolean" },
  "host-key": { type: "string" },
  "insecure-accept-any-host-key": { type: "boolean" },
  /** The former name: refused with the new one, so a script learns it accepted any key every time. */
  "insecure-trust-on-first-use": { type: "boolean" },
  group: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export type Target = { kind: "stack"; stack: string } | { kind: "lab" } | { kind: "flags"; connection: ConnectionInput; keyFile?: string };

export interface DiscoverArgs {
  readonly target: Target;
  readonly group?: number;
  readonly json: boolean;
}

const usageError = (message: string) => sharedUsageError(message, USAGE);

function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw usageError(`${flag} "${value}" is not a whole number`);
  return Number(value);
}

/** The command line, checked; "help" for --help. The key file is read later, by connectionFor. */
export function parseDiscoverArgs(argv: readonly string[]): DiscoverArgs | "help" {
  const values = parseFlags(argv, options, USAGE);
  if (values.help) return "help";
  if (values["insecure-trust-on-first-use"] !== undefined) {
    throw usageError(
      "--insecure-trust-on-first-use is now --insecure-accept-any-host-key (it accepted any key on every connection); " +
        "better, pin the key: `npm run trust -- --host HOST` lists them, then --host-key",
    );
  }
  const chosen = [values.stack !== undefined, values.lab === true, values.host !== undefined].filter(Boolean).length;
  if (chosen !== 1) throw usageError("Say where to connect: exactly one of --stack NAME, --lab or --host HOST");
  const hostOnly = (["port", "user", "key", "agent", "host-key", "insecure-accept-any-host-key"] as const).filter((flag) => values[flag] !== undefined);
  if (values.host === undefined && hostOnly.length > 0) {
    throw usageError(`--${hostOnly[0]} goes with --host; --stack and --lab bring their own connection`);
  }
  let target: Target;
  if (values.stack !== undefined) target = { kind: "stack", stack: values.stack };
  else if (values.lab) target = { kind: "lab" };
  else {
    if (values.key === undefined && !values.agent) {
      throw usageError("--host needs --key FILE, the SSH private key to log in with, or --agent to use your ssh-agent's keys");
    }
    target = {
      kind: "flags",
      ...(values.key !== undefined ? { keyFile: values.key } : {}),
      connection: {
        host: values.host as string,
        port: parsePort("--port", values.port),
        user: values.user ?? "root",
        ...(values.agent ? { agent: true } : {}),
        ...(values["host-key"] !== undefined ? { hostKey: values["host-key"] } : {}),
        ...(values["insecure-accept-any-host-key"] ? { insecureAcceptAnyHostKey: true } : {}),
      },
    };
  }
  const group = wholeNumber("--group", values.group);
  return { target, ...(group !== undefined ? { group } : {}), json: values.json === true };
}

/** `pulumi config --json`: every value is a string (secrets in clear with --show-secrets). */
const StackConfigJson = z.record(z.string(), z.object({ value: z.string().optional(), secret: z.boolean().optional() }));

/** The connection a stack's config describes, checked by the schema the stack's program uses (stacks/config.ts). */
export function connectionFromStackConfig(json: unknown, stack: string): ConnectionInput {
  const config = StackConfigJson.parse(json);
  const values = Object.fromEntries(Object.entries(config).flatMap(([key, entry]) => (entry.value === undefined ? [] : [[key, entry.value]])));
  const secrets = new Set(Object.keys(config).filter((key) => config[key].secret === true));
  try {
    return parseConnectionConfig(values, secrets);
  } catch (error) {
    throw new Error(`stack ${stack}: ${(error as Error).message}\n(set a key with \`npm run pulumi -- config set KEY VALUE -s ${stack}\`)`, { cause: error });
  }
}

async function connectionFor(target: Target): Promise<ConnectionInput> {
  switch (target.kind) {
    case "lab": {
      const lab = readLabState();
      return { host: lab.host, port: lab.port, user: lab.user, hostKey: lab.hostKey, privateKey: readFileSync(lab.privateKeyPath, "utf8") };
    }
    case "flags":
      return { ...target.connection, ...(target.keyFile !== undefined ? { privateKey: readFileSync(target.keyFile, "utf8") } : {}) };
    case "stack": {
      // The project's wrapper gives the CLI its backend and passphrase (scripts/pulumi-env.sh).
      const root = path.resolve(__dirname, "../..");
      let stdout: string;
      try {
        stdout = execFileSync("bash", [path.join(root, "scripts/pulumi.sh"), "config", "--show-secrets", "--json", "-s", target.stack], {
          cwd: root,
          encoding: "utf8",
          stdio: ["ignore", "pipe", "inherit"],
          maxBuffer: 16 << 20,
        });
      } catch {
        throw new Error(
          `could not read the config of stack ${target.stack} (\`npm run pulumi -- config --show-secrets --json -s ${target.stack}\` failed, ` +
            "its error is above); `npm run pulumi -- stack ls` lists the stacks",
        );
      }
      return connectionFromStackConfig(JSON.parse(stdout), target.stack);
    }
  }
}

/** The two tables, the notes, and the config for `group` (or the suggested one). */
export function renderReport(discovery: HostDiscovery, group?: number): string {
  const parts = [`IOMMU groups of ${discovery.host}:\n${renderIommuGroups(discovery)}`, `USB buses:\n${renderUsbTable(discovery)}`];
  if (discovery.warnings.length > 0) parts.push(`Notes:\n${discovery.warnings.map((w) => `- ${w}\n`).join("")}`);
  const chosen = group ?? suggestedGroup(discovery);
  if (discovery.iommuEnabled && chosen !== undefined) {
    const others = discovery.groups.length > 1 ? "; another group: --group N" : "";
    parts.push(`Stack config for IOMMU group ${chosen} (merge into stacks/Pulumi.<stack>.yaml${others}):\n${renderGroupConfig(discovery, chosen)}`);
  } else if (discovery.iommuEnabled) {
    parts.push("No group holds only USB controllers; pick one above and run again with --group N for its stack config.\n");
  }
  return parts.join("\n");
}

async function main(argv: readonly string[]): Promise<void> {
  const args = parseDiscoverArgs(argv);
  if (args === "help") {
    process.stdout.write(USAGE);
    return;
  }
  try {
    const discovery = await discoverHost(await connectionFor(args.target));
    process.stdout.write(args.json ? JSON.stringify(discovery, null, 2) + "\n" : renderReport(discovery, args.group));
  } finally {
    await closeAllConnections();
  }
}

if (require.main === module) runCommand("discover", () => main(process.argv.slice(2)));
