// A host stack's whole configuration, checked before any resource is declared, so a typo in a key,
// a missing secret or a malformed value stops `pulumi preview` with one message per problem that
// names the key (down to `vfio-host:libvirt.domains.homeassistant.memoryMiB`), before anything
// touches the host. The values are checked by the resources' own schemas: the keys that make one
// resource input (the connection, the kernel command line) are handed to that schema together, so
// its cross-checks run here too, and its findings are reported under the stack's key names.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { HostPackagesInputs } from "../providers/hostPackages/plan";
import { KernelCmdlineInputs } from "../providers/kernelCmdline/schema";
import { domainSpecSchema } from "../providers/libvirt/domainSpec";
import { expected, shown, strictKeys } from "../providers/inputErrors";
import { checkLibvirtHost } from "../providers/libvirt/libvirtHostResource";
import { storagePoolSchema } from "../providers/libvirt/pool";
import { volumeSchema } from "../providers/libvirt/volume";
import { Connection, ConnectionSchema, privateKeyProblem } from "../providers/ssh/connection";
import { VfioBindingInputs } from "../providers/vfioBinding/schema";

export const CONFIG_NAMESPACE = "vfio-host";

/** Values that must be set with `pulumi config set --secret`; never shown in a message. */
const SECRET_KEYS: readonly string[] = ["sshPrivateKey", "sshPrivateKeyPassphrase", "sshPassword"];

// Config values arrive as text. "false" is false and "22" is 22 (z.coerce would read "false" as
// true and "" as 0); any other text is left as it is, for the schema to refuse by name.
const flag = (value: unknown) => (value === "true" ? true : value === "false" ? false : value);
const wholeNumber = (value: unknown) => (typeof value === "string" && /^\d+$/.test(value.trim()) ? Number(value) : value);

/**
 * Config keys that together make one input object of a resource schema: `fields` maps each key to
 * the schema's field, `text` reads the keys whose text stands for a number or a boolean.
 */
interface KeyGroup<S extends z.ZodType> {
  readonly schema: S;
  readonly fields: Readonly<Record<string, string>>;
  readonly text?: Readonly<Record<string, (value: unknown) => unknown>>;
}

const connectionKeys = {
  schema: ConnectionSchema,
  fields: {
    host: "host",
    port: "port",
    user: "user",
    hostKey: "hostKey",
    insecureAcceptAnyHostKey: "insecureAcceptAnyHostKey",
    /** The former name of insecureAcceptAnyHostKey: still read, with a warning (connectionWarnings). */
    insecureTrustOnFirstUse: "insecureTrustOnFirstUse",
    escalation: "escalation",
    readyTimeoutSeconds: "readyTimeoutSeconds",
    sshPrivateKey: "privateKey",
    sshPrivateKeyPassphrase: "passphrase",
    sshPassword: "password",
    /** Log in with the keys of the ssh-agent at SSH_AUTH_SOCK, where pulumi runs. */
    sshAgent: "agent",
  },
  text: { port: wholeNumber, readyTimeoutSeconds: wholeNumber, insecureAcceptAnyHostKey: flag, insecureTrustOnFirstUse: flag, sshAgent: flag },
} satisfies KeyGroup<typeof ConnectionSchema>;

const kernelCmdlineKeys = {
  schema: KernelCmdlineInputs,
  fields: {
    kernelArgs: "args",
    removeKernelArgs: "remove",
    /** extlinux (Alpine) only: modules appended to modules=, loaded first by the initramfs. */
    extlinuxModules: "modules",
    bootBackend: "backend",
    /** Boot-critical keys (root, init, rd.*, ...) that kernelArgs may set or removeKernelArgs take off. */
    acknowledgeBootCriticalArgs: "acknowledgeBootCritical",
  },
} satisfies KeyGroup<typeof KernelCmdlineInputs>;

const seconds = (min: number, max: number, fallback: number) => {
  const message = `must be a whole number of seconds from ${min} to ${max}`;
  return z.number({ error: message }).int(message).min(min, message).max(max, message).default(fallback);
};

