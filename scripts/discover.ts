// `npm run discover -- --stack NAME | --lab | --host H --key FILE --host-key KEY [--group N] [--json]`:
// what a host can pass through, before writing its stack: the IOMMU groups, the USB buses, and the
// config that selects a group. Reads only; nothing on the host changes.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { discoverHost } from "../providers/discovery/discoverHost";
import { renderGroupConfig, renderIommuGroups, renderUsbTable, suggestedGroup } from "../providers/discovery/render";
import { HostDiscovery } from "../providers/discovery/inventory";
import { ConnectionInput } from "../providers/ssh/connection";
import { closeAllConnections } from "../providers/ssh/host";
import { readLabState } from "./lab/labState";

export const USAGE = `Usage: npm run discover -- (--stack NAME | --lab | --host HOST --key FILE --host-key KEY) [options]

Where to connect (one of):
  --stack NAME          the stack's config: host, port, user, hostKey and the secret sshPrivateKey
                        (read with \`npm run pulumi -- config --show-secrets --json -s NAME\`)
  --lab                 the lab VM, from ~/.cache/vfio-host/lab-state/lab.json (\`npm run lab -- up\`)
  --host HOST           with --key FILE (private key), --host-key "ssh-ed25519 AAAA..." or SHA256:...
                        (from \`ssh-keyscan -t ed25519 HOST\`), and optionally --port (22), --user (root)

Options:
  --group N             print the stack config for IOMMU group N (default: the first group of USB controllers)
  --json                print the discovery as JSON instead of the tables
  --insecure-trust-on-first-use   accept whatever host key the server shows (no --host-key)
`;

const options = {
  stack: { type: "string" },
  lab: { type: "boolean" },
  host: { type: "string" },
  port: { type: "string" },
  user: { type: "string" },
  key: { type: "string" },
  "host-key": { type: "string" },
  "insecure-trust-on-first-use": { type: "boolean" },
  group: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export type Target = { kind: "stack"; stack: string } | { kind: "lab" } | { kind: "flags"; connection: ConnectionInput; keyFile: string };

export interface DiscoverArgs {
  readonly target: Target;
  readonly group?: number;
  readonly json: boolean;
}

const usageError = (message: string) => new Error(`${message}\n\n${USAGE}`);

function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw usageError(`${flag} "${value}" is not a whole number`);
  return Number(value);
}

/** The command line, checked; "help" for --help. The key file is read later, by connectionFor. */
export function parseDiscoverArgs(argv: readonly string[]): DiscoverArgs | "help" {
  let values;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw usageError((error as Error).message);
  }
  if (values.help) return "help";
  const chosen = [values.stack !== undefined, values.lab === true, values.host !== undefined].filter(Boolean).length;
  if (chosen !== 1) throw usageError("Say where to connect: exactly one of --stack NAME, --lab or --host HOST");
  const hostOnly = (["port", "user", "key", "host-key", "insecure-trust-on-first-use"] as const).filter((flag) => values[flag] !== undefined);
  if (values.host === undefined && hostOnly.length > 0) {
    throw usageError(`--${hostOnly[0]} goes with --host; --stack and --lab bring their own connection`);
  }
  let target: Target;
  if (values.stack !== undefined) target = { kind: "stack", stack: values.stack };
  else if (values.lab) target = { kind: "lab" };
  else {
    if (values.key === undefined) throw usageError("--host needs --key FILE, the SSH private key to log in with");
    target = {
      kind: "flags",
      keyFile: values.key,
      connection: {
        host: values.host as string,
        port: wholeNumber("--port", values.port) ?? 22,
        user: values.user ?? "root",
        ...(values["host-key"] !== undefined ? { hostKey: values["host-key"] } : {}),
        ...(values["insecure-trust-on-first-use"] ? { insecureTrustOnFirstUse: true } : {}),
      },
    };
  }
  const group = wholeNumber("--group", values.group);
  return { target, ...(group !== undefined ? { group } : {}), json: values.json === true };
}

/** `pulumi config --json`: every value is a string (secrets in clear with --show-secrets). */
const StackConfigJson = z.record(z.string(), z.object({ value: z.string().optional(), secret: z.boolean().optional() }));

/** The connection a stack's config describes, the same keys stacks/connection.ts reads. */
export function connectionFromStackConfig(json: unknown, stack: string): ConnectionInput {
  const config = StackConfigJson.parse(json);
  const get = (key: string) => config[`vfio-host:${key}`]?.value;
  const host = get("host");
  if (!host) {
    throw new Error(`Stack ${stack} has no vfio-host:host; set it with \`npm run pulumi -- config set host 192.0.2.10 -s ${stack}\``);
  }
  const port = get("port");
  if (port !== undefined && !/^\d+$/.test(port)) throw new Error(`Stack ${stack}: vfio-host:port "${port}" is not a port number`);
  const escalation = get("escalation");
  return {
    host,
    port: port === undefined ? 22 : Number(port),
    user: get("user") ?? "root",
    ...(get("hostKey") !== undefined ? { hostKey: get("hostKey") } : {}),
    ...(get("sshPrivateKey") !== undefined ? { privateKey: get("sshPrivateKey") } : {}),
    ...(get("sshPassword") !== undefined ? { password: get("sshPassword") } : {}),
    ...(escalation !== undefined ? { escalation: escalation as ConnectionInput["escalation"] } : {}),
    ...(get("insecureTrustOnFirstUse") === "true" ? { insecureTrustOnFirstUse: true } : {}),
  };
}

async function connectionFor(target: Target): Promise<ConnectionInput> {
  switch (target.kind) {
    case "lab": {
      const lab = readLabState();
      return { host: lab.host, port: lab.port, user: lab.user, hostKey: lab.hostKey, privateKey: readFileSync(lab.privateKeyPath, "utf8") };
    }
    case "flags":
      return { ...target.connection, privateKey: readFileSync(target.keyFile, "utf8") };
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

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: Error) => {
    process.stderr.write(`discover: ${error.message}\n`);
    process.exitCode = 1;
  });
}