/** The libvirt half: LibvirtHost's inputs, each checked by its resource's schema, then LibvirtHost's own assertions. */
const LibvirtConfig = z
  .strictObject(
    {
      packages: HostPackagesInputs.optional(),
      pools: z.array(storagePoolSchema, expected("a list of storage pools", '[{ "name": "default", "path": "/var/lib/libvirt/images" }]')).optional(),
      volumes: z.array(volumeSchema, expected("a list of volumes", '[{ "pool": "default", "name": "haos.qcow2", "source": { "url": "https://..." }, "format": "qcow2" }]')).optional(),
      domains: z.record(z.string(), domainSpecSchema, expected("guests by a key of their own", '{ "homeassistant": { "name": "homeassistant", ... } }')).optional(),
      retainOnDelete: z.array(z.string(), expected('a list of volumes as "pool/name"', '["default/haos_ova-7.5.qcow2"]')).optional(),
    },
    strictKeys,
  )
  .superRefine((libvirt, ctx) => {
    for (const message of checkLibvirtHost(libvirt)) ctx.addIssue({ code: "custom", message });
  });

const PassthroughSchema = z.object({
  vfio: VfioBindingInputs,
  reboot: z.enum(["auto", "never"], { error: 'must be "auto" or "never"' }).default("auto"),
  /** How long a reboot may take before the run fails and says to power-cycle the host. */
  rebootTimeoutSeconds: seconds(30, 3600, 900),
  /** Boot a change once (GRUB's or systemd-boot's one-shot) and make it permanent only after that boot passed verification. */
  trialBoot: z.boolean({ error: "must be true or false" }).default(true),
  /** softdog's margin during a trial boot: a trial not verified within it is reset (0: no watchdog). */
  trialWatchdogSeconds: seconds(0, 3600, 300),
  /** How long a panicking trial waits before it reboots into the previous configuration. */
  trialPanicSeconds: seconds(1, 300, 10),
  libvirt: LibvirtConfig.optional(),
});

const passthroughKeys = {
  schema: PassthroughSchema,
  fields: Object.fromEntries(Object.keys(PassthroughSchema.shape).map((key) => [key, key])),
  text: { rebootTimeoutSeconds: wholeNumber, trialBoot: flag, trialWatchdogSeconds: wholeNumber, trialPanicSeconds: wholeNumber },
} satisfies KeyGroup<typeof PassthroughSchema>;

const STACK_KEYS = [connectionKeys, kernelCmdlineKeys, passthroughKeys].flatMap((group) => Object.keys(group.fields));

export type StackConfig = {
  /** The SSH connection every resource of the stack uses (stacks/connection.ts makes it a secret). */
  connection: Connection;
  kernelArgs: string[];
  removeKernelArgs: string[];
  extlinuxModules: string[];
  bootBackend: KernelCmdlineInputs["backend"];
  acknowledgeBootCriticalArgs: string[];
} & z.output<typeof PassthroughSchema>;

/** A problem with one config key: `path` in the stack's terms, `fieldPath` as the schema saw it. */
interface Problem {
  path: readonly PropertyKey[];
  fieldPath: readonly PropertyKey[];
  message: string;
}

type Checked<T> = { data: T; problems: [] } | { data?: undefined; problems: Problem[] };

function parseKeys<S extends z.ZodType>(group: KeyGroup<S>, values: Record<string, unknown>): Checked<z.output<S>> {
  const input: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(group.fields)) {
    if (key in values) input[field] = (group.text?.[key] ?? ((v: unknown) => v))(values[key]);
  }
  const parsed = group.schema.safeParse(input);
  if (parsed.success) return { data: parsed.data, problems: [] };
  const keyOf = new Map(Object.entries(group.fields).map(([key, field]) => [field, key]));
  return {
    problems: parsed.error.issues.map((issue) => ({
      path: [keyOf.get(String(issue.path[0])) ?? String(issue.path[0]), ...issue.path.slice(1)],
      fieldPath: issue.path,
      message: issue.message,
    })),
  };
}

/** The connection keys, and whether the private key decrypts (only worth asking once the keys are sound). */
function parseConnection(values: Record<string, unknown>): Checked<Connection> {
  if ("insecureTrustOnFirstUse" in values && "insecureAcceptAnyHostKey" in values) {
    const message = "is the former name of insecureAcceptAnyHostKey, which is set too; remove it (`npm run pulumi -- config rm insecureTrustOnFirstUse`)";
    return { problems: [{ path: ["insecureTrustOnFirstUse"], fieldPath: ["insecureTrustOnFirstUse"], message }] };
  }
  const checked = parseKeys(connectionKeys, values);
  const key = checked.data?.privateKey;
  const problem = key === undefined ? undefined : privateKeyProblem(key, checked.data!.passphrase);
  if (!problem) return checked;
  const path = problem.field === "passphrase" ? "sshPrivateKeyPassphrase" : "sshPrivateKey";
  return { problems: [{ path: [path], fieldPath: [problem.field], message: problem.message }] };
}

/** `libvirt.domains.homeassistant.memoryMiB`, `kernelArgs[1]`: as `pulumi config set --path` takes it. */
function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join("");
}

function describeProblem(namespace: string, problem: Problem, values: Record<string, unknown>): string {
  const top = String(problem.path[0] ?? "");
  // The resources' messages start with their own field's name ("args: ...", "devices: ..."), which the key already says.
  const leadingField = /^([A-Za-z]+)(?: \([^)]*\))?: /.exec(problem.message);
  const message = leadingField && problem.fieldPath.includes(leadingField[1]) ? problem.message.slice(leadingField[0].length) : problem.message;
  // A text value the message does not quote is shown; lists, objects and secrets are not.
  const raw = problem.path.length === 1 && !SECRET_KEYS.includes(top) ? values[top] : undefined;
  const value = typeof raw === "string" && !message.includes(shown(raw)) ? ` = ${shown(raw)}` : "";
  return `${namespace}:${keyPath(problem.path)}${value}: ${message}`;
}

/** Config values are strings; lists and objects are JSON (as `pulumi config set --path` writes them). */
function parseValue(raw: string): unknown {
  const trimmed = raw.trim();
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return raw;
    }
  }
  return raw;
}

/**
 * The keys of `namespace` in the stack's config (key -> raw string, as `allConfig` gives it), and
 * the problems every key has whatever it means: a secret stored in plain text.
 */
function namespaceValues(all: Record<string, string>, secretKeys: ReadonlySet<string>, namespace: string) {
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [fullKey, raw] of Object.entries(all)) {
    const [ns, key] = fullKey.split(":");
    if (ns !== namespace) continue;
    // A secret is text whatever it looks like: a password may well start with "[" or "{".
    values[key] = SECRET_KEYS.includes(key) ? raw : parseValue(raw);
    if (SECRET_KEYS.includes(key) && !secretKeys.has(fullKey)) {
      problems.push(`${fullKey} is stored in plain text; set it again with \`pulumi config set --secret ${key} ...\``);
    }
  }
  return { values, problems };
}

/** A RunError: the CLI prints its message alone, without a JavaScript stack (@pulumi/pulumi errors.js). */
function configError(problems: readonly string[]): pulumi.RunError {
  return new pulumi.RunError(`The stack config has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}:\n  ${problems.join("\n  ")}`);
}

function unknownKeys(values: Record<string, unknown>, namespace: string): string[] {
  return Object.keys(values)
    .filter((key) => !STACK_KEYS.includes(key))
    .map((key) => {
      const near = STACK_KEYS.find((k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2);
      return `${namespace}:${key} is not a config key of this project` + (near ? `; did you mean ${namespace}:${near}?` : `; the keys are ${STACK_KEYS.join(", ")}`);
    });
}

/** Pure: the stack's config (key -> raw string, as `allConfig` gives it) checked, or every problem in one RunError. */
export function parseStackConfig(all: Record<string, string>, secretKeys: ReadonlySet<string>): StackConfig {
  const { values, problems } = namespaceValues(all, secretKeys, CONFIG_NAMESPACE);
  problems.push(...unknownKeys(values, CONFIG_NAMESPACE));
  const connection = parseConnection(values);
  const kernel = parseKeys(kernelCmdlineKeys, values);
  const passthrough = parseKeys(passthroughKeys, values);
  problems.push(...[connection, kernel, passthrough].flatMap((c) => c.problems.map((p) => describeProblem(CONFIG_NAMESPACE, p, values))));
  if (problems.length > 0) throw configError(problems);
  const k = kernel.data!;
  return {
    connection: connection.data!,
    kernelArgs: k.args,
    removeKernelArgs: k.remove,
    extlinuxModules: k.modules,
    bootBackend: k.backend,
    acknowledgeBootCriticalArgs: k.acknowledgeBootCritical,
    ...passthrough.data!,
  };
}

/**
 * Pure: what a run should say about the connection keys of `namespace` even though they are valid,
 * every run: that any host key is accepted (insecureAcceptAnyHostKey), and that a key has a new name.
 */
export function connectionWarnings(all: Record<string, string>, stack: string, namespace = CONFIG_NAMESPACE): string[] {
  const value = (key: string) => all[`${namespace}:${key}`];
  const trust = `pin the host's key instead with \`npm run trust -- --stack ${stack}\` (it shows the host's keys and fingerprints, and writes ${namespace}:hostKey)`;
  const warnings: string[] = [];
  if (value("insecureTrustOnFirstUse") !== undefined) {
    warnings.push(
      `${namespace}:insecureTrustOnFirstUse is now called ${namespace}:insecureAcceptAnyHostKey (it never recorded a first key: it accepted any key on every connection); ` +
        `rename it (\`npm run pulumi -- config rm insecureTrustOnFirstUse\`, then \`config set insecureAcceptAnyHostKey true\`), or better, ${trust}`,
    );
  }
  const acceptsAny = flag(value("insecureAcceptAnyHostKey") ?? value("insecureTrustOnFirstUse")) === true;
  if (acceptsAny && value("hostKey") === undefined) {
    warnings.push(
      `${namespace}:insecureAcceptAnyHostKey is true: every connection to ${value("host") ?? "the host"} accepts whatever host key it is shown, ` +
        `so anything between this machine and the host can take the connection and what is sent over it; ${trust}`,
    );
  } else if (acceptsAny) {
    warnings.push(`${namespace}:insecureAcceptAnyHostKey has no effect while ${namespace}:hostKey is pinned; remove it (\`npm run pulumi -- config rm insecureAcceptAnyHostKey\`)`);
  }
  return warnings;
}

/**
 * Pure: only the connection keys of `namespace`, checked as parseStackConfig checks them; the other
 * keys are not looked at (`npm run discover -- --stack` runs before the stack is written).
 */
export function parseConnectionConfig(all: Record<string, string>, secretKeys: ReadonlySet<string>, namespace = CONFIG_NAMESPACE): Connection {
  const { values, problems } = namespaceValues(all, secretKeys, namespace);
  const connection = parseConnection(values);
  problems.push(...connection.problems.map((p) => describeProblem(namespace, p, values)));
  if (problems.length > 0) throw configError(problems);
  return connection.data!;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** The running program's config, as the engine gave it, with the keys that were set as secrets. */
export function runningConfig(): { all: Record<string, string>; secretKeys: Set<string> } {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };
  const all = pulumi.runtime.allConfig();
  return { all, secretKeys: new Set(Object.keys(all).filter((k) => runtimeConfig.isConfigSecret(k))) };
}

/** The running stack's config, checked; the connection's warnings go to the run's diagnostics, every run. */
export function readStackConfig(): StackConfig {
  const { all, secretKeys } = runningConfig();
  const config = parseStackConfig(all, secretKeys);
  connectionWarnings(all, pulumi.getStack()).forEach((warning) => void pulumi.log.warn(warning));
  return config;
}
